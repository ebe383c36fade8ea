"""Benchmark: full-size synthetic Kronodroid ingestion into a lakeFS branch, and lakeFS
branch-creation time with a tiny vs the full dataset on main (zero-copy: must stay flat).
With --staging duckdb,spark, also the dbt staging + mart build (Iceberg on lakeFS) on that
data with each engine, one after the other on branches made from the same commit; with
--spark-masters local[2],spark://127.0.0.1:7077 the Spark engine runs on each master (staging
wall of local[2] vs the standalone cluster).

Needs the local stack (`dfp stack up`). Uses throwaway repositories, deleted at the end.
Run: `uv run dfp bench ingest` (or `uv run python benchmarks/ingest.py --scale 1.0`).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
import uuid

import dagster as dg

from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import load_settings, stack_environment
from dfp.stack.benchmarking import print_figures, throwaway_client
from dfp_resources.environment import resource_run_config


def _branch_create_ms(client: LakeFSClient, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        name = f"bench-{i}"
        started = time.perf_counter()
        client.create_branch(name, "main")
        times.append((time.perf_counter() - started) * 1000)
        client.delete_branch(name)
    return round(statistics.median(times), 2), round(max(times), 2)


def _execute(job_fn, instance, run_config: dict, asset_selection=None, partition="main"):
    started = time.perf_counter()
    with dg.execute_job(
        dg.reconstructable(job_fn),
        instance=instance,
        run_config={
            **run_config,
            # The settings as they are now (engine, repository change between runs).
            "resources": resource_run_config(load_settings()),
            "execution": {"config": {"in_process": {}}},
        },
        tags={"dagster/partition": partition},
        asset_selection=asset_selection,
    ) as result:
        assert result.success, f"{job_fn.__name__} run failed"
        materializations = {
            e.event_specific_data.materialization.asset_key.to_user_string(): (
                e.event_specific_data.materialization.metadata
            )
            for e in result.get_asset_materialization_events()
        }
    return time.perf_counter() - started, materializations


def run(
    scale: float,
    seed: int,
    branch_samples: int,
    engines: tuple[str, ...],
    spark_masters: tuple[str, ...] = ("local[2]",),
) -> dict[str, float]:
    from dfp_assets.definitions import ingest_job, staging_job
    from dfp_assets.kronodroid.staging import kronodroid_dbt

    # This script is its own launcher: it gives itself the local stack's variables.
    os.environ.update(stack_environment())
    tag = uuid.uuid4().hex[:6]
    full_repo, tiny_repo = f"bench-full-{tag}", f"bench-tiny-{tag}"
    full, tiny = throwaway_client(full_repo), throwaway_client(tiny_repo)
    figures: dict[str, float] = {}
    try:
        os.environ["LAKEFS_REPOSITORY"] = full_repo
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("lakefs_branch", ["main"])
        wall, materializations = _execute(
            ingest_job,
            instance,
            {
                "ops": {
                    "kronodroid_raw": {
                        "config": {
                            "source": "synthetic",
                            "synthetic_scale": scale,
                            "synthetic_seed": seed,
                        }
                    }
                }
            },
        )
        rows = materializations["kronodroid_raw"]["dagster/row_count"].value
        asset_seconds = materializations["kronodroid_raw"]["seconds"].value
        figures["rows"] = rows
        figures["run_wall_s"] = round(wall, 2)
        figures["asset_step_s"] = asset_seconds
        figures["rows_per_s_run"] = round(rows / wall)
        figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        figures["raw_bytes_on_main"] = sum(o.size_bytes for o in full.list_objects("main", "raw/"))
        runs = [
            (engine, master)
            for engine in engines
            for master in (spark_masters if engine == "spark" else (None,))
        ]
        for index, (engine, master) in enumerate(runs):
            # dbt alone (raw is already on main): staging + mart into Iceberg, each engine on
            # its own branch made from main, so both start from the same state.
            branch = f"bench-{engine}-{index}"
            full.create_branch(branch, "main")
            instance.add_dynamic_partitions("lakefs_branch", [branch])
            os.environ["DFP_DBT_TARGET"] = engine
            if master:
                os.environ["DFP_SPARK_MASTER"] = master
                engine = f"spark_{'standalone' if master.startswith('spark://') else 'local'}"
            try:
                wall, materializations = _execute(
                    staging_job,
                    instance,
                    {"ops": {}},
                    asset_selection=list(kronodroid_dbt.keys),
                    partition=branch,
                )
            finally:
                os.environ.pop("DFP_DBT_TARGET", None)
                os.environ.pop("DFP_SPARK_MASTER", None)
            mart = materializations["marts/mart_app_features"]["dagster/row_count"].value
            figures[f"staging_{engine}_run_wall_s"] = round(wall, 2)
            figures[f"staging_{engine}_raw_rows_per_s"] = round(rows / wall)
            figures[f"staging_{engine}_mart_rows"] = mart

        tiny.upload("main", "raw/tiny.bin", os.urandom(1 << 20))
        tiny.commit("main", "1 MB of data")
        figures["branch_create_ms_1MB_median"], figures["branch_create_ms_1MB_max"] = (
            _branch_create_ms(tiny, branch_samples)
        )
        figures["branch_create_ms_full_median"], figures["branch_create_ms_full_max"] = (
            _branch_create_ms(full, branch_samples)
        )
    finally:
        for client in (full, tiny):
            client.repositories.delete_repository(client.repository, force=True)
            client.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 142,128 rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--branch-samples", type=int, default=20)
    parser.add_argument(
        "--staging",
        default="",
        help="also build dbt staging + mart with these engines, e.g. duckdb,spark",
    )
    parser.add_argument(
        "--spark-masters",
        default="local[2]",
        help="the spark engine runs once per master, e.g. local[2],spark://127.0.0.1:7077 "
        "(the cluster of `dfp stack up` with DFP_STACK_SERVICES=lakefs,spark)",
    )
    args = parser.parse_args(argv)
    engines = tuple(e for e in args.staging.split(",") if e)
    masters = tuple(m for m in args.spark_masters.split(",") if m)
    figures = run(args.scale, args.seed, args.branch_samples, engines, masters)
    print_figures(figures)


if __name__ == "__main__":
    main()

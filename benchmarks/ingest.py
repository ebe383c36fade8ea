"""Benchmark: full-size synthetic Kronodroid ingestion into a lakeFS branch, and lakeFS
branch-creation time with a tiny vs the full dataset on main (zero-copy: must stay flat).

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

from dfp.lakefs_client import LakeFSClient
from dfp.settings import LakeFSSettings, load_stack_env


def _client(repository: str) -> LakeFSClient:
    base = LakeFSSettings.from_env()
    client = LakeFSClient(
        LakeFSSettings(base.endpoint, base.access_key_id, base.secret_access_key, repository)
    )
    client.ensure_repository(storage_namespace=f"local://{repository}")
    return client


def _branch_create_ms(client: LakeFSClient, n: int) -> tuple[float, float]:
    times = []
    for i in range(n):
        name = f"bench-{i}"
        started = time.perf_counter()
        client.create_branch(name, "main")
        times.append((time.perf_counter() - started) * 1000)
        client.delete_branch(name)
    return round(statistics.median(times), 2), round(max(times), 2)


def run(scale: float, seed: int, branch_samples: int) -> dict[str, float]:
    from dfp_assets.definitions import ingest_job

    load_stack_env()
    tag = uuid.uuid4().hex[:6]
    full_repo, tiny_repo = f"bench-full-{tag}", f"bench-tiny-{tag}"
    full, tiny = _client(full_repo), _client(tiny_repo)
    figures: dict[str, float] = {}
    try:
        os.environ["LAKEFS_REPOSITORY"] = full_repo
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions("lakefs_branch", ["main"])
        started = time.perf_counter()
        with dg.execute_job(
            dg.reconstructable(ingest_job),
            instance=instance,
            run_config={
                "ops": {
                    "kronodroid_raw": {
                        "config": {
                            "source": "synthetic",
                            "synthetic_scale": scale,
                            "synthetic_seed": seed,
                        }
                    }
                },
                "execution": {"config": {"in_process": {}}},
            },
            tags={"dagster/partition": "main"},
        ) as result:
            wall = time.perf_counter() - started
            assert result.success, "ingestion run failed"
            [mat] = result.asset_materializations_for_node("kronodroid_raw")
            rows = mat.metadata["dagster/row_count"].value
            asset_seconds = mat.metadata["seconds"].value
        figures["rows"] = rows
        figures["run_wall_s"] = round(wall, 2)
        figures["asset_step_s"] = asset_seconds
        figures["rows_per_s_run"] = round(rows / wall)
        figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        figures["raw_bytes_on_main"] = sum(o.size_bytes for o in full.list_objects("main", "raw/"))

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
    args = parser.parse_args(argv)
    figures = run(args.scale, args.seed, args.branch_samples)
    width = max(map(len, figures))
    for key, value in figures.items():
        print(
            f"{key:<{width}}  {value:,}" if isinstance(value, int) else f"{key:<{width}}  {value}"
        )


if __name__ == "__main__":
    main()

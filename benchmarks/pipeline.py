"""Benchmark: the whole asset graph at full size, raw → mart → Feast → model, in one run.

Prints each step's seconds, Feast's online materialization, the training set's size, the
training seconds per epoch and both F1 figures. Needs the local stack (`dfp stack up`; with
DFP_FEAST_ONLINE=redis also DFP_STACK_SERVICES=lakefs,redis). Uses a throwaway repository.
With --new-branch it then rebuilds a branch made from main with no data change and prints that
run's steps and its share of the cold build's wall time.
--executor picks Dagster's in-process executor (one process, the local default) or its
multiprocess one (a process per step, the deployments' default); both inside dfp's
write-audit-publish executor, as a UI-launched run has them.
--launch daemon submits each run as the UI and the sensors do: `dagster job launch` queues it
on an instance with the repository's dagster.yaml (QueuedRunCoordinator), and a real
`dagster-daemon` dequeues it and starts its run worker; the figures are then the run's own
start → end (`run_wall_s`) and submit → start (`queued_s`). --launch execute_job (default)
runs it from this process with `dagster.execute_job`.
Run: `uv run python benchmarks/pipeline.py [--scale 1.0] [--epochs 10] [--new-branch]
[--executor in_process|multiprocess] [--launch execute_job|daemon] [--repeat N]`.
--repeat N builds N times: the later builds load new data (seed + i) on new branches from main
in the same process or daemon, so with --launch daemon they fork from the warm launcher's
loaded server, as every run after a deployment's first does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import dagster as dg

from dfp.settings import PROJECT_ROOT, load_settings, stack_environment
from dfp.stack.benchmarking import BIN, WORKSPACE, dagster_daemon, print_figures, throwaway_client
from dfp_resources.environment import resource_run_config


def _build(instance: dg.DagsterInstance, partition: str, config: dict):
    """One in-process build_all of `partition`: (wall seconds, step seconds, metadata)."""
    from dfp_assets.definitions import all_job

    started = time.perf_counter()
    with dg.execute_job(
        dg.reconstructable(all_job),
        instance=instance,
        run_config={"resources": resource_run_config(load_settings()), **config},
        tags={"dagster/partition": partition},
    ) as result:
        assert result.success, f"build_all on {partition} failed"
        wall = time.perf_counter() - started
        steps = {
            event.step_key: round(event.event_specific_data.duration_ms / 1000, 1)
            for event in result.all_events
            if event.event_type_value == "STEP_SUCCESS"
        }
        metadata = {
            e.event_specific_data.materialization.asset_key.to_user_string(): (
                e.event_specific_data.materialization.metadata
            )
            for e in result.get_asset_materialization_events()
        }
    return wall, steps, metadata


def _step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    return {
        r.event_log_entry.dagster_event.step_key: round(
            r.event_log_entry.dagster_event.event_specific_data.duration_ms / 1000, 1
        )
        for r in records.records
    }


def _metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    out = {}
    for record in records.records:
        materialization = record.event_log_entry.dagster_event.step_materialization_data
        out[materialization.materialization.asset_key.to_user_string()] = (
            materialization.materialization.metadata
        )
    return out


def _build_through_daemon(
    instance: dg.DagsterInstance, partition: str, config: dict, timeout_s: float = 3600
):
    """Queue build_all with `dagster job launch`; the running daemon starts it. Returns
    (run start → end seconds, step seconds, metadata, submit → start seconds)."""
    run_id = str(uuid.uuid4())
    run_config = {"resources": resource_run_config(load_settings()), **config}
    submitted = time.time()
    done = subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "launch",
            "-w",
            str(WORKSPACE),
            "-j",
            "build_all",
            "--run-id",
            run_id,
            "--tags",
            json.dumps({"dagster/partition": partition}),
            "--config-json",
            json.dumps(run_config),
        ],
        env={**os.environ, "DAGSTER_HOME": instance.root_directory},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"dagster job launch failed: {done.stderr[-3000:]}"
    deadline = time.monotonic() + timeout_s
    while True:
        record = instance.get_run_record_by_id(run_id)
        if record is not None and record.dagster_run.is_finished:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} not finished after {timeout_s:.0f}s")
        time.sleep(1.0)
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, (
        f"build_all on {partition} ended {record.dagster_run.status.value}; "
        f"daemon log {instance.root_directory}/daemon.log"
    )
    wall = record.end_time - record.start_time
    return (
        wall,
        _step_seconds(instance, run_id),
        _metadata(instance, run_id),
        record.start_time - submitted,
    )


def run(
    scale: float,
    seed: int,
    epochs: int,
    new_branch: bool,
    executor: str = "in_process",
    launch: str = "execute_job",
    repeat: int = 1,
) -> dict[str, object]:
    # This script is its own launcher: it gives itself the local stack's variables.
    os.environ.update(stack_environment())
    repository = f"bench-pipeline-{uuid.uuid4().hex[:6]}"
    client = throwaway_client(repository)
    os.environ["LAKEFS_REPOSITORY"] = repository

    figures: dict[str, object] = {
        "online_store": load_settings().dfp_feast_online,
        "executor": executor,
        "launch": launch,
    }
    home = tempfile.TemporaryDirectory(prefix="dfp-bench-home-")
    stack = ExitStack()
    try:
        # A persistent instance: multiprocess step workers (and the daemon) share its storage.
        if launch == "daemon":
            shutil.copyfile(PROJECT_ROOT / "dagster.yaml", Path(home.name) / "dagster.yaml")
            instance = dg.DagsterInstance.from_config(home.name)
        else:
            instance = dg.DagsterInstance.local_temp(home.name)
        instance.add_dynamic_partitions("lakefs_branch", ["main"])
        config = {
            "ops": {
                "kronodroid_raw": {
                    "config": {
                        "source": "synthetic",
                        "synthetic_scale": scale,
                        "synthetic_seed": seed,
                    }
                },
                "malware_model": {"config": {"epochs": epochs, "f1_floor": 0.0}},
            },
            "execution": {"config": {executor: {}}},
        }
        if launch == "daemon":
            stack.enter_context(dagster_daemon(home.name))

            def build(partition: str):
                wall, steps, metadata, queued = _build_through_daemon(instance, partition, config)
                figures[f"queued_s_{partition}"] = round(queued, 1)
                return wall, steps, metadata
        else:

            def build(partition: str):
                return _build(instance, partition, config)

        wall, steps, metadata = build("main")
        figures.update({f"step_{k}_s": v for k, v in steps.items()})
        figures["run_wall_s"] = round(wall, 1)
        figures["raw_rows"] = metadata["kronodroid_raw"]["dagster/row_count"].value
        figures["training_rows"] = metadata["training_set"]["dagster/row_count"].value
        figures["feast_materialize_s"] = metadata["feast_online"]["materialize_seconds"].value
        epochs_s = metadata["malware_model"]["epoch_seconds"].value
        figures["train_epoch_s_median"] = round(statistics.median(epochs_s), 2)
        figures["temporal_f1"] = round(metadata["malware_model"]["temporal_f1"].value, 4)
        figures["random_f1"] = round(metadata["malware_model"]["random_f1"].value, 4)
        # Later builds of new data on new branches, in the same daemon (its warm server is
        # loaded): what a UI user sees after the first run, unlike the first one.
        walls, queued_s = [], []
        for i in range(1, repeat):
            branch = f"bench-r{i}"
            client.create_branch(branch, "main")
            instance.add_dynamic_partitions("lakefs_branch", [branch])
            config["ops"]["kronodroid_raw"]["config"]["synthetic_seed"] = seed + i
            again_wall, again_steps, _ = build(branch)
            walls.append(round(again_wall, 1))
            if launch == "daemon":
                queued_s.append(figures.pop(f"queued_s_{branch}"))
            figures.update({f"repeat_step_{k}_s": v for k, v in again_steps.items()})
        if walls:
            figures["repeat_run_wall_s"] = walls
            figures["repeat_queued_s"] = queued_s or None
        if new_branch:
            # A branch made from main with no data change, rebuilt whole: what memos save.
            client.create_branch("bench-copy", "main")
            instance.add_dynamic_partitions("lakefs_branch", ["bench-copy"])
            copy_wall, copy_steps, copy_meta = build("bench-copy")
            figures.update({f"new_branch_step_{k}_s": v for k, v in copy_steps.items()})
            figures["new_branch_run_wall_s"] = round(copy_wall, 1)
            figures["new_branch_share_of_cold"] = f"{copy_wall / wall:.1%}"
            figures["new_branch_reused"] = ",".join(
                sorted(k for k, m in copy_meta.items() if "reused_from_run" in m)
            )
        figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    finally:
        stack.close()  # the daemon, if one was started
        client.repositories.delete_repository(repository, force=True)
        client.close()
        home.cleanup()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 142,128 raw rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--new-branch",
        action="store_true",
        help="then rebuild a branch made from main with no data change, and compare",
    )
    parser.add_argument("--executor", choices=("in_process", "multiprocess"), default="in_process")
    parser.add_argument("--launch", choices=("execute_job", "daemon"), default="execute_job")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="builds in all: the later ones build new data (seed + i) on new branches from "
        "main, in the same process or daemon (repeat_* figures: steps of the last one)",
    )
    args = parser.parse_args(argv)
    figures = run(
        args.scale,
        args.seed,
        args.epochs,
        args.new_branch,
        args.executor,
        args.launch,
        args.repeat,
    )
    print_figures(figures)


if __name__ == "__main__":
    main()

"""Benchmark: how long each step of a multiprocess run waits before its own work starts.

Runs a small `build_all` (synthetic_scale 0.05 by default) through `dagster.execute_job` on a
reconstructable job with dfp's executor around Dagster's multiprocess executor (one process per
step, as a daemon-launched run has), then reads the run's event log and prints per step:
- worker_s: STEP_WORKER_STARTING -> STEP_START (process start, code load, resource init);
- body_s: STEP_START -> the step's first event from its own body: its first `context.log`
  message (a plain log record carrying the step key; every memoized asset logs one as it
  enters `branch_step`, before any library it needs is imported), else its first output /
  materialization / check result (framework events such as ASSET_MATERIALIZATION_PLANNED
  are not counted).
Target (printed beside them): work starts within 3 s of STEP_START.
Needs the local stack with its own state: `DFP_HOME=/tmp/dfp-bench uv run dfp stack up`, then
`DFP_HOME=/tmp/dfp-bench uv run python benchmarks/step_startup.py [--scale 0.05]`.
Uses a throwaway repository.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid

import dagster as dg
from dagster import DagsterEventType

from dfp.settings import stack_environment
from dfp.stack.benchmarking import print_figures, throwaway_client

TARGET_BODY_S = 3.0
_BODY_EVENTS = {
    DagsterEventType.STEP_OUTPUT,
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.ASSET_CHECK_EVALUATION,
    DagsterEventType.STEP_FAILURE,
}


def _step_figures(records) -> dict[str, tuple[float | None, float | None, str]]:
    """step key -> (worker seconds, body seconds, what marked the body's start)."""
    by_step: dict[str, dict[str, float | str]] = {}
    for record in records:
        entry = record.event_log_entry
        step = entry.step_key
        if step is None:
            continue
        marks = by_step.setdefault(step, {})
        event = entry.dagster_event
        if event is None:  # a context.log message from the step's body
            if "start" in marks and "body" not in marks:
                marks["body"], marks["mark"] = entry.timestamp, "context.log"
            continue
        kind = event.event_type
        if kind == DagsterEventType.STEP_WORKER_STARTING:
            marks.setdefault("worker", entry.timestamp)
        elif kind == DagsterEventType.STEP_START:
            marks.setdefault("start", entry.timestamp)
        elif kind in _BODY_EVENTS and "start" in marks and "body" not in marks:
            marks["body"], marks["mark"] = entry.timestamp, kind.value
    out = {}
    for step, m in by_step.items():
        worker = m["start"] - m["worker"] if "worker" in m and "start" in m else None
        body = m["body"] - m["start"] if "body" in m and "start" in m else None
        out[step] = (worker, body, str(m.get("mark", "-")))
    return out


def run(scale: float, seed: int) -> dict[str, object]:
    from dfp_assets.definitions import all_job

    # This script is its own launcher: it gives itself the local stack's variables.
    os.environ.update(stack_environment())
    repository = f"bench-steps-{uuid.uuid4().hex[:6]}"
    client = throwaway_client(repository)
    os.environ["LAKEFS_REPOSITORY"] = repository
    figures: dict[str, object] = {"scale": scale}
    try:
        with tempfile.TemporaryDirectory(prefix="dfp-bench-home-") as home:
            # A persistent instance: the multiprocess executor's workers share its storage.
            with dg.instance_for_test(temp_dir=home) as instance:
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
                        "malware_model": {"config": {"epochs": 1, "f1_floor": 0.0}},
                    },
                    "execution": {"config": {"multiprocess": {}}},
                }
                started = time.perf_counter()
                with dg.execute_job(
                    dg.reconstructable(all_job),
                    instance=instance,
                    run_config=config,
                    tags={"dagster/partition": "main"},
                ) as result:
                    figures["run_success"] = result.success
                    figures["run_wall_s"] = round(time.perf_counter() - started, 1)
                    run_id = result.run_id
                records = instance.get_records_for_run(run_id, limit=100_000).records
        steps = _step_figures(records)
        for step, (worker, body, mark) in sorted(steps.items()):
            shown_worker = f"{worker:.1f}" if worker is not None else "-"
            shown_body = f"{body:.1f}" if body is not None else "-"
            figures[f"{step}"] = f"worker {shown_worker} s, body {shown_body} s ({mark})"
        workers = [w for w, _, _ in steps.values() if w is not None]
        bodies = [b for _, b, _ in steps.values() if b is not None]
        if workers:
            figures["worker_s_median"] = round(statistics.median(workers), 1)
            figures["worker_s_max"] = round(max(workers), 1)
        if bodies:
            median = statistics.median(bodies)
            figures["body_s_median"] = f"{median:.1f}   (target <= {TARGET_BODY_S} s)"
            figures["body_s_max"] = round(max(bodies), 1)
    finally:
        client.repositories.delete_repository(repository, force=True)
        client.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.05, help="1.0 = 142,128 raw rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print_figures(run(args.scale, args.seed))


if __name__ == "__main__":
    main()

"""Benchmark: how long a multiprocess run's step waits for its process, spawn vs forkserver.

A chain of four trivial steps in a module that loads dfp's definitions (as every step of a
daemon-launched run does), run with Dagster's multiprocess executor: with `spawn` (Dagster's
default) each step process imports dagster, pandas and the definitions anew; with the
forkserver that dfp's multiprocess default configures (`default_mode_config`), steps fork from
a process that imported them once per run. Printed per start method: run wall time and the
median / max of STEP_WORKER_STARTING → STEP_START. No services needed.
Run: `uv run python benchmarks/step_start_method.py [--repeat 1]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import dagster as dg

import dfp_assets.definitions  # noqa: F401  (what each step process loads)
from dfp.stack.benchmarking import print_figures
from dfp_assets.platform.wap_executor import default_mode_config

DEFINITIONS = "dfp_assets.definitions"


@dg.op
def begin() -> int:
    return 0


@dg.op
def add_one(value: int) -> int:
    return value + 1


@dg.job
def four_steps():
    add_one.alias("fourth")(add_one.alias("third")(add_one.alias("second")(begin())))


def _worker_seconds(records) -> list[float]:
    starting: dict[str, float] = {}
    waits = []
    for record in records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_WORKER_STARTING:
            starting[entry.step_key] = entry.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_START and entry.step_key in starting:
            waits.append(entry.timestamp - starting[entry.step_key])
    return waits


def run(repeat: int) -> dict[str, object]:
    figures: dict[str, object] = {}
    for method in ("spawn", "forkserver"):
        preload = [DEFINITIONS] if method == "forkserver" else []
        config = default_mode_config("multiprocess", preload)
        walls, waits = [], []
        for _ in range(repeat):
            with dg.instance_for_test() as instance:
                started = time.perf_counter()
                with dg.execute_job(
                    dg.reconstructable(four_steps),
                    instance=instance,
                    run_config={"execution": {"config": {"multiprocess": config}}},
                ) as result:
                    assert result.success, f"{method}: the run failed"
                    walls.append(time.perf_counter() - started)
                    waits += _worker_seconds(
                        instance.get_records_for_run(result.run_id, limit=10_000).records
                    )
        figures[f"{method}_run_wall_s"] = round(statistics.median(walls), 1)
        figures[f"{method}_step_worker_start_p50_s"] = round(statistics.median(waits), 1)
        figures[f"{method}_step_worker_start_max_s"] = round(max(waits), 1)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    print_figures(run(args.repeat))


if __name__ == "__main__":
    main()

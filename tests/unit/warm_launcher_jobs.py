"""Jobs the warm run launcher's tests launch (a module its server can import)."""

import os
import time
from pathlib import Path

import dagster as dg


@dg.op(config_schema={"marker": str, "release": str})
def report_pid_then_wait(context) -> int:
    """Writes its process id to `marker`, then waits (at most 120 s) for `release` to exist."""
    Path(context.op_config["marker"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not Path(context.op_config["release"]).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.05)
    return os.getpid()


@dg.job(executor_def=dg.in_process_executor)  # the op runs in the run worker itself
def pid_job():
    report_pid_then_wait()


defs = dg.Definitions(jobs=[pid_job])

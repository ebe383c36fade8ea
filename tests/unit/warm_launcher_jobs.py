"""Jobs the warm run launcher's tests launch (a module its server can import)."""

import json
import os
import sys
import time
from pathlib import Path

import dagster as dg


@dg.op(config_schema={"marker": str, "release": str})
def report_pid_then_wait(context) -> int:
    """Writes its process id to `marker` (and beside it, `<marker>.modules`, the test modules
    its process has imported), then waits (at most 120 s) for `release` to exist."""
    marker = Path(context.op_config["marker"])
    modules = sorted(name for name in sys.modules if name.startswith("tests.unit."))
    marker.with_name(marker.name + ".modules").write_text(json.dumps(modules))
    marker.write_text(str(os.getpid()))
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

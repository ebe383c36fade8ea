"""Benchmark: what loading dfp's Definitions costs a fresh process (code server, run and step
workers all pay it).

Median of N fresh-process runs each of `import dagster`, `import dfp_assets.definitions` and
`dagster definitions validate -m dfp_assets.definitions` (and the same command on an empty
`Definitions()`, the CLI's own floor; `import dagster, dagster_dbt`, what the dbt assets would
cost if loading imported dagster-dbt): wall and CPU seconds (user + system of the child) and
peak RSS, the ratio definitions/dagster, and which heavy libraries the definitions leave in
sys.modules.
Targets are printed beside the figures; nothing is asserted (tests/unit/test_definitions.py
asserts the absence of the heavy libraries).
Needs no stack. Run: `uv run python benchmarks/definitions_import.py [--runs 5]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dfp.stack.benchmarking import print_figures

#: Libraries that only asset bodies need; loading definitions should not import them.
HEAVY = (
    "torch",
    "pyiceberg",
    "dlt",
    "pandera",
    "feast",
    "executorch",
    "onnxruntime",
    "ai_edge_litert",
    "litert_torch",
    "sklearn",
    "pyspark",
    "mlflow",
    "matplotlib",
    "kagglehub",
    "duckdb",
    "polars",
    "pandas",
    "pyarrow",
    "numpy",
    "dbt",
)
TARGET_WALL_S = 3.0
TARGET_RATIO = 1.5

_EMPTY_DEFS = Path(tempfile.gettempdir()) / "dfp_bench_empty_defs.py"
_DAGSTER_CLI = str(Path(sys.executable).with_name("dagster"))

_COMMANDS = {
    "dagster": [sys.executable, "-c", "import dagster"],
    # What importing dagster-dbt costs (it imports dbt-core: adapters, networkx, mashumaro).
    "dagster_dbt": [sys.executable, "-c", "import dagster, dagster_dbt"],
    "definitions": [sys.executable, "-c", "import dfp_assets.definitions"],
    "validate": [_DAGSTER_CLI, "definitions", "validate", "-m", "dfp_assets.definitions"],
    "validate_empty": [_DAGSTER_CLI, "definitions", "validate", "-f", str(_EMPTY_DEFS)],
}


def _measure(command: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one fresh child process."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # an ephemeral instance
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 gives this child's own rusage (not the sum over every child so far).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{command} exited {proc.returncode}:\n{stderr}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _heavy_loaded() -> list[str]:
    code = (
        "import json, sys; import dfp_assets.definitions; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(runs: int) -> dict[str, object]:
    # One untimed load first: writes .pyc files (and, on a fresh clone, nothing else should
    # be needed) so every timed run sees the same warm file cache.
    _EMPTY_DEFS.write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    _measure(_COMMANDS["definitions"])
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in _COMMANDS}
    for _ in range(runs):
        for name, command in _COMMANDS.items():  # interleaved: load drifts hit all alike
            samples[name].append(_measure(command))
    figures: dict[str, object] = {"runs": runs}
    medians: dict[str, tuple[float, float, float]] = {}
    for name, rows in samples.items():
        wall, cpu, rss = (statistics.median(col) for col in zip(*rows, strict=True))
        medians[name] = (wall, cpu, rss)
        target = f"   (target <= {TARGET_WALL_S} s)" if name == "definitions" else ""
        figures[f"{name}_wall_s"] = f"{wall:.2f}{target}"
        figures[f"{name}_cpu_s"] = f"{cpu:.2f}"
        figures[f"{name}_peak_rss_mib"] = round(rss)
    ratio = medians["definitions"][0] / medians["dagster"][0]
    figures["definitions/dagster_wall"] = f"{ratio:.2f}x   (target <= {TARGET_RATIO}x)"
    figures["definitions/dagster_cpu"] = f"{medians['definitions'][1] / medians['dagster'][1]:.2f}x"
    validate_ratio = medians["validate"][0] / medians["validate_empty"][0]
    figures["validate/validate_empty_wall"] = f"{validate_ratio:.2f}x   (the CLI's own floor)"
    dbt_cost = medians["dagster_dbt"][1] / medians["dagster"][1]
    figures["dagster_dbt/dagster_cpu"] = f"{dbt_cost:.2f}x   (avoided: the plan loads instead)"
    loaded = _heavy_loaded()
    figures["heavy_modules_loaded"] = (
        f"{','.join(loaded) or 'none'}   (target: torch absent; checked {len(HEAVY)})"
    )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print_figures(run(args.runs))


if __name__ == "__main__":
    main()

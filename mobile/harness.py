"""Benchmark harness: load one exported model in its runtime and time single-sample inference.

    python -m mobile.harness --format onnx --model out/model.onnx --iterations 1000

prints exactly one JSON line (see `measure`) on stdout; all runtime output goes to stderr.
`measure_in_subprocess` runs it in a fresh interpreter, so load time and peak RSS belong to
that one runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mobile.runtimes import (
    RUNNER_FORMATS,
    InputSpec,
    check_format,
    import_runtime,
    load_runner,
)

_PACKAGE_PARENT = Path(__file__).resolve().parents[1]
_STDERR_TAIL_CHARS = 3000


def peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes.

    On Linux this is VmHWM, not ru_maxrss: ru_maxrss survives execve, so a harness child
    spawned by a large parent (a Dagster run, pytest) would report the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak if sys.platform == "darwin" else peak * 1024)


def benchmark_row(n_features: int, seed: int = 0) -> np.ndarray:
    """The fixed float32 ``[1, n_features]`` row timed: seeded, non-negative, count-like."""
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(rng.exponential(2.0, size=(1, n_features)), dtype=np.float32)


def benchmark_inputs(specs: tuple[InputSpec, ...], seed: int = 0) -> list[np.ndarray]:
    """One fixed batch-1 array per model input: float inputs seeded like `benchmark_row`,
    integer inputs all ones (a valid token id and a full attention mask, so a transformer
    computes every position)."""
    arrays = []
    for i, spec in enumerate(specs):
        if spec.dtype.startswith("float"):
            rng = np.random.default_rng(seed + i)
            values = rng.exponential(2.0, size=spec.shape)
        else:
            values = np.ones(spec.shape)
        arrays.append(np.ascontiguousarray(values, dtype=spec.dtype))
    return arrays


def measure(
    fmt: str,
    model_path: Path,
    *,
    iterations: int = 1000,
    warmup: int = 50,
    num_threads: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Load ``model_path`` in the runtime of ``fmt`` and time ``iterations`` single-row calls.

    ``load_ms`` is `load_runner` alone (file read, session/interpreter creation, tensor
    allocation); the runtime library is imported before the clock starts. ``warmup`` untimed
    calls precede the timed ones. ``total_seconds`` is the wall time of the whole measurement
    (load, warmup and timed calls); ``throughput_per_s`` is iterations over the summed timed
    latencies. ``peak_rss_bytes`` is the process's peak RSS at the end.
    """
    check_format(fmt)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    model_path = Path(model_path)
    import_runtime(fmt)

    clock = time.perf_counter_ns
    started = clock()
    runner = load_runner(fmt, model_path, num_threads=num_threads)
    load_ns = clock() - started

    arrays = benchmark_inputs(runner.inputs, seed)
    run_one = runner.run_one
    for _ in range(warmup):
        run_one(*arrays)
    latencies_ns = [0] * iterations
    for i in range(iterations):
        t0 = clock()
        run_one(*arrays)
        latencies_ns[i] = clock() - t0
    total_ns = clock() - started

    timed_ns = sum(latencies_ns)
    return {
        "format": fmt,
        "runtime": runner.runtime,
        "runtime_version": runner.runtime_version,
        "model_path": str(model_path),
        "file_size_bytes": model_path.stat().st_size,
        "load_ms": load_ns / 1e6,
        "iterations": iterations,
        "warmup": warmup,
        "latencies_us": [ns / 1e3 for ns in latencies_ns],
        "total_seconds": total_ns / 1e9,
        "throughput_per_s": iterations / (timed_ns / 1e9) if timed_ns > 0 else float("inf"),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mobile.harness",
        description="Time single-sample inference of one exported model; print one JSON line.",
    )
    parser.add_argument("--format", required=True, choices=RUNNER_FORMATS)
    parser.add_argument("--model", required=True, type=Path, help="the model file")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: measure, then write the result as the only line on stdout."""
    args = _parser().parse_args(argv)
    # Point fd 1 at stderr while the runtimes run: native libraries write to the fd directly,
    # bypassing sys.stdout, and their chatter must not end up next to the JSON line.
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = measure(
            args.format,
            args.model,
            iterations=args.iterations,
            warmup=args.warmup,
            num_threads=args.threads,
            seed=args.seed,
        )
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def measure_in_subprocess(
    fmt: str,
    model_path: Path,
    *,
    iterations: int,
    warmup: int,
    num_threads: int = 1,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """`measure` in a fresh ``python -m mobile.harness`` process; its JSON result.

    RuntimeError (with the tail of the child's stderr) if it fails, times out, or prints no
    JSON object as its last stdout line.
    """
    check_format(fmt)
    command = [
        sys.executable,
        "-m",
        "mobile.harness",
        "--format",
        fmt,
        "--model",
        str(Path(model_path).resolve()),
        "--iterations",
        str(iterations),
        "--warmup",
        str(warmup),
        "--threads",
        str(num_threads),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_PARENT), env.get("PYTHONPATH", "")) if p
    )
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"harness for {fmt} timed out after {timeout:g} s; stderr tail:\n{_tail(exc.stderr)}"
        ) from exc
    if done.returncode != 0:
        raise RuntimeError(
            f"harness for {fmt} ({model_path}) exited with code {done.returncode}; "
            f"stderr tail:\n{_tail(done.stderr)}"
        )
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise RuntimeError(
            f"harness for {fmt} printed no JSON object as its last stdout line "
            f"(stdout tail: {done.stdout[-500:]!r}); stderr tail:\n{_tail(done.stderr)}"
        )
    return result


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return "(none)"
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text[-_STDERR_TAIL_CHARS:]


if __name__ == "__main__":
    sys.exit(main())

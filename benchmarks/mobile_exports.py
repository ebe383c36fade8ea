"""Benchmark: mobile exports of the malware classifier on this host.

Trains the default MLP (476 features, hidden 128-64) for one epoch on a synthetic mart-shaped
matrix (latency does not depend on the weights' values), exports it to ExecuTorch (XNNPACK),
TFLite (LiteRT) and ONNX, and prints per format: export seconds, file size and the parity
against eager PyTorch; then, through the same harness `dfp devicefarm run --device host` uses
(a fresh process per model file), each runtime's load time, p50/p90/p99 single-sample
latency, throughput and peak RSS next to eager PyTorch. It reports figures; it asserts
nothing about them. No local stack is needed.

Run: `uv run python benchmarks/mobile_exports.py` (2,000 timed calls per runtime) or e.g.
`uv run python benchmarks/mobile_exports.py --iterations 500 --rows 5000`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from train import synthetic_mart  # the sibling benchmark script

from dfp.kronodroid.model import TrainConfig, save_model, train
from dfp.stack.benchmarking import print_figures
from mobile.exporters import FORMATS, export_model
from mobile.harness import measure_in_subprocess
from mobile.parity import check_parity
from mobile.records import LatencyStats
from mobile.runtimes import load_runner


def latency_figures(
    files: dict[str, Path], iterations: int, warmup: int, threads: int
) -> dict[str, object]:
    """Per runtime, through the device farm's host harness (a fresh process per file): load
    time, p50/p90/p99 single-sample latency, throughput, peak RSS."""
    figures: dict[str, object] = {}
    for fmt, path in files.items():
        result = measure_in_subprocess(
            fmt, path, iterations=iterations, warmup=warmup, num_threads=threads
        )
        stats = LatencyStats.from_samples(result["latencies_us"])
        name = f"{result['runtime']} {result['runtime_version']}"
        figures[f"{name} load ms"] = round(result["load_ms"], 2)
        figures[f"{name} p50/p90/p99 us"] = (
            f"{stats.p50_us:.1f} / {stats.p90_us:.1f} / {stats.p99_us:.1f}"
        )
        figures[f"{name} throughput /s"] = round(result["throughput_per_s"])
        figures[f"{name} peak RSS MB"] = round(result["peak_rss_bytes"] / 2**20, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    features, labels = synthetic_mart(args.rows, 476)
    model = train(features, labels, TrainConfig(epochs=1)).model.eval()
    batch = features[:64]
    figures: dict[str, object] = {"torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="dfp-bench-mobile-") as tmp:
        files = {"pytorch": save_model(model, Path(tmp) / "model.pt")}
        for fmt in FORMATS:
            path, info = export_model(model, fmt, Path(tmp) / fmt)
            report = check_parity(model, load_runner(fmt, path), batch)
            files[fmt] = path
            figures[f"{fmt} export s"] = round(info.export_seconds, 2)
            figures[f"{fmt} file bytes"] = info.size_bytes
            figures[f"{fmt} parity"] = report.summary()
        figures["pytorch file bytes"] = files["pytorch"].stat().st_size
        figures.update(latency_figures(files, args.iterations, args.warmup, args.threads))
    print_figures(figures)


if __name__ == "__main__":
    main()

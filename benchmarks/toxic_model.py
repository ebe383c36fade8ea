"""Benchmark: the toxicity model on this host (2 cores by default).

Prints: the frozen MiniLM encoder's throughput (comments/s) at max length 128, 256 and 512
over real comments of the shared sample (synthetic ones if it is absent), length-sorted
batches of 32 as `comment_embeddings` encodes them; the head's training time (default
HeadConfig: 3 epochs, hidden 3,072) on a train split the size of the shared sample's (7,000
rows of 1,152 dimensions; the time does not depend on the values); then the whole model
(token ids + mask [1, 128] → probability) exported to ExecuTorch (XNNPACK), TFLite (LiteRT)
and ONNX: export seconds, file size, parity against eager PyTorch on real comments, and,
through the harness `dfp devicefarm run --device host` uses (a fresh process per file), each
runtime's load time and p50/p99 single-sample latency next to eager PyTorch. It reports
figures; it asserts nothing about them. No local stack is needed.

Run: `uv run python benchmarks/toxic_model.py` or e.g.
`uv run python benchmarks/toxic_model.py --comments 500 --iterations 100 --skip-encode`.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mobile_exports import latency_figures  # the sibling benchmark script

from dfp.stack.benchmarking import print_figures
from dfp.toxic import synthetic
from dfp.toxic.encoder import EncoderSpec, embed, identity, load_encoder
from dfp.toxic.model import HeadConfig, save_head, train_head, whole_model
from dfp.toxic.serving import example_inputs, token_batch
from dfp.toxic.tokenize import encode
from dfp_assets.toxic.raw import SHARED_SAMPLE
from mobile.exporters import FORMATS, export_model
from mobile.parity import check_parity
from mobile.runtimes import load_runner

LENGTHS = (128, 256, 512)
EXPORT_LENGTH = 128


def sample_comments(n: int) -> tuple[list[str], str]:
    """The first n comments of the shared sample's first file, or synthetic ones."""
    path = SHARED_SAMPLE / "text_comment_1.csv"
    if path.is_file():
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))[1 : n + 1]
        return [row[0] for row in rows], f"shared sample ({path.name})"
    texts, _ = synthetic.generate(n, seed=0)
    return list(texts), "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comments", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=7000)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--latency-threads", type=int, default=1)
    parser.add_argument("--skip-encode", action="store_true")
    args = parser.parse_args()

    texts, source = sample_comments(args.comments)
    figures: dict[str, object] = {"torch": torch.__version__, "comments": source}
    encoder = load_encoder()
    ids_512 = encode(texts, 512)[0]
    figures["mean tokens (≤ 512)"] = round(float(np.mean([len(i) for i in ids_512])), 1)
    if not args.skip_encode:
        for length in LENGTHS:
            started = time.perf_counter()
            embed(encoder, ids_512, max_length=length, threads=args.threads)
            seconds = time.perf_counter() - started
            figures[f"encode {len(texts)} at max length {length}: comments/s"] = round(
                len(texts) / seconds, 1
            )

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((args.train_rows, encoder.dim)).astype(np.float32)
    labels = (rng.random(args.train_rows) < 0.1).astype(np.int64)
    config = HeadConfig(threads=args.threads)
    started = time.perf_counter()
    head = train_head(matrix, labels, config).head.eval()
    figures[f"head training ({args.train_rows} rows, {config.epochs} epochs) s"] = round(
        time.perf_counter() - started, 2
    )

    torch.set_num_threads(args.threads)
    model = whole_model(encoder, head)
    batch = list(token_batch(texts[:64], EXPORT_LENGTH))
    with tempfile.TemporaryDirectory(prefix="dfp-bench-toxic-") as tmp:
        eager = Path(tmp) / "head.pt"
        eager.write_bytes(
            save_head(head, identity(EncoderSpec()).as_dict(), EXPORT_LENGTH, config.threshold)
        )
        files = {"pytorch": eager}
        for fmt in FORMATS:
            path, info = export_model(model, fmt, Path(tmp) / fmt, example_inputs(EXPORT_LENGTH))
            report = check_parity(model, load_runner(fmt, path), batch, threshold=0.45)
            files[fmt] = path
            figures[f"{fmt} export s"] = round(info.export_seconds, 1)
            figures[f"{fmt} file MB"] = round(info.size_bytes / 2**20, 1)
            figures[f"{fmt} parity"] = report.summary()
        figures[f"latency at length {EXPORT_LENGTH}, threads"] = args.latency_threads
        figures.update(latency_figures(files, args.iterations, args.warmup, args.latency_threads))
    print_figures(figures)


if __name__ == "__main__":
    main()

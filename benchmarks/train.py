"""Benchmark: training time and memory of the malware classifier on a mart-sized matrix.

Generates a synthetic float32 matrix shaped like the Kronodroid mart (default 142,128 rows x
476 features: sparse non-negative counts and 0/1 flags, with a learnable malware signal on a
subset of columns), trains `dfp.kronodroid.model.train` with the default `TrainConfig` (except
``--epochs``/``--threads``) and prints the rows, features, seconds per epoch (each and the
median), the final training loss and the process's peak RSS. It reports figures; it asserts
nothing about them. No local stack is needed.

Run: `uv run python benchmarks/train.py` (full size, 3 epochs) or e.g.
`uv run python benchmarks/train.py --rows 20000 --epochs 2`.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import numpy as np

from dfp.kronodroid.model import TrainConfig, train


def synthetic_mart(
    rows: int, features: int, seed: int = 0, chunk_rows: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """A float32 [rows, features] matrix of sparse counts/flags and 0/1 labels (~half malware).

    Each column has a base activity rate (mostly low, so the matrix is sparse) and is either a
    0/1 flag (about a third, like permission columns) or a Poisson count with a per-column mean
    (like syscall counts). Malware rows are more active on a fixed 10% of the columns, scaled by
    a per-row strength so some malware looks benign. Generated in row chunks to bound memory.
    """
    rng = np.random.default_rng(seed)
    rate = rng.beta(0.5, 4.0, size=features)  # per-column activity probability
    is_flag = rng.random(features) < 1 / 3
    count_mean = rng.lognormal(mean=1.0, sigma=1.0, size=features)
    signal = np.zeros(features)
    signal_columns = rng.choice(features, size=max(1, features // 10), replace=False)
    signal[signal_columns] = rng.uniform(0.1, 0.4, size=signal_columns.size)

    x = np.empty((rows, features), dtype=np.float32)
    y = (rng.random(rows) < 0.5).astype(np.int64)
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        strength = y[start:stop, None] * rng.gamma(2.0, 0.5, size=(stop - start, 1))
        active_p = np.clip(rate + strength * signal, 0.0, 1.0)
        active = rng.random((stop - start, features)) < active_p
        counts = 1 + rng.poisson(count_mean, size=(stop - start, features))
        x[start:stop] = np.where(active, np.where(is_flag, 1, counts), 0)
    return x, y


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=142_128)
    parser.add_argument("--features", type=int, default=476)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=TrainConfig().threads)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    x, y = synthetic_mart(args.rows, args.features, seed=args.seed)
    generate_s = time.perf_counter() - started
    config = TrainConfig(epochs=args.epochs, threads=args.threads, seed=args.seed)

    started = time.perf_counter()
    result = train(x, y, config)
    train_s = time.perf_counter() - started

    print(f"rows: {x.shape[0]}")
    print(f"features: {x.shape[1]}")
    print(f"nonzero share: {np.count_nonzero(x) / x.size:.3f}, malware share: {y.mean():.3f}")
    print(
        f"config: hidden_sizes={config.hidden_sizes} batch_size={config.batch_size} "
        f"learning_rate={config.learning_rate} threads={config.threads}"
    )
    print(f"data generation seconds: {generate_s:.2f}")
    for epoch, (seconds, loss) in enumerate(
        zip(result.epoch_seconds, result.loss_history, strict=True), start=1
    ):
        print(f"epoch {epoch}: {seconds:.2f} s, train loss {loss:.4f}")
    print(f"median seconds per epoch: {statistics.median(result.epoch_seconds):.2f}")
    print(f"train() seconds (incl. setup): {train_s:.2f}")
    print(f"final train loss: {result.loss_history[-1]:.4f}")
    print(f"peak RSS MiB: {_peak_rss_mib():.0f}")


if __name__ == "__main__":
    main()

"""Deterministic CPU torch training: fixed seeds, fixed intra-op threads,
deterministic algorithms (pure logic, no Dagster).

Inside `deterministic(seed, threads)` python's ``random``, numpy's global RNG and torch's global
RNG are seeded with ``seed``, ``torch.use_deterministic_algorithms(True)`` is on and the
intra-op thread count is ``threads`` (float reductions may split differently with another
count, so results are only identical for the same ``threads``). The previous
deterministic-algorithms setting and thread count are restored on exit, even on error; the
global RNGs are left seeded (that is the point of seeding them). `fit_logits` is the one
training loop of a binary classifier with a `logits` method (mini-batch AdamW, BCEWithLogits).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        seed_everything(seed)
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


@dataclass(frozen=True)
class FitHistory:
    loss_history: list[float]  # mean training loss per epoch (as seen during the epoch)
    epoch_seconds: list[float]  # wall-clock seconds per epoch


def fit_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    pos_weight: float | None,
    seed: int,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> FitHistory:
    """Train `model.logits(x)` against 0/1 targets y [N, 1] with AdamW on BCEWithLogits
    (positive class weighted by `pos_weight`), mini-batches shuffled by a generator seeded with
    `seed`; the per-epoch loss is accumulated in Python floats in batch order. Call it inside
    `deterministic`. The model is left in eval mode. `on_epoch(epoch, loss, seconds)` after
    each epoch (1-based)."""
    import torch
    from torch import nn

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(
        pos_weight=None if pos_weight is None else torch.tensor([pos_weight])
    )
    shuffle = torch.Generator().manual_seed(seed)
    n_rows = x.shape[0]
    history = FitHistory(loss_history=[], epoch_seconds=[])
    model.train()
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(n_rows, generator=shuffle)
        total = 0.0
        for start in range(0, n_rows, batch_size):
            batch = order[start : start + batch_size]
            loss = loss_fn(model.logits(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * batch.shape[0]
        history.loss_history.append(total / n_rows)
        history.epoch_seconds.append(time.perf_counter() - started)
        if on_epoch is not None:
            epoch = len(history.epoch_seconds)
            on_epoch(epoch, history.loss_history[-1], history.epoch_seconds[-1])
    model.eval()
    return history

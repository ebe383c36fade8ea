"""Deterministic CPU training of `MalwareClassifier`.

`train` is bit-for-bit reproducible for the same inputs, config, torch build and machine
(`dfp.ml.determinism`, the platform's):

* python ``random``, numpy's global RNG and torch's global RNG are seeded with
  ``config.seed`` before the model is built (weight init and dropout draw from torch's);
* batches are shuffled with a dedicated ``torch.Generator`` seeded with ``config.seed``;
* ``torch.use_deterministic_algorithms(True)`` is on for the duration of the call;
* the intra-op thread count is pinned to ``config.threads`` (float reductions may be split
  differently with a different count, so results are only identical for the same ``threads``);
* the per-epoch loss is accumulated in Python floats in batch order.

The previous deterministic-algorithms setting and thread count are restored on exit, even on
error. The global RNGs are left seeded (that is the point of seeding them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dfp.kronodroid.model.defaults import (
    DEFAULT_BASELINE_MAX_ITER,
    DEFAULT_BASELINE_THREADS,
    DEFAULT_HIDDEN_SIZES,
)
from dfp.ml.determinism import deterministic, fit_logits

if TYPE_CHECKING:
    import numpy as np

    from dfp.kronodroid.model.classifier import MalwareClassifier


# How many offending positions/values an input error shows.
_SAMPLE = 5


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run (all have defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_sizes: tuple[int, ...] = DEFAULT_HIDDEN_SIZES
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=512, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    seed: int = 0
    threads: int = Field(default=1, ge=1)
    # None: unweighted BCE; a float: weight of the positive (malware) class in the loss;
    # "balanced": n_benign / n_malware of the training labels.
    pos_weight: float | Literal["balanced"] | None = None
    # Boosting iterations of the gradient-boosted baseline trained beside the MLP (it shares
    # `seed`); see `dfp.kronodroid.model.baseline`.
    baseline_max_iter: int = Field(default=DEFAULT_BASELINE_MAX_ITER, ge=1)
    # The baseline's OpenMP threads. Its fit is most of a full-size model step (about 55 s
    # of one core per split); a fixed count, not the machine's, so the config alone
    # reproduces it anywhere.
    baseline_threads: int = Field(default=DEFAULT_BASELINE_THREADS, ge=1)

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(h < 1 for h in value):
            raise ValueError(f"hidden sizes must all be >= 1, got {value}")
        return value

    @field_validator("pos_weight")
    @classmethod
    def _positive_weight(cls, value: float | str | None) -> float | str | None:
        import numpy as np

        if isinstance(value, int | float) and not (value > 0 and np.isfinite(value)):
            raise ValueError(f"pos_weight must be a finite number > 0, got {value}")
        return value


@dataclass(frozen=True)
class TrainResult:
    """A trained model (in eval mode) and what happened during training."""

    model: MalwareClassifier
    loss_history: list[float]  # mean training loss per epoch (as seen during the epoch)
    epoch_seconds: list[float]  # wall-clock seconds per epoch
    pos_weight: float | None  # the positive-class weight actually used
    n_rows: int
    n_positive: int


def _positions(mask: np.ndarray) -> list[tuple[int, ...]] | list[int]:
    import numpy as np

    found = np.argwhere(mask)[:_SAMPLE]
    if mask.ndim == 1:
        return [int(p[0]) for p in found]
    return [tuple(int(i) for i in p) for p in found]


def validate_training_inputs(features: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Check a training matrix and its labels; return them as float32 [N, F] and float32 [N].

    Raises ValueError naming the problem (with a sample of offending positions/values) for:
    a non-2-D matrix, zero rows or columns, a row-count mismatch, NaN/inf features (also
    values beyond float32 range), labels other than 0/1, and a single class.
    """
    import numpy as np

    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array [rows, n_features], got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"features has zero rows (shape {x.shape}); nothing to train on")
    if x.shape[1] == 0:
        raise ValueError(f"features has zero columns (shape {x.shape})")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array [rows], got shape {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"row count mismatch: features has {x.shape[0]} rows but labels has {y.shape[0]}"
        )
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.ascontiguousarray(x, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"features are not numeric (dtype {x.dtype}): {error}") from error
    finite = np.isfinite(x)
    if not finite.all():
        bad = ~finite
        positions = _positions(bad)
        values = [float(x[p]) for p in positions]
        raise ValueError(
            f"features contain {int(bad.sum())} non-finite values (NaN/inf, or beyond float32 "
            f"range); fill nulls before training. First (row, column) positions: {positions}, "
            f"values: {values}"
        )
    if y.dtype == object:
        valid = np.array([v in (0, 1) for v in y.tolist()], dtype=bool)
    else:
        valid = np.isin(y, [0, 1])
    if not valid.all():
        positions = _positions(~valid)
        values = [y[p].item() if hasattr(y[p], "item") else y[p] for p in positions]
        raise ValueError(
            f"labels must be 0 (benign) or 1 (malware); {int((~valid).sum())} are not. "
            f"First positions: {positions}, values: {values}"
        )
    y = y.astype(np.float32)
    n_positive = int(y.sum())
    if n_positive in (0, y.shape[0]):
        only = "malware (1)" if n_positive else "benign (0)"
        raise ValueError(
            f"labels contain a single class: all {y.shape[0]} rows are {only}; "
            "training needs both benign and malware rows"
        )
    return x, y


def _resolve_pos_weight(config: TrainConfig, y: np.ndarray) -> float | None:
    if config.pos_weight is None:
        return None
    if config.pos_weight == "balanced":
        n_positive = float(y.sum())
        return (y.shape[0] - n_positive) / n_positive
    return float(config.pos_weight)


def train(
    features: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    """Train a `MalwareClassifier` on raw features (float32 [N, F], nulls filled) and 0/1 labels.

    Normalization statistics are fitted on ``features``; the MLP is trained with AdamW on
    BCEWithLogits (optionally weighted by ``config.pos_weight``), shuffled mini-batches, for
    ``config.epochs`` epochs. Deterministic: see the module docstring. ``on_epoch(epoch, loss,
    seconds)`` is called after each epoch (1-based), for progress output.
    """
    import torch

    from dfp.kronodroid.model.classifier import MalwareClassifier

    config = config or TrainConfig()
    x_np, y_np = validate_training_inputs(features, labels)
    pos_weight = _resolve_pos_weight(config, y_np)

    with deterministic(config.seed, config.threads):
        x = torch.from_numpy(x_np)
        y = torch.from_numpy(y_np).unsqueeze(1)
        model = MalwareClassifier.from_training_data(
            x, hidden_sizes=config.hidden_sizes, dropout=config.dropout
        )
        history = fit_logits(
            model,
            x,
            y,
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            pos_weight=pos_weight,
            seed=config.seed,
            on_epoch=on_epoch,
        )

    return TrainResult(
        model=model,
        loss_history=history.loss_history,
        epoch_seconds=history.epoch_seconds,
        pos_weight=pos_weight,
        n_rows=int(x_np.shape[0]),
        n_positive=int(y_np.sum()),
    )

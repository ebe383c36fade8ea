"""Evaluation of a malware classifier on a labelled matrix: its probabilities, batched, and the
platform's binary metrics (`dfp.ml.metrics`, re-exported here; label 1 is malware)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfp.ml.metrics import Metrics, check_labels, metrics_from_probabilities

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Metrics",
    "check_labels",
    "evaluate",
    "metrics_from_probabilities",
    "predict_proba",
]

DEFAULT_BATCH_SIZE = 8192


def predict_proba(
    model: nn.Module, features: np.ndarray | torch.Tensor, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Malware probabilities [N] (float32) from ``model(features)``, batched, without grad.

    The model is put in eval mode for the call and its previous mode restored afterwards.
    """
    import numpy as np
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array [rows, n_features], got {tuple(x.shape)}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = [
                model(x[start : start + batch_size]).reshape(-1)
                for start in range(0, x.shape[0], batch_size)
            ]
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(outputs).numpy().astype(np.float32, copy=False)


def evaluate(
    model: nn.Module,
    features: np.ndarray | torch.Tensor,
    labels: np.ndarray | list[int],
    threshold: float = 0.5,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Metrics:
    """Metrics of ``model`` (returning P(malware), [N, 1]) on raw features and 0/1 labels."""
    return metrics_from_probabilities(
        predict_proba(model, features, batch_size=batch_size), labels, threshold=threshold
    )

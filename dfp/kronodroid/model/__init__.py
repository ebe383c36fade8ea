"""Pure model logic for malware detection (no Dagster): classifier, training, splits, metrics,
persistence, and the gradient-boosted baseline. The Dagster assets call into this package.

The classifier (an nn.Module) loads on first use (PEP 562), and the other modules import torch
inside their functions: loading the Dagster definitions (every step worker) skips torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

from dfp.kronodroid.model.baseline import BASELINE_NAME, baseline_probabilities, fit_baseline
from dfp.kronodroid.model.defaults import DEFAULT_HIDDEN_SIZES
from dfp.kronodroid.model.io import load_model, model_digest, save_model
from dfp.kronodroid.model.metrics import (
    Metrics,
    evaluate,
    metrics_from_probabilities,
    predict_proba,
)
from dfp.kronodroid.model.splits import (
    DEFAULT_SHARE_FACTOR,
    ClassCounts,
    SplitSummary,
    class_counts,
    date_range,
    random_split,
    share_warning,
    summarize_split,
    temporal_split,
)

# Imported eagerly (torch-free at module level): importing the submodule `train` would
# otherwise bind the package attribute `train` to the module instead of the function.
from dfp.kronodroid.model.train import TrainConfig, TrainResult, train, validate_training_inputs

#: Names whose module subclasses torch's nn.Module, loaded on first use.
_FROM_CLASSIFIER = ("MalwareClassifier", "STD_FLOOR")

if TYPE_CHECKING:
    from dfp.kronodroid.model.classifier import STD_FLOOR, MalwareClassifier


def __getattr__(name: str) -> Any:
    if name not in _FROM_CLASSIFIER:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.classifier"), name)


__all__ = [
    "BASELINE_NAME",
    "DEFAULT_HIDDEN_SIZES",
    "DEFAULT_SHARE_FACTOR",
    "ClassCounts",
    "SplitSummary",
    "baseline_probabilities",
    "class_counts",
    "date_range",
    "fit_baseline",
    "share_warning",
    "summarize_split",
    "STD_FLOOR",
    "MalwareClassifier",
    "Metrics",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_model",
    "metrics_from_probabilities",
    "model_digest",
    "predict_proba",
    "random_split",
    "save_model",
    "temporal_split",
    "train",
    "validate_training_inputs",
]

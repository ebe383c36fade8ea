"""Pure model logic for malware detection (no Dagster): classifier, training, splits, metrics,
persistence. The Dagster assets call into this package."""

from dfp.kronodroid.model.classifier import DEFAULT_HIDDEN_SIZES, STD_FLOOR, MalwareClassifier
from dfp.kronodroid.model.io import load_model, model_digest, save_model
from dfp.kronodroid.model.metrics import (
    Metrics,
    evaluate,
    metrics_from_probabilities,
    predict_proba,
)
from dfp.kronodroid.model.splits import random_split, temporal_split
from dfp.kronodroid.model.train import TrainConfig, TrainResult, train, validate_training_inputs

__all__ = [
    "DEFAULT_HIDDEN_SIZES",
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

"""Binary classification metrics shared by dfp's models (pure logic, no Dagster; sklearn
underneath, imported in the functions).

A row is predicted positive when its probability is >= ``threshold``. Precision, recall and
F1 are those of the positive class (label 1), with 0 instead of a warning when undefined (no
predicted or no actual positives). ROC AUC and PR AUC (average precision of the positive
class, from the probabilities) are NaN when the labels hold a single class. MCC (Matthews
correlation of the thresholded predictions) is 0 when undefined (one predicted or actual
class), as sklearn returns it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np


class Metrics(BaseModel):
    """Binary classification metrics; ``confusion_matrix`` is [[tn, fp], [fn, tp]]."""

    model_config = ConfigDict(frozen=True)

    f1: float
    precision: float
    recall: float
    roc_auc: float
    pr_auc: float
    mcc: float
    accuracy: float
    threshold: float
    n: int
    n_positive: int
    confusion_matrix: list[list[int]]

    @property
    def tn(self) -> int:
        return self.confusion_matrix[0][0]

    @property
    def fp(self) -> int:
        return self.confusion_matrix[0][1]

    @property
    def fn(self) -> int:
        return self.confusion_matrix[1][0]

    @property
    def tp(self) -> int:
        return self.confusion_matrix[1][1]

    def as_dict(self) -> dict[str, float]:
        """Flat name -> float mapping (e.g. for ``mlflow.log_metrics``)."""
        return {
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "roc_auc": self.roc_auc,
            "pr_auc": self.pr_auc,
            "mcc": self.mcc,
            "accuracy": self.accuracy,
            "threshold": self.threshold,
            "n": float(self.n),
            "n_positive": float(self.n_positive),
            "tn": float(self.tn),
            "fp": float(self.fp),
            "fn": float(self.fn),
            "tp": float(self.tp),
        }


def check_labels(labels: np.ndarray | list[int], n_rows: int) -> np.ndarray:
    import numpy as np

    y = np.asarray(labels)
    if y.shape != (n_rows,):
        raise ValueError(f"labels has shape {y.shape}, expected ({n_rows},)")
    bad = ~np.isin(y, [0, 1])
    if bad.any():
        positions = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"labels must be 0 or 1; {int(bad.sum())} are not, first positions {positions}, "
            f"values {y[positions].tolist()}"
        )
    return y.astype(np.int64)


def metrics_from_probabilities(
    probabilities: np.ndarray | list[float],
    labels: np.ndarray | list[int],
    threshold: float = 0.5,
) -> Metrics:
    """Metrics for positive-class probabilities [N] (or [N, 1]) against 0/1 labels [N]."""
    # Imported here: sklearn takes seconds to import, and loading a model package (e.g. in a
    # Dagster code location or an export job) should not pay for it.
    import numpy as np
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        confusion_matrix,
        f1_score,
        matthews_corrcoef,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if p.shape[0] == 0:
        raise ValueError("cannot evaluate on zero rows")
    y = check_labels(labels, p.shape[0])
    predicted = (p >= threshold).astype(np.int64)
    matrix = confusion_matrix(y, predicted, labels=[0, 1])
    both_classes = np.unique(y).size == 2
    return Metrics(
        f1=float(f1_score(y, predicted, zero_division=0)),
        precision=float(precision_score(y, predicted, zero_division=0)),
        recall=float(recall_score(y, predicted, zero_division=0)),
        roc_auc=float(roc_auc_score(y, p)) if both_classes else math.nan,
        pr_auc=float(average_precision_score(y, p)) if both_classes else math.nan,
        # 0 without both classes, as sklearn's (which warns then).
        mcc=float(matthews_corrcoef(y, predicted)) if both_classes else 0.0,
        accuracy=float(accuracy_score(y, predicted)),
        threshold=float(threshold),
        n=int(y.shape[0]),
        n_positive=int(y.sum()),
        confusion_matrix=[[int(v) for v in row] for row in matrix],
    )


def compare_metrics(
    recorded: Mapping[str, float], reproduced: Mapping[str, float], tolerance: float = 1e-6
) -> dict[str, tuple[float, float]]:
    """Metrics that differ by more than `tolerance` (name -> (recorded, reproduced))."""
    out = {}
    for key in sorted(set(recorded) | set(reproduced)):
        a, b = recorded.get(key), reproduced.get(key)
        if a is None or b is None or abs(float(a) - float(b)) > tolerance:
            out[key] = (a, b)
    return out


def compare_with_recorded(
    recorded: Mapping[str, float], reproduced: Mapping[str, float], tolerance: float = 1e-6
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """`compare_metrics` over the metric names both runs have: (the recorded values compared,
    the differences). A run recorded by older code lacks the metrics added since (e.g. PR-AUC,
    MCC, the baseline's), and a recorded metric this code no longer computes cannot be
    checked, so neither counts as a difference."""
    shared = sorted(set(recorded) & set(reproduced))
    compared = {k: recorded[k] for k in shared}
    return compared, compare_metrics(compared, {k: reproduced[k] for k in shared}, tolerance)

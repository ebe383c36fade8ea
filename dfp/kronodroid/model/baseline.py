"""A gradient-boosted trees baseline beside the MLP: scikit-learn's
HistGradientBoostingClassifier with its defaults, on the raw features (trees need no
normalization), trained on the same split as the MLP.

Deterministic for the same inputs, ``seed`` and ``threads``: ``random_state`` fixes the
early-stopping validation split (sklearn turns early stopping on above 10,000 rows), and the
OpenMP thread count is pinned for the fit and the prediction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfp.kronodroid.model.defaults import DEFAULT_BASELINE_MAX_ITER

if TYPE_CHECKING:
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

#: What reports call the baseline.
BASELINE_NAME = "HistGradientBoostingClassifier"


def fit_baseline(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    threads: int = 1,
    max_iter: int = DEFAULT_BASELINE_MAX_ITER,
) -> HistGradientBoostingClassifier:
    """Fit the baseline on float32 features [N, F] and 0/1 labels [N] (validated as for the
    MLP: `validate_training_inputs`)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from dfp.kronodroid.model.train import validate_training_inputs

    x, y = validate_training_inputs(features, labels)
    model = HistGradientBoostingClassifier(max_iter=max_iter, random_state=seed)
    with threadpool_limits(limits=threads, user_api="openmp"):
        model.fit(x, y.astype("int64"))
    return model


def baseline_probabilities(
    model: HistGradientBoostingClassifier, features: np.ndarray, *, threads: int = 1
) -> np.ndarray:
    """P(malware) [N] (float64) of each row."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array [rows, n_features], got {x.shape}")
    with threadpool_limits(limits=threads, user_api="openmp"):
        return model.predict_proba(x)[:, list(model.classes_).index(1)]

"""Model shape defaults that configs need without loading torch."""

DEFAULT_HIDDEN_SIZES: tuple[int, ...] = (128, 64)

#: Boosting iterations of the gradient-boosted baseline (sklearn's default).
DEFAULT_BASELINE_MAX_ITER = 100

#: OpenMP threads of the baseline's fit and prediction. Its predictions were identical with
#: 1-4 threads here (scikit-learn builds each feature's histogram in one thread), but it does
#: not promise that, so the count is part of the config.
DEFAULT_BASELINE_THREADS = 2

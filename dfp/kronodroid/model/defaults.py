"""Model shape defaults that configs need without loading torch."""

DEFAULT_HIDDEN_SIZES: tuple[int, ...] = (128, 64)

#: Boosting iterations of the gradient-boosted baseline (sklearn's default).
DEFAULT_BASELINE_MAX_ITER = 100

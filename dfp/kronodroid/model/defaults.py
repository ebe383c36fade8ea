"""Model shape defaults that configs need without loading torch."""

DEFAULT_HIDDEN_SIZES: tuple[int, ...] = (128, 64)

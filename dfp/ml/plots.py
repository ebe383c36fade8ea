"""Figures the model reports share (no Dagster): confusion matrices side by side as a PNG."""

from __future__ import annotations

import io
from collections.abc import Sequence


def confusion_matrices_png(
    panels: Sequence[tuple[str, Sequence[Sequence[int]]]],
    class_names: tuple[str, str],
    cmap: str = "Blues",
) -> bytes:
    """One 2×2 confusion matrix per (title, matrix[actual][predicted]) panel, side by side,
    as PNG bytes (shown in the UI and logged to MLflow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 3.2), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels, strict=True):
        ax.imshow(matrix, cmap=cmap)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center")
        ax.set_xticks([0, 1], list(class_names))
        ax.set_yticks([0, 1], list(class_names))
        ax.set_xlabel("predicted")
        ax.set_title(title)
    axes[0][0].set_ylabel("actual")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
    return out.getvalue()

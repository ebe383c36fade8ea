"""The malware classifier: an MLP over raw Kronodroid features with its normalization folded in.

The model takes the raw feature matrix (float32 ``[N, n_features]``, nulls already filled with
0) and does all of its preprocessing itself, so an exported artefact (ExecuTorch, TFLite, ONNX)
needs nothing but the raw counts:

    z = (log1p(clamp(x, min=0)) - mean) / max(std, STD_FLOOR)
    probability = sigmoid(MLP(z))

``mean`` and ``std`` are registered buffers (part of ``state_dict``), fitted in log1p space from
a training matrix by `MalwareClassifier.from_training_data`. Only simple, export-friendly ops
are used (clamp, log1p, sub, div, Linear, ReLU, sigmoid): no data-dependent control flow and
no NaN handling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dfp.kronodroid.model.defaults import DEFAULT_HIDDEN_SIZES

# Floor for the standard deviation in forward(): guards a hand-set or loaded buffer against
# division by zero. Constant features never reach it after `fit_normalization`, which sets
# their std to 1 (as sklearn's StandardScaler does), so an unseen value stays moderate.
STD_FLOOR = 1e-6

# Rows per chunk when fitting mean/std (bounds the float64 working copy).
_FIT_CHUNK_ROWS = 16384


class MalwareClassifier(nn.Module):
    """Tabular MLP returning P(malware) for raw (non-normalized) feature rows.

    Args:
        n_features: number of input columns (order fixed by the caller).
        hidden_sizes: widths of the hidden Linear+ReLU layers, input to output.
        dropout: dropout probability after each hidden ReLU; 0 adds no Dropout module.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        n_features: int,
        hidden_sizes: Sequence[int] = DEFAULT_HIDDEN_SIZES,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}")
        sizes = tuple(int(h) for h in hidden_sizes)
        if any(h < 1 for h in sizes):
            raise ValueError(f"hidden sizes must all be >= 1, got {sizes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_features = int(n_features)
        self.hidden_sizes = sizes
        self.dropout = float(dropout)

        self.register_buffer("mean", torch.zeros(self.n_features, dtype=torch.float32))
        self.register_buffer("std", torch.ones(self.n_features, dtype=torch.float32))

        layers: list[nn.Module] = []
        width = self.n_features
        for hidden in sizes:
            layers.append(nn.Linear(width, hidden))
            layers.append(nn.ReLU())
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    @classmethod
    def from_training_data(
        cls,
        features: np.ndarray | torch.Tensor,
        hidden_sizes: Sequence[int] = DEFAULT_HIDDEN_SIZES,
        dropout: float = 0.0,
    ) -> MalwareClassifier:
        """A new model (random MLP weights) whose mean/std are fitted on ``features``."""
        n_features = int(features.shape[1]) if features.ndim == 2 else -1
        if n_features < 1:
            raise ValueError(
                f"features must be a 2-D [rows, n_features] matrix, got shape "
                f"{tuple(features.shape)}"
            )
        model = cls(n_features, hidden_sizes=hidden_sizes, dropout=dropout)
        model.fit_normalization(features)
        return model

    @torch.no_grad()
    def fit_normalization(self, features: np.ndarray | torch.Tensor) -> None:
        """Set ``mean``/``std`` to the column statistics of log1p(clamp(features, 0)).

        Uses the population std, computed in one pass over row chunks: log1p in float32 (as
        forward() computes it), per-chunk mean and sum of squared deviations in float64,
        combined with Chan et al.'s parallel update. Memory stays at a chunk, and the fixed
        chunk order keeps it deterministic. Columns with std < STD_FLOOR (constant in the
        training data) get std 1 so they are merely centred.
        """
        x = torch.as_tensor(features)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"expected a [rows, {self.n_features}] matrix, got shape {tuple(x.shape)}"
            )
        n_rows = x.shape[0]
        if n_rows == 0:
            raise ValueError("cannot fit normalization on zero rows")

        count = 0
        mean = torch.zeros(self.n_features, dtype=torch.float64)
        m2 = torch.zeros(self.n_features, dtype=torch.float64)
        for start in range(0, n_rows, _FIT_CHUNK_ROWS):
            chunk = x[start : start + _FIT_CHUNK_ROWS].to(torch.float32)
            z = torch.log1p(torch.clamp(chunk, min=0.0)).to(torch.float64)
            n_chunk = z.shape[0]
            chunk_mean = z.mean(dim=0)
            chunk_m2 = ((z - chunk_mean) ** 2).sum(dim=0)
            delta = chunk_mean - mean
            total = count + n_chunk
            mean = mean + delta * (n_chunk / total)
            m2 = m2 + chunk_m2 + delta**2 * (count * n_chunk / total)
            count = total
        std = torch.sqrt(m2 / n_rows)
        std = torch.where(std < STD_FLOOR, torch.ones_like(std), std)
        self.mean.copy_(mean.to(torch.float32))
        self.std.copy_(std.to(torch.float32))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The folded preprocessing: standardized log1p of the non-negative raw counts."""
        z = torch.log1p(torch.clamp(x, min=0.0))
        return (z - self.mean) / torch.clamp(self.std, min=STD_FLOOR)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid malware logit, shape [N, 1] (train with BCEWithLogitsLoss)."""
        return self.mlp(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Malware probability for raw float32 features [N, n_features], shape [N, 1]."""
        return torch.sigmoid(self.logits(x))

    def extra_repr(self) -> str:
        return (
            f"n_features={self.n_features}, hidden_sizes={self.hidden_sizes}, "
            f"dropout={self.dropout}"
        )

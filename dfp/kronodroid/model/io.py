"""Saving, loading and fingerprinting `MalwareClassifier` models.

A saved model is one ``torch.save`` file holding a plain dict: a format marker, the
architecture (``n_features``, ``hidden_sizes``, ``dropout``) and the state dict (MLP weights
plus the folded ``mean``/``std`` buffers). It loads with ``weights_only=True`` and needs no
training data.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from dfp.kronodroid.model.classifier import MalwareClassifier


FORMAT = "dfp.malware_classifier"
FORMAT_VERSION = 1


def save_model(model: MalwareClassifier, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (parents created, replaced atomically); return the path."""
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "n_features": model.n_features,
        "hidden_sizes": list(model.hidden_sizes),
        "dropout": model.dropout,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    partial = target.with_name(f".{target.name}.partial")
    torch.save(payload, partial)
    os.replace(partial, target)
    return target


def load_model(path: str | os.PathLike[str]) -> MalwareClassifier:
    """Load a model written by `save_model`, on CPU and in eval mode."""
    import torch

    from dfp.kronodroid.model.classifier import MalwareClassifier

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a saved {FORMAT} model")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {payload.get('format_version')}, "
            f"this code reads version {FORMAT_VERSION}"
        )
    model = MalwareClassifier(
        int(payload["n_features"]),
        hidden_sizes=tuple(int(h) for h in payload["hidden_sizes"]),
        dropout=float(payload["dropout"]),
    )
    model.load_state_dict(payload["state_dict"], strict=True)
    model.eval()
    return model


def load_eager(path: str | os.PathLike[str]) -> tuple[MalwareClassifier, list[tuple]]:
    """A saved model and its one input (name, shape, dtype): the eager runner's loader
    (`mobile.runtimes`)."""
    model = load_model(path)
    return model, [("features", [1, model.n_features], "float32")]


def model_digest(model: torch.nn.Module) -> str:
    """Hex sha256 over the state dict: each entry's name, dtype, shape and raw bytes, by name.

    Equal digests mean bit-identical weights and normalization buffers.
    """
    import torch

    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

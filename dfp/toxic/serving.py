"""Serving the toxicity model: text → WordPiece ids + mask → encoder → head → P(toxic).

`load_published` reads the head a branch published (`toxicity_model` writes it to
`MODEL_OBJECT` on the lakeFS branch; a run branch's head reaches the branch only when its
checks passed) and chains it with the encoder it was trained on, after checking that the
installed encoder's files hash as they did at training time. `classify` scores texts with it;
`example_inputs` / `token_batch` are the fixed-length int64 inputs the mobile exports take.
No Dagster imports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfp.toxic.encoder import DEFAULT_MAX_LENGTH, EncoderError, EncoderSpec, identity
from dfp.toxic.model import MODEL_OBJECT, SavedHead, load_head, whole_model
from dfp.toxic.tokenize import ATTENTION_MASK, INPUT_IDS

if TYPE_CHECKING:
    import numpy as np
    import torch


class ServingError(ValueError):
    """The branch has no published model, or its encoder is not the one installed."""


@dataclass(frozen=True)
class Classification:
    text: str
    probability: float
    toxic: bool


@dataclass(frozen=True)
class PublishedModel:
    """A branch's toxicity model ready to score: the whole module and where it came from."""

    model: torch.nn.Module  # token ids + mask → P(toxic) [N, 1]
    saved: SavedHead
    branch: str
    commit: str

    @property
    def threshold(self) -> float:
        return self.saved.threshold

    @property
    def max_length(self) -> int:
        return self.saved.max_length


def encoder_spec(encoder: dict[str, Any]) -> EncoderSpec:
    """The `EncoderSpec` a saved head's encoder identity names (`EncoderIdentity.as_dict`)."""
    source = encoder.get("source")
    if source == "minilm":
        directory = None
    elif source == "directory":
        # The directory encoder's name is "<model type>:<path>".
        directory = str(encoder.get("name", "")).partition(":")[2] or None
    else:
        raise ServingError(f"saved head names encoder source {source!r}; want minilm/directory")
    return EncoderSpec(
        source=source,
        directory=directory,
        pooling=encoder.get("pooling", "layer_means"),
        normalize=bool(encoder.get("normalize", False)),
        layers=tuple(encoder.get("layers") or ()),
    )


def assemble(saved: SavedHead) -> torch.nn.Module:
    """Encoder + head as one eval-mode module; ServingError if the installed encoder's files
    are not the ones the head was trained on."""
    from dfp.toxic.encoder import load_encoder

    spec = encoder_spec(saved.encoder)
    try:
        installed = identity(spec)
    except EncoderError as exc:
        raise ServingError(f"the head's encoder is not available: {exc}") from exc
    if installed.digest != saved.encoder.get("digest"):
        raise ServingError(
            f"the head was trained on encoder {saved.encoder.get('digest')}, the installed one "
            f"is {installed.digest} ({installed.name}): retrain toxicity_model"
        )
    return whole_model(load_encoder(spec), saved.head)


def load_eager(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, list[tuple]]:
    """A saved head file as the whole model and its two inputs (name, shape, dtype): the
    eager runner's loader (`mobile.runtimes`)."""
    saved = load_head(Path(path).read_bytes())
    shape = [1, saved.max_length]
    return assemble(saved), [(INPUT_IDS, shape, "int64"), (ATTENTION_MASK, shape, "int64")]


def load_published(client: Any, branch: str) -> PublishedModel:
    """The toxicity model `branch` published on lakeFS, assembled with its encoder."""
    from dfp.lake.lakefs_client import LakeFSError

    if not client.branch_exists(branch):
        raise ServingError(f"lakeFS branch {branch!r} does not exist in {client.repository!r}")
    commit = client.head(branch)
    try:
        data = client.read(commit, MODEL_OBJECT)
    except LakeFSError as exc:
        raise ServingError(
            f"branch {branch!r} has no published toxicity model ({MODEL_OBJECT}): run "
            "build_toxicity_model (or train_toxicity_model) on it"
        ) from exc
    saved = load_head(data)
    return PublishedModel(assemble(saved), saved, branch, commit)


def token_batch(
    texts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH
) -> tuple[np.ndarray, np.ndarray]:
    """int64 input_ids and attention_mask [N, max_length] of texts: WordPiece as
    `comments_tokenized` does it, cut to max_length as `comment_embeddings` does, padded."""
    import numpy as np

    from dfp.toxic.tokenize import encode

    if not texts:
        raise ValueError("no texts to tokenize")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"texts must be strings; text {bad[0]} is {type(texts[bad[0]]).__name__}")
    ids, masks = encode(list(texts), max_length=max_length, padding=True)
    return np.asarray(ids, dtype=np.int64), np.asarray(masks, dtype=np.int64)


def example_inputs(max_length: int = DEFAULT_MAX_LENGTH) -> dict[str, torch.Tensor]:
    """The batch-1 example inputs the exports are traced with (a short real sentence)."""
    import torch

    ids, mask = token_batch(["you are a wonderful person"], max_length)
    return {INPUT_IDS: torch.from_numpy(ids), ATTENTION_MASK: torch.from_numpy(mask)}


def probabilities(model: torch.nn.Module, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """P(toxic) float64 [N] of a token batch, eagerly and without grad."""
    import numpy as np
    import torch

    with torch.inference_mode():
        out = model(torch.from_numpy(ids), torch.from_numpy(mask))
    return out.reshape(-1).numpy().astype(np.float64)


def classify(published: PublishedModel, texts: Sequence[str]) -> list[Classification]:
    """Each text's probability and class (toxic when P ≥ the model's threshold)."""
    ids, mask = token_batch(texts, published.max_length)
    scores = probabilities(published.model, ids, mask)
    return [
        Classification(text, float(p), bool(p >= published.threshold))
        for text, p in zip(texts, scores, strict=True)
    ]


def parity_comments(
    ids: Sequence[str], texts: Sequence[str], labels: Sequence[int], rows: int = 64
) -> list[str]:
    """A fixed batch of real comments for export parity checks: up to rows/2 of each label,
    the first by id (so the batch does not depend on the table's row order, and both
    decisions are exercised), in id order."""
    if rows < 2:
        raise ValueError(f"parity batch needs at least 2 comments, got {rows}")
    if not len(ids) == len(texts) == len(labels):
        raise ValueError(f"{len(ids)} ids, {len(texts)} texts and {len(labels)} labels")
    by_id = sorted(zip(ids, texts, labels, strict=True))
    picked = [row for label in (1, 0) for row in [r for r in by_id if r[2] == label][: rows // 2]]
    if not picked:
        raise ValueError("parity batch: there are no comments")
    return [text for _, text, _ in sorted(picked)]

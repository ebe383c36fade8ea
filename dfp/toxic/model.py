"""The toxicity classifier: an MLP head on frozen encoder embeddings, its split, training,
evaluation and the TF-IDF + logistic-regression baseline (pure logic, no Dagster).

As the original system: Linear(dim → 3072), ReLU, Linear(3072 → 1), BCE-with-logits, a 70/30
label-stratified split with a fixed seed, toxic when P ≥ 0.45 (configurable); in front of it
the embeddings' standardization, fitted on the train side and folded in as buffers. Training is
deterministic (`dfp.ml.determinism`: seeds, fixed threads, deterministic algorithms); rows are
put in id order before the split, so the same comments give the same split whatever order
they were read in. `ToxicityModel` chains encoder and head (token ids + mask → probability)
for serving and exports.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from dfp.ml.metrics import Metrics, check_labels, metrics_from_probabilities

if TYPE_CHECKING:
    import numpy as np
    import torch
    from sklearn.pipeline import Pipeline

DEFAULT_THRESHOLD = 0.45
#: Where `toxicity_model` saves the head on the lakeFS branch (`save_head`).
MODEL_OBJECT = "models/toxicity_model/head.pt"
#: Columns with a smaller training std are only centred (MiniLM has near-constant ones).
STD_FLOOR = 1e-6
HIDDEN = 3072
BASELINE_NAME = "TF-IDF + LogisticRegression"
SPLITS = ("train", "test")


class HeadConfig(BaseModel):
    """Hyper-parameters of one training run of the head (and the baseline beside it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: int = Field(default=HIDDEN, ge=1)
    # On the shared sample's vectors the test ROC-AUC peaks after 3 epochs at this rate.
    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=64, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    # None: unweighted BCE (as the original); "balanced": n_negative / n_positive of train.
    pos_weight: float | Literal["balanced"] | None = None
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    test_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)
    seed: int = 0
    threads: int = Field(default=2, ge=1)
    # Baseline: TF-IDF of word 1-2 grams, logistic regression with this inverse regularization.
    baseline_c: float = Field(default=4.0, gt=0.0)
    baseline_max_features: int = Field(default=200_000, ge=1)


def _head_class():
    import torch
    from torch import nn

    class ToxicityHead(nn.Module):
        """Standardization (buffers fitted on the training embeddings, folded in so exports
        need no preprocessing), Linear(dim → hidden), ReLU, Linear(hidden → 1); `logits` for
        training, `forward` the probability."""

        mean: torch.Tensor
        std: torch.Tensor

        def __init__(self, dim: int, hidden: int = HIDDEN) -> None:
            super().__init__()
            if dim < 1 or hidden < 1:
                raise ValueError(f"head sizes must be >= 1, got dim={dim} hidden={hidden}")
            self.dim, self.hidden = int(dim), int(hidden)
            self.register_buffer("mean", torch.zeros(self.dim))
            self.register_buffer("std", torch.ones(self.dim))
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        @torch.no_grad()
        def fit_standardization(self, x: torch.Tensor) -> None:
            """Column mean and population std of x in float64; a constant column gets std 1."""
            z = x.to(torch.float64)
            std = z.std(dim=0, unbiased=False)
            self.mean.copy_(z.mean(dim=0).to(torch.float32))
            self.std.copy_(torch.where(std < STD_FLOOR, torch.ones_like(std), std).float())

        def logits(self, x):
            return self.mlp((x - self.mean) / self.std)

        def forward(self, x):
            return torch.sigmoid(self.logits(x))

    return ToxicityHead


def new_head(dim: int, hidden: int = HIDDEN) -> torch.nn.Module:
    return _head_class()(dim, hidden)


def _whole_model_class():
    from torch import nn

    class ToxicityModel(nn.Module):
        """token ids int64 [N, L] + attention mask int64 [N, L] → P(toxic) float32 [N, 1]."""

        def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
            super().__init__()
            self.encoder, self.head = encoder, head

        def forward(self, input_ids, attention_mask):
            return self.head(self.encoder(input_ids, attention_mask))

    return ToxicityModel


def whole_model(encoder: torch.nn.Module, head: torch.nn.Module) -> torch.nn.Module:
    model = _whole_model_class()(encoder, head)
    model.eval()
    return model


@dataclass(frozen=True)
class Split:
    """Positions (into id-sorted rows) of each side, and the ids on them."""

    order: np.ndarray  # the id-sorted order of the input rows
    train: np.ndarray  # positions into the input rows
    test: np.ndarray

    def counts(self, labels: np.ndarray) -> dict[str, dict[str, int]]:
        out = {}
        for side, idx in (("train", self.train), ("test", self.test)):
            y = labels[idx]
            out[side] = {"not_toxic": int((y == 0).sum()), "toxic": int((y == 1).sum())}
        return out


def stratified_split(
    ids: Sequence[str], labels: np.ndarray, test_fraction: float = 0.3, seed: int = 0
) -> Split:
    """70/30 (by default) label-stratified split of rows, after sorting them by id."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    y = check_labels(labels, len(ids))
    if len(set(ids)) != len(ids):
        raise ValueError(f"ids are not unique ({len(ids) - len(set(ids))} repeated)")
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ValueError(
            f"a stratified split needs >= 2 comments of each class, got {int(counts[0])} not "
            f"toxic and {int(counts[1])} toxic"
        )
    order = np.array(sorted(range(len(ids)), key=lambda i: ids[i]), dtype=np.int64)
    train_pos, test_pos = train_test_split(
        np.arange(len(order)), test_size=test_fraction, stratify=y[order], random_state=seed
    )
    return Split(order=order, train=np.sort(order[train_pos]), test=np.sort(order[test_pos]))


def _validate_embeddings(embeddings: np.ndarray, labels: np.ndarray) -> tuple:
    import numpy as np

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"embeddings must be a non-empty [rows, dim] matrix, got {x.shape}")
    y = check_labels(labels, x.shape[0]).astype(np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(
            f"embeddings of {int(bad.sum())} rows are not finite, first rows "
            f"{np.flatnonzero(bad)[:5].tolist()}"
        )
    return x, y


def head_probabilities(head: torch.nn.Module, embeddings: np.ndarray) -> np.ndarray:
    import numpy as np
    import torch

    with torch.inference_mode():
        p = head(torch.from_numpy(np.asarray(embeddings, dtype=np.float32))).reshape(-1)
    return p.numpy().astype(np.float64)


@dataclass(frozen=True)
class HeadResult:
    head: torch.nn.Module
    loss_history: list[float]
    epoch_seconds: list[float]
    pos_weight: float | None


def train_head(
    embeddings: np.ndarray,
    labels: np.ndarray,
    config: HeadConfig | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> HeadResult:
    """Train the head on float32 [N, dim] embeddings and 0/1 labels (deterministic)."""
    import torch

    from dfp.ml.determinism import deterministic, fit_logits

    config = config or HeadConfig()
    x_np, y_np = _validate_embeddings(embeddings, labels)
    if config.pos_weight == "balanced":
        positive = float(y_np.sum())
        pos_weight = (y_np.shape[0] - positive) / max(positive, 1.0)
    else:
        pos_weight = None if config.pos_weight is None else float(config.pos_weight)
    with deterministic(config.seed, config.threads):
        head = new_head(x_np.shape[1], config.hidden)
        head.fit_standardization(torch.from_numpy(x_np))
        history = fit_logits(
            head,
            torch.from_numpy(x_np),
            torch.from_numpy(y_np).unsqueeze(1),
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            pos_weight=pos_weight,
            seed=config.seed,
            on_epoch=on_epoch,
        )
    return HeadResult(head, history.loss_history, history.epoch_seconds, pos_weight)


def fit_baseline(texts: Sequence[str], labels: np.ndarray, config: HeadConfig) -> Pipeline:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression (liblinear, seeded)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    y = check_labels(labels, len(texts))
    pipeline = make_pipeline(
        TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            min_df=2,
            max_features=config.baseline_max_features,
            dtype=np.float64,
        ),
        LogisticRegression(
            C=config.baseline_c, solver="liblinear", max_iter=1000, random_state=config.seed
        ),
    )
    pipeline.fit(list(texts), y)
    return pipeline


def baseline_probabilities(pipeline: Pipeline, texts: Sequence[str]) -> np.ndarray:
    classes = list(pipeline.classes_)
    return pipeline.predict_proba(list(texts))[:, classes.index(1)]


def head_digest(head: torch.nn.Module) -> str:
    """sha256 over the head's state dict (names, dtypes, shapes, bytes), by name."""
    import torch

    digest = hashlib.sha256()
    state = head.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class ToxicityOutcome:
    """A trained head, its test metrics, the baseline's on the same split, class counts."""

    head: torch.nn.Module
    config: HeadConfig
    split: Split
    class_counts: dict[str, dict[str, int]]
    test: Metrics
    train: Metrics
    baseline_test: Metrics
    loss_history: list[float]
    epoch_seconds: list[float]
    train_seconds: float
    baseline_seconds: float
    digest: str

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: test_* and train_* of the head, baseline_test_*."""
        out: dict[str, float] = {}
        for prefix, metrics in (
            ("test", self.test),
            ("train", self.train),
            ("baseline_test", self.baseline_test),
        ):
            out.update({f"{prefix}_{k}": v for k, v in metrics.as_dict().items()})
        return out

    def params(self) -> dict[str, str]:
        out = {k: str(v) for k, v in self.config.model_dump().items()}
        for side, counts in self.class_counts.items():
            for label, n in counts.items():
                out[f"{side}_{label}"] = str(n)
        return out


def fit_toxicity(
    ids: Sequence[str],
    texts: Sequence[str],
    labels: np.ndarray,
    embeddings: np.ndarray,
    config: HeadConfig | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> ToxicityOutcome:
    """Split, train the head and the baseline on the train side, evaluate both on the test
    side at `config.threshold`."""
    import numpy as np

    config = config or HeadConfig()
    if not len(ids) == len(texts) == len(labels) == len(embeddings):
        raise ValueError(
            f"row counts differ: {len(ids)} ids, {len(texts)} texts, {len(labels)} labels, "
            f"{len(embeddings)} embeddings"
        )
    y = check_labels(np.asarray(labels), len(ids))
    split = stratified_split(ids, y, config.test_fraction, config.seed)
    x = np.asarray(embeddings, dtype=np.float32)
    started = time.perf_counter()
    result = train_head(x[split.train], y[split.train], config, on_epoch)
    train_seconds = time.perf_counter() - started
    test = metrics_from_probabilities(
        head_probabilities(result.head, x[split.test]), y[split.test], config.threshold
    )
    train = metrics_from_probabilities(
        head_probabilities(result.head, x[split.train]), y[split.train], config.threshold
    )
    started = time.perf_counter()
    text_array = np.asarray(list(texts), dtype=object)
    baseline = fit_baseline(text_array[split.train], y[split.train], config)
    baseline_test = metrics_from_probabilities(
        baseline_probabilities(baseline, text_array[split.test]), y[split.test], config.threshold
    )
    baseline_seconds = time.perf_counter() - started
    return ToxicityOutcome(
        head=result.head,
        config=config,
        split=split,
        class_counts=split.counts(y),
        test=test,
        train=train,
        baseline_test=baseline_test,
        loss_history=result.loss_history,
        epoch_seconds=result.epoch_seconds,
        train_seconds=train_seconds,
        baseline_seconds=baseline_seconds,
        digest=head_digest(result.head),
    )


FORMAT = "dfp.toxicity_head"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedHead:
    head: torch.nn.Module
    encoder: dict  # the encoder identity it was trained on (`EncoderIdentity.as_dict`)
    max_length: int
    threshold: float


def save_head(head: torch.nn.Module, encoder: dict, max_length: int, threshold: float) -> bytes:
    """The head's bytes: architecture, state dict, and the encoder identity, maximum length
    and threshold it is used with (loads with weights_only=True)."""
    import io

    import torch

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dim": head.dim,
        "hidden": head.hidden,
        "state_dict": {k: v.detach().cpu().clone() for k, v in head.state_dict().items()},
        "encoder": json.dumps(encoder, sort_keys=True),
        "max_length": int(max_length),
        "threshold": float(threshold),
    }
    out = io.BytesIO()
    torch.save(payload, out)
    return out.getvalue()


def load_head(data: bytes) -> SavedHead:
    import io

    import torch

    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a saved {FORMAT}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format version {payload.get('format_version')}, want {FORMAT_VERSION}")
    head = new_head(int(payload["dim"]), int(payload["hidden"]))
    head.load_state_dict(payload["state_dict"], strict=True)
    head.eval()
    return SavedHead(
        head=head,
        encoder=json.loads(payload["encoder"]),
        max_length=int(payload["max_length"]),
        threshold=float(payload["threshold"]),
    )

"""Cross-branch evaluation: the published model of one branch scored on another branch's
training set, beside that branch's own model (pure logic, no Dagster).

The question Kronodroid exists for is concept drift: how does last year's model do on this
year's apps? With a branch per data set, that is "score `main`'s model on branch B's data".

* **A branch's published model** is the object `models/malware_model/model.pt` at the head of
  the branch: write-audit-publish merges a model into a branch only when every blocking check
  of its run passed, so what the head holds is what was published. Its MLflow run is the one
  its memo (`_dfp/memo/malware_model.json`, written with the model) names, when the memo's
  checksum is the object's.
* **Where it is scored**: this branch's training set (`training/kronodroid_training_set.parquet`),
  on two subsets:
  - `all`: every row;
  - `temporal_test`: the newest rows, cut exactly as `malware_model` cuts its temporal test
    side (`TEST_FRACTION`). There this branch's own model is scored on apps it never saw,
    so its figures are its published temporal ones and the delta is a fair comparison. On
    `all`, the own model has seen most rows in training (and the other model may have too,
    when the branches share apps).
* **Metrics** are `dfp.kronodroid.model.evaluate`'s, every key of `Metrics.as_dict()` (a metric
  added there appears here); the delta of a metric is `model_from − own`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dfp.kronodroid.features import FEATURE_GROUPS
from dfp.kronodroid.model import Metrics, evaluate, load_model, temporal_split
from dfp.kronodroid.training import (
    MODEL_ASSET,
    MODEL_OBJECT,
    TEST_FRACTION,
    TRAINING_SET_OBJECT,
    in_entity_order,
    training_matrix,
    training_set_digest,
)
from dfp.lake import memo
from dfp.lake.lakefs_client import LakeFSClient

if TYPE_CHECKING:
    import pandas as pd

    from dfp.kronodroid.model.classifier import MalwareClassifier

SUBSETS = ("all", "temporal_test")


class EvaluationError(ValueError):
    """A cross-branch evaluation cannot run; the message names the branch and what is missing."""


@dataclass(frozen=True)
class PublishedModel:
    """A branch's model as its head (or a run branch) holds it."""

    branch: str
    ref: str  # what it was read from: the branch, or a run branch of it
    commit: str
    checksum: str  # lakeFS checksum of the model object
    mlflow_run_id: str | None  # from the model's memo, when the memo is the object's
    model: MalwareClassifier


@dataclass(frozen=True)
class TrainingData:
    branch: str
    ref: str
    commit: str
    digest: str
    frame: pd.DataFrame  # in entity order


def _require_branch(client: LakeFSClient, branch: str) -> None:
    if not client.branch_exists(branch):
        raise EvaluationError(
            f"lakeFS branch {branch!r} does not exist in repository {client.repository!r}"
        )


class MissingOnBranch(EvaluationError):
    """The branch (or its run branch) lacks the model or the training set."""


def _present(client: LakeFSClient, branch: str, ref: str, commit: str, path: str, what: str) -> str:
    """The checksum of `path` at `commit` (the head of `ref`), or MissingOnBranch naming the
    branch."""
    found = memo.checksum(client, commit, path)
    if found is None:
        where = f"branch {branch!r}" if ref == branch else f"branch {branch!r} (run branch {ref})"
        raise MissingOnBranch(
            f"{where} has no {what}: {path} is not at its head {commit[:12]}; build it first "
            "(job train_malware_model or build_all on that branch)"
        )
    return found


def published_model(client: LakeFSClient, branch: str, ref: str | None = None) -> PublishedModel:
    """The model published on `branch` (read from `ref`, default the branch's head)."""
    _require_branch(client, branch)
    ref = ref or branch
    commit = client.head(ref)  # a run branch is a branch too
    checksum = _present(client, branch, ref, commit, MODEL_OBJECT, "published model")
    data = client.read(commit, MODEL_OBJECT)
    # Without its memo the model is still the branch's; only its MLflow run is unknown.
    recorded = memo.describing(client, commit, MODEL_ASSET, MODEL_OBJECT, checksum)
    run_id = recorded.metadata.get("mlflow_run_id") if recorded is not None else None
    with tempfile.TemporaryDirectory(prefix="dfp-evaluate-") as tmp:
        path = Path(tmp) / "model.pt"
        path.write_bytes(data)
        try:
            model = load_model(path)
        except ValueError as exc:
            raise EvaluationError(f"branch {branch!r}: {MODEL_OBJECT} {exc}") from exc
    return PublishedModel(branch, ref, commit, checksum, run_id, model)


def branch_training_set(client: LakeFSClient, branch: str, ref: str | None = None) -> TrainingData:
    """`branch`'s training set (read from `ref`, default the branch's head)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _require_branch(client, branch)
    ref = ref or branch
    commit = client.head(ref)
    _present(client, branch, ref, commit, TRAINING_SET_OBJECT, "training set")
    data = client.read(commit, TRAINING_SET_OBJECT)
    frame = in_entity_order(pq.read_table(pa.BufferReader(data)).to_pandas())
    return TrainingData(
        branch, ref, commit, training_set_digest(frame, list(FEATURE_GROUPS)), frame
    )


def metric_deltas(model_from: Mapping[str, float], own: Mapping[str, float]) -> dict[str, float]:
    """`model_from − own` for every metric (NaN when either is NaN). Both come from the same
    metric function, so a metric on one side only is a programming error, named."""
    if set(model_from) != set(own):
        raise ValueError(
            f"metrics differ in names: only model_from {sorted(set(model_from) - set(own))}, "
            f"only own {sorted(set(own) - set(model_from))}"
        )
    out = {}
    for key, value in model_from.items():
        a, b = float(value), float(own[key])
        out[key] = math.nan if math.isnan(a) or math.isnan(b) else a - b
    return out


@dataclass(frozen=True)
class SubsetScores:
    subset: str  # one of SUBSETS
    rows: int
    model_from: Metrics
    own: Metrics | None  # None when the branch has no model of its own

    @property
    def delta(self) -> dict[str, float] | None:
        if self.own is None:
            return None
        return metric_deltas(self.model_from.as_dict(), self.own.as_dict())


def _check_width(model: MalwareClassifier, features, name: str, on: str) -> None:
    if model.n_features != features.shape[1]:
        raise EvaluationError(
            f"{name} takes {model.n_features} features, but branch {on!r}'s training set has "
            f"{features.shape[1]} ({', '.join(FEATURE_GROUPS)}): the branches' features differ"
        )


def score_subsets(
    model_from: MalwareClassifier,
    own: MalwareClassifier | None,
    frame: pd.DataFrame,
    *,
    names: tuple[str, str] = ("model_from", "own"),
    on: str = "this branch",
    vector_columns: Sequence[str] = tuple(FEATURE_GROUPS),
    threshold: float = 0.5,
) -> list[SubsetScores]:
    """Both models on every subset of `frame` (a training set, any row order)."""
    import pandas as pd

    if frame.empty:
        raise EvaluationError(f"branch {on!r}'s training set has no rows")
    ordered = in_entity_order(frame)
    features, labels = training_matrix(ordered, vector_columns)
    _check_width(model_from, features, f"the model of {names[0]!r}", on)
    if own is not None:
        _check_width(own, features, f"the model of {names[1]!r}", on)
    dates = pd.to_datetime(ordered["event_timestamp"], utc=True)
    _, test_idx = temporal_split(dates, TEST_FRACTION, labels=labels)
    out = []
    for subset, rows in (("all", slice(None)), ("temporal_test", test_idx)):
        x, y = features[rows], labels[rows]
        out.append(
            SubsetScores(
                subset=subset,
                rows=int(y.shape[0]),
                model_from=evaluate(model_from, x, y, threshold),
                own=evaluate(own, x, y, threshold) if own is not None else None,
            )
        )
    return out


@dataclass(frozen=True)
class CrossBranchEvaluation:
    model_from: PublishedModel
    own: PublishedModel | None
    data: TrainingData
    subsets: list[SubsetScores]

    @property
    def on(self) -> str:
        return self.data.branch

    def metrics(self) -> dict[str, float]:
        """Flat figures: `<subset>_<metric>` (model_from), `<subset>_own_<metric>`,
        `<subset>_delta_<metric>`."""
        out: dict[str, float] = {}
        for s in self.subsets:
            out.update({f"{s.subset}_{k}": v for k, v in s.model_from.as_dict().items()})
            if s.own is not None:
                out.update({f"{s.subset}_own_{k}": v for k, v in s.own.as_dict().items()})
                out.update({f"{s.subset}_delta_{k}": v for k, v in (s.delta or {}).items()})
        return out

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows: subset, metric, model_from's value, own value, delta."""
        header = [
            "subset",
            "metric",
            f"model of {self.model_from.branch}",
            f"model of {self.on}" if self.own is not None else "(no own model)",
            "delta",
        ]
        rows = []
        for s in self.subsets:
            own = s.own.as_dict() if s.own is not None else {}
            delta = s.delta or {}
            for key, value in s.model_from.as_dict().items():
                rows.append(
                    [
                        f"{s.subset} ({s.rows} rows)",
                        key,
                        _fmt(value),
                        _fmt(own[key]) if key in own else "-",
                        _fmt(delta[key], signed=True) if key in delta else "-",
                    ]
                )
        return header, rows

    def markdown(self) -> str:
        header, rows = self.table()
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)

    def text(self) -> str:
        """The table aligned for a terminal."""
        header, rows = self.table()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        return "\n".join(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in [header, *rows]
        )

    def summary(self) -> str:
        source = self.model_from
        own = self.own
        return "\n".join(
            [
                f"model of {source.branch}: commit {source.commit[:12]}, MLflow run "
                f"{source.mlflow_run_id or 'unknown'}",
                f"model of {self.on}: "
                + (
                    f"commit {own.commit[:12]}, MLflow run {own.mlflow_run_id or 'unknown'}"
                    if own is not None
                    else "none published"
                ),
                f"training set of {self.on}: commit {self.data.commit[:12]}, "
                f"{len(self.data.frame)} rows, {self.data.digest[:19]}",
            ]
        )


def _fmt(value: float, *, signed: bool = False) -> str:
    if math.isnan(value):
        return "nan"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{value:+.0f}" if signed else f"{value:.0f}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def evaluate_across(
    client: LakeFSClient,
    *,
    model_from: str,
    on: str,
    on_ref: str | None = None,
    require_own: bool = False,
) -> CrossBranchEvaluation:
    """Score `model_from`'s published model on `on`'s training set beside `on`'s own model.

    `on_ref` is where `on`'s training set and own model are read (a run branch of `on`, in an
    asset step; default `on`'s head). When `model_from` is `on` itself, its model is read
    there too. Without an own model the deltas are left out, unless `require_own`.
    """
    _require_branch(client, on)
    source = published_model(client, model_from, on_ref if model_from == on else None)
    data = branch_training_set(client, on, on_ref)
    try:
        own = published_model(client, on, on_ref)
    except MissingOnBranch:
        if require_own:
            raise
        own = None
    subsets = score_subsets(
        source.model,
        own.model if own is not None else None,
        data.frame,
        names=(model_from, on),
        on=on,
    )
    return CrossBranchEvaluation(source, own, data, subsets)

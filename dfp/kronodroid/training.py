"""One training run of the malware model: matrix from the training set, two evaluations
(temporal and random split) of the MLP and of a gradient-boosted baseline trained on the same
splits, with each split's class counts and date ranges; deterministic. Pure logic shared by
the Dagster asset and `dfp reproduce`; no Dagster imports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dfp.kronodroid.model import (
    Metrics,
    SplitSummary,
    TrainConfig,
    baseline_probabilities,
    evaluate,
    fit_baseline,
    metrics_from_probabilities,
    model_digest,
    random_split,
    summarize_split,
    temporal_split,
)
from dfp.kronodroid.model import train as train_model

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from dfp.kronodroid.model.classifier import MalwareClassifier


TEST_FRACTION = 0.2
#: Where `malware_model` keeps the trained model on its branch.
MODEL_ASSET = "malware_model"
MODEL_OBJECT = "models/malware_model/model.pt"
#: The splits every run evaluates on, in report order.
SPLITS = ("temporal", "random")
#: Prefix of the baseline's metric names (MLflow, `TrainingOutcome.metrics`).
BASELINE_PREFIX = "baseline_"


@dataclass(frozen=True)
class TrainingOutcome:
    """The published model is the one trained on the temporal split's older apps: its test
    figures are the honest forecast for apps that have not been seen yet."""

    model: MalwareClassifier
    temporal: Metrics
    random: Metrics
    config: TrainConfig
    rows: dict[str, int]
    epoch_seconds: list[float]
    digest: str
    #: The gradient-boosted baseline's test metrics, by split name (`SPLITS`).
    baseline: dict[str, Metrics]
    #: Class counts and date ranges of both sides, by split name.
    splits: dict[str, SplitSummary]

    def split_metrics(self, split: str) -> Metrics:
        return {"temporal": self.temporal, "random": self.random}[split]

    def metrics(self) -> dict[str, float]:
        """`<split>_<metric>` of the MLP, `baseline_<split>_<metric>` of the baseline."""
        out = {}
        for prefix, of_split in (("", self.split_metrics), (BASELINE_PREFIX, self.baseline.get)):
            for split in SPLITS:
                values = of_split(split).as_dict()
                out.update({f"{prefix}{split}_{k}": v for k, v in values.items()})
        return out

    def params(self) -> dict[str, str]:
        params = {
            k: json.dumps(v) if not isinstance(v, str) else v
            for k, v in self.config.model_dump().items()
        }
        params.update({f"rows_{k}": str(v) for k, v in self.rows.items()})
        for split, summary in self.splits.items():
            for side in ("train", "test"):
                counts = getattr(summary, side)
                params[f"{split}_{side}_benign"] = str(counts.benign)
                params[f"{split}_{side}_malware"] = str(counts.malware)
                dates = getattr(summary, f"{side}_dates")
                params[f"{split}_{side}_dates"] = " to ".join(dates) if dates else "none"
        params["test_fraction"] = str(TEST_FRACTION)
        return params


ENTITY_COLUMNS = ("sha256", "capture", "event_timestamp", "label")
TRAINING_SET_OBJECT = "training/kronodroid_training_set.parquet"
#: Rows per parquet row group of the training set. It is written in entity order, so an
#: export's parity batch (the first rows by entity key) is in the leading groups and
#: `parity_rows_from_parquet` reads those instead of the whole ~270 MB of vectors.
TRAINING_SET_ROW_GROUP_ROWS = 8192


def entity_frame(feast_table: pa.Table) -> pd.DataFrame:
    """The training entities: every (app, capture) of the mart at its own event time."""
    return feast_table.select(list(ENTITY_COLUMNS)).to_pandas()


#: The training set's row order: the entity key, then event time (rows of one key).
ENTITY_ORDER = ("sha256", "capture", "event_timestamp")


def in_entity_order(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` sorted by `ENTITY_ORDER` (stable). Splits and batches are drawn by position,
    so this is what makes two rebuilds of the same data, whose rows may arrive in any order
    (a re-run dbt model, another offline store), train the same model."""
    return frame.sort_values(list(ENTITY_ORDER), kind="mergesort").reset_index(drop=True)


def build_training_set(store, feast_table: pa.Table) -> pd.DataFrame:
    """Point-in-time features for every mart row, through Feast's feature service, in
    entity order (`in_entity_order`)."""
    from dfp.kronodroid.features import historical_features

    return in_entity_order(historical_features(store, entity_frame(feast_table)))


def training_set_digest(frame: pd.DataFrame, vector_columns: Sequence[str]) -> str:
    """sha256 of the exact training data (keys, labels, feature matrix), for lineage."""
    features, labels = training_matrix(frame, vector_columns)
    digest = hashlib.sha256()
    keys = frame["sha256"].astype(str) + ":" + frame["capture"].astype(str)
    digest.update("\n".join(keys).encode())
    digest.update(labels.tobytes())
    digest.update(features.tobytes())
    return "sha256:" + digest.hexdigest()


def training_matrix(
    frame: pd.DataFrame, vector_columns: Sequence[str], label_column: str = "label"
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-group feature vectors (list columns) into a float32 matrix, in order.

    A row whose vector is missing (no feature row at or before its event time) is an error
    naming the entity: training on zeros would silently teach the model nonsense.
    """
    import numpy as np

    missing = [c for c in (*vector_columns, label_column) if c not in frame.columns]
    if missing:
        raise ValueError(f"training set lacks column(s) {missing}")
    blocks = []
    for column in vector_columns:
        values = frame[column]
        absent = values.isna().to_numpy()
        if absent.any():
            first = frame.loc[absent].head(3)
            keys = first[[c for c in ("sha256", "capture") if c in frame]].to_dict("records")
            raise ValueError(
                f"training set: {int(absent.sum())} row(s) have no '{column}' features, e.g. {keys}"
            )
        blocks.append(np.stack(values.to_numpy()).astype(np.float32, copy=False))
    features = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    labels = frame[label_column].to_numpy().astype(np.int64)
    return np.ascontiguousarray(features), labels


def fit_and_evaluate(
    features: np.ndarray,
    labels: np.ndarray,
    event_dates: Sequence | np.ndarray | pd.Series,
    config: TrainConfig,
    threshold: float = 0.5,
    on_epoch: Callable[[str, int, float, float], None] | None = None,
) -> TrainingOutcome:
    """Train and evaluate the MLP and the baseline on a temporal split (older → newer) and on
    a random split. ``on_epoch(split, epoch, loss, seconds)`` reports each epoch of both MLP
    trainings."""

    def report(split: str) -> Callable[[int, float, float], None] | None:
        if on_epoch is None:
            return None
        return lambda epoch, loss, seconds: on_epoch(split, epoch, loss, seconds)

    def baseline_metrics(train: np.ndarray, test: np.ndarray) -> Metrics:
        model = fit_baseline(
            features[train],
            labels[train],
            seed=config.seed,
            threads=config.baseline_threads,
            max_iter=config.baseline_max_iter,
        )
        probabilities = baseline_probabilities(
            model, features[test], threads=config.baseline_threads
        )
        return metrics_from_probabilities(probabilities, labels[test], threshold)

    train_idx, test_idx = temporal_split(event_dates, TEST_FRACTION, labels=labels)
    temporal = train_model(features[train_idx], labels[train_idx], config, report("temporal"))
    temporal_metrics = evaluate(temporal.model, features[test_idx], labels[test_idx], threshold)

    r_train, r_test = random_split(labels, TEST_FRACTION, seed=config.seed)
    random = train_model(features[r_train], labels[r_train], config, report("random"))
    random_metrics = evaluate(random.model, features[r_test], labels[r_test], threshold)

    return TrainingOutcome(
        model=temporal.model,
        temporal=temporal_metrics,
        random=random_metrics,
        config=config,
        rows={
            "total": int(len(labels)),
            "temporal_train": int(len(train_idx)),
            "temporal_test": int(len(test_idx)),
            "random_train": int(len(r_train)),
            "random_test": int(len(r_test)),
        },
        epoch_seconds=list(temporal.epoch_seconds),
        digest=model_digest(temporal.model),
        baseline={
            "temporal": baseline_metrics(train_idx, test_idx),
            "random": baseline_metrics(r_train, r_test),
        },
        splits={
            "temporal": summarize_split(labels, event_dates, train_idx, test_idx),
            "random": summarize_split(labels, event_dates, r_train, r_test),
        },
    )


def fit_training_set(
    frame: pd.DataFrame,
    vector_columns: Sequence[str],
    config: TrainConfig,
    on_epoch: Callable[[str, int, float, float], None] | None = None,
) -> tuple[TrainingOutcome, np.ndarray]:
    """`fit_and_evaluate` on a training set taken in entity order, whatever order its rows
    came in; returns the outcome and the feature matrix it was trained on (in that order).
    Rows at `NULL_EVENT_TIMESTAMP` (apps without a date) are undated for the split: they go
    to train, as they would as the oldest date, and reports leave them out of date ranges."""
    import pandas as pd

    from dfp.kronodroid.features import NULL_EVENT_TIMESTAMP

    ordered = in_entity_order(frame)
    features, labels = training_matrix(ordered, vector_columns)
    dates = pd.to_datetime(ordered["event_timestamp"], utc=True)
    dates = dates.where(dates != pd.Timestamp(NULL_EVENT_TIMESTAMP))
    return fit_and_evaluate(features, labels, dates, config, on_epoch=on_epoch), features


def parity_rows_from_parquet(
    source: Any, vector_columns: Sequence[str], rows: int = 64
) -> np.ndarray:
    """`parity_rows` of the training set parquet at `source` (a path or a seekable file),
    reading only the leading row groups when that gives the same batch: the footer's sha256
    statistics show that every later group holds strictly greater keys, and the groups read
    already hold `rows // 2` rows of each class. Any other file is read whole."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    meta = parquet.metadata
    bounds = _key_bounds(meta, "sha256")
    per_class = rows // 2
    tables = [parquet.schema_arrow.empty_table()]
    counts = {0: 0, 1: 0}
    for group in range(meta.num_row_groups):
        tables.append(parquet.read_row_group(group))
        for label, n in _label_counts(tables[-1]).items():
            counts[label] = counts.get(label, 0) + n
        if min(counts[0], counts[1]) >= per_class and _later_groups_greater(bounds, group):
            break
    return parity_rows(pa.concat_tables(tables).to_pandas(), vector_columns, rows)


def _key_bounds(meta: Any, column: str) -> list[tuple[Any, Any]] | None:
    """(min, max) of `column` per row group from the footer; None if any group lacks them."""
    index = next((j for j in range(meta.num_columns) if meta.schema.column(j).path == column), None)
    if index is None:
        return None
    bounds = []
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            return None
        bounds.append((stats.min, stats.max))
    return bounds


def _later_groups_greater(bounds: list[tuple[Any, Any]] | None, group: int) -> bool:
    """Whether every key after row group `group` is strictly greater than every key up to it
    (ties could hold an earlier (sha256, capture) in a later group)."""
    if bounds is None:
        return False
    if group + 1 >= len(bounds):
        return True
    read_max = max(high for _, high in bounds[: group + 1])
    return read_max < min(low for low, _ in bounds[group + 1 :])


def _label_counts(table: pa.Table) -> dict[int, int]:
    import pyarrow.compute as pc

    counted = pc.value_counts(table.column("label").drop_null())
    return dict(
        zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
    )


def parity_rows(frame: pd.DataFrame, vector_columns: Sequence[str], rows: int = 64) -> np.ndarray:
    """A fixed batch of real feature rows for export parity checks: up to rows/2 of each class,
    the first by (sha256, capture), so the batch does not depend on the table's row order and
    both decisions are exercised."""
    import pandas as pd

    if rows < 2:
        raise ValueError(f"parity batch needs at least 2 rows, got {rows}")
    ordered = frame.sort_values(["sha256", "capture"], kind="mergesort")
    per_class = rows // 2
    picked = pd.concat(
        [ordered[ordered["label"] == label].head(per_class) for label in (1, 0)]
    ).sort_values(["sha256", "capture"], kind="mergesort")
    if picked.empty:
        raise ValueError("parity batch: the training set has no rows")
    features, _ = training_matrix(picked, vector_columns)
    return features

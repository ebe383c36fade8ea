"""`dfp reproduce <mlflow run id>`: rebuild a run's training set from its recorded lakeFS
commit and Iceberg snapshot, retrain with the recorded config, and compare. No Dagster.

The mart is read at the recorded lakeFS commit (a commit id is a read-only ref for lakeFS
and its S3 gateway) and at the recorded snapshot id; Feast's point-in-time join runs again
in a throwaway store (local registry, SQLite online, the offline table in a temp dir).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from dfp import tracking
from dfp.kronodroid.features import (
    FEATURE_GROUPS,
    SqliteOnline,
    apply_definitions,
    feature_store,
    mart_to_feast_table,
)
from dfp.kronodroid.model import TrainConfig
from dfp.kronodroid.training import (
    build_training_set,
    fit_training_set,
    training_set_digest,
)
from dfp.lake.iceberg import BranchTables
from dfp.lake.lakefs_client import LakeFSClient
from dfp.ml.metrics import compare_with_recorded
from dfp.tracking import ReproduceError, required_tag

MART = ("marts", "mart_app_features")


@dataclass
class Reproduction:
    run_id: str
    commit: str
    recorded_commit: str
    training_set_digest: str
    recorded_training_set_digest: str
    metrics: dict[str, float]
    recorded_metrics: dict[str, float]
    differences: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return (
            not self.differences
            and self.commit == self.recorded_commit
            and self.training_set_digest == self.recorded_training_set_digest
        )


def recorded_train_config(recorded: str) -> TrainConfig:
    """The training config a run recorded (JSON). A run recorded before `baseline_threads`
    existed fitted its baseline on `threads`."""
    values = json.loads(recorded)
    values.setdefault("baseline_threads", values.get("threads", 1))
    return TrainConfig.model_validate(values)


def reproduce(
    run_id: str,
    *,
    client: LakeFSClient,
    catalog_uri: str,
    tracker: tracking.Tracker,
    tolerance: float = 1e-6,
    log: Callable[[str], None] = print,
) -> Reproduction:
    """`log` gets one line per stage: the MLflow run read, the mart read, the point-in-time
    join, each training epoch, the comparison."""
    recorded = tracker.read(run_id)
    tracking.check_repository(recorded, client.repository)
    repository = client.repository
    commit = client.get_commit(required_tag(recorded, tracking.TAG_COMMIT)).id
    snapshots = json.loads(required_tag(recorded, tracking.TAG_SNAPSHOTS))
    snapshot_id = snapshots.get(".".join(MART))
    if snapshot_id is None:
        raise ReproduceError(f"run {run_id} recorded no snapshot of {'.'.join(MART)}")
    config = recorded_train_config(required_tag(recorded, tracking.TAG_TRAIN_CONFIG))
    log(
        f"read MLflow run {run_id}: lakeFS commit {commit[:12]}, mart snapshot {snapshot_id}, "
        f"{len(recorded.metrics)} metrics, {config.epochs} epochs"
    )

    # The mart as it was: the commit's catalog pointer, then the recorded snapshot.
    tables = BranchTables(client, catalog_uri)
    tables.sync(commit)
    try:
        mart = tables.catalog(commit).load_table(tables.identifier(commit, *MART))
        snapshot = mart.snapshot_by_id(int(snapshot_id))
        if snapshot is None:
            raise ReproduceError(f"snapshot {snapshot_id} of the mart is gone at {commit}")
        created = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, tz=UTC)
        feast_table = mart_to_feast_table(
            mart.scan(snapshot_id=snapshot.snapshot_id).to_arrow(), created_at=created
        )
    finally:
        tables.forget(commit)
    log(
        f"read {'.'.join(MART)} at commit {commit[:12]} snapshot {snapshot_id}: "
        f"{feast_table.num_rows} rows"
    )

    with tempfile.TemporaryDirectory(prefix="dfp-reproduce-") as tmp:
        offline = Path(tmp) / "app_features.parquet"
        pq.write_table(feast_table, offline)
        store = feature_store(
            f"reproduce-{run_id}",
            repository=repository,
            online=SqliteOnline(directory=Path(tmp) / "online"),
            registry_dir=Path(tmp) / "registry",
            offline_path=str(offline),
        )
        apply_definitions(store)
        frame = build_training_set(store, feast_table)

    groups = list(FEATURE_GROUPS)
    digest = training_set_digest(frame, groups)
    recorded_digest = recorded.tags.get(tracking.TAG_TRAINING_SET_DIGEST, "")
    short = digest.removeprefix("sha256:")[:12]
    log(
        f"point-in-time join: {len(frame)} rows, training set {short} "
        f"({'same as' if digest == recorded_digest else 'DIFFERS from'} the recorded one)"
    )

    def epoch_done(split: str, epoch: int, loss: float, seconds: float) -> None:
        log(
            f"training ({split} split): epoch {epoch}/{config.epochs} "
            f"loss {loss:.4f} {seconds:.1f}s"
        )

    outcome, _ = fit_training_set(frame, groups, config, on_epoch=epoch_done)
    metrics = outcome.metrics()
    recorded_metrics, differences = compare_with_recorded(recorded.metrics, metrics, tolerance)
    if not recorded_metrics:
        raise ReproduceError(
            f"MLflow run {run_id} recorded none of the {len(metrics)} metrics this code computes "
            f"(it has {sorted(recorded.metrics)[:5]}...), so there is nothing to compare"
        )
    unrecorded = len(metrics) - len(recorded_metrics)
    log(
        f"compared {len(recorded_metrics)} metrics with the run's"
        + (f" ({unrecorded} newer ones it did not record are not compared)" if unrecorded else "")
        + ": "
        + (f"{len(differences)} differ ({', '.join(differences)})" if differences else "all within")
        + f" (tolerance {tolerance:g})"
    )
    return Reproduction(
        run_id=run_id,
        commit=commit,
        recorded_commit=required_tag(recorded, tracking.TAG_COMMIT),
        training_set_digest=digest,
        recorded_training_set_digest=recorded_digest,
        metrics=metrics,
        recorded_metrics=recorded_metrics,
        differences=differences,
    )

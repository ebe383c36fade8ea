"""`dfp reproduce <mlflow run id>` for a toxicity_model run: read the embeddings and comment
texts at the recorded lakeFS commit, retrain the head and the baseline with the recorded config,
and compare every metric (pure logic, no Dagster).

The embeddings object at the commit must be the one the run read (its lakeFS checksum is in the
run's `dfp.toxic.embeddings` tag); training is deterministic, so the metrics match within the
tolerance on the same torch build and machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from dfp import tracking
from dfp.lake.lakefs_client import LakeFSClient
from dfp.ml.metrics import compare_with_recorded
from dfp.toxic.embeddings import training_inputs
from dfp.toxic.model import HeadConfig, fit_toxicity
from dfp.tracking import ReproduceError, required_tag

DOMAIN = "toxic"
#: Lineage tags of a toxicity_model run (beside the platform's lakeFS / Dagster ones).
TAG_ENCODER = "dfp.toxic.encoder"  # JSON: source, name, file hashes, pooling, digest
TAG_TOKENIZER = "dfp.toxic.tokenizer"  # JSON: WordPiece vocab hash, max length
TAG_TABLE_CLEAN = "dfp.postgres.table_clean"  # JSON: schema, rows, content digest
TAG_DELTA = "dfp.delta.comments_raw"  # JSON: table URI at the commit, Delta version
TAG_EMBEDDINGS = "dfp.toxic.embeddings"  # JSON: object path, lakeFS checksum


@dataclass
class ToxicReproduction:
    run_id: str
    commit: str
    embeddings_checksum: str
    recorded_embeddings_checksum: str
    metrics: dict[str, float]
    recorded_metrics: dict[str, float]
    differences: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not self.differences and (
            self.embeddings_checksum == self.recorded_embeddings_checksum
        )


def is_toxic_run(recorded: tracking.RecordedRun) -> bool:
    return recorded.tags.get(tracking.TAG_DOMAIN) == DOMAIN


def reproduce(
    run_id: str,
    *,
    client: LakeFSClient,
    tracker: tracking.Tracker,
    tolerance: float = 1e-6,
    log: Callable[[str], None] = print,
) -> ToxicReproduction:
    recorded = tracker.read(run_id)
    if not is_toxic_run(recorded):
        raise ReproduceError(f"MLflow run {run_id} is not a toxicity_model run")
    tracking.check_repository(recorded, client.repository)
    commit = client.get_commit(required_tag(recorded, tracking.TAG_COMMIT)).id
    config = HeadConfig.model_validate_json(required_tag(recorded, tracking.TAG_TRAIN_CONFIG))
    recorded_checksum = json.loads(required_tag(recorded, TAG_EMBEDDINGS)).get("checksum", "")
    try:
        inputs = training_inputs(client, commit)
    except ValueError as exc:
        raise ReproduceError(f"run {run_id}: {exc}") from exc
    log(
        f"read MLflow run {run_id}: lakeFS commit {commit[:12]}, "
        f"{len(inputs.embeddings.ids)} embedded comments (embeddings "
        f"{'as recorded' if inputs.checksum == recorded_checksum else 'DIFFER from the run'})"
    )

    def epoch_done(epoch: int, loss: float, seconds: float) -> None:
        log(f"training the head: epoch {epoch}/{config.epochs} loss {loss:.4f} {seconds:.1f}s")

    outcome = fit_toxicity(
        inputs.embeddings.ids,
        inputs.texts,
        inputs.embeddings.labels,
        inputs.embeddings.matrix,
        config,
        on_epoch=epoch_done,
    )
    metrics = outcome.metrics()
    compared, differences = compare_with_recorded(recorded.metrics, metrics, tolerance)
    if not compared:
        raise ReproduceError(f"MLflow run {run_id} recorded none of this code's metrics")
    log(
        f"compared {len(compared)} metrics with the run's: "
        + (f"{len(differences)} differ ({', '.join(differences)})" if differences else "all within")
        + f" (tolerance {tolerance:g})"
    )
    return ToxicReproduction(
        run_id=run_id,
        commit=commit,
        embeddings_checksum=inputs.checksum,
        recorded_embeddings_checksum=recorded_checksum,
        metrics=metrics,
        recorded_metrics=compared,
        differences=differences,
    )

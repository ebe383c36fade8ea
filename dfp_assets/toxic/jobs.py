"""The toxic-comment domain's asset jobs (one place, so sensors can target them)."""

import dagster as dg

from dfp_assets.toxic.mobile import TOXICITY_EXPORT_ASSETS
from dfp_assets.toxic.model import comment_embeddings, toxicity_model
from dfp_assets.toxic.production import toxic_dbt
from dfp_assets.toxic.raw import comments_raw
from dfp_assets.toxic.staging import comments_tokenized

ingest_comments = dg.define_asset_job(
    "ingest_comments",
    selection=dg.AssetSelection.assets(comments_raw),
    description="Load toxic comments into a branch's Delta table and audit them "
    "(write-audit-publish).",
)

build_comments = dg.define_asset_job(
    "build_comments",
    selection=dg.AssetSelection.assets(comments_raw, comments_tokenized, toxic_dbt),
    description="Toxic comments on a branch: raw Delta table → WordPiece tokens in the branch's "
    "Postgres staging schema (Great Expectations checks) → dbt's table_clean in its production "
    "schema (dbt tests); every check blocking, both schemas swapped in with the lakeFS merge "
    "(write-audit-publish).",
)

apply_comment_changes = dg.define_asset_job(
    "apply_comment_changes",
    selection=build_comments.selection,
    config={"ops": {"comments_raw": {"config": {"source": "cdc"}}}},
    description="Apply the captured changes of app.comments (Debezium's Kafka topic, or Postgres "
    "logical replication) after the offsets the branch last published, then rebuild what "
    "build_comments builds; the offsets consumed are published with the merge. Requested by "
    "comments_cdc_sensor.",
)

train_toxicity_model = dg.define_asset_job(
    "train_toxicity_model",
    selection=dg.AssetSelection.assets(comment_embeddings, toxicity_model),
    description="On a branch whose table_clean is built: encode its comments with the frozen "
    "encoder (only those the branch's embeddings lack), train the toxicity head and the TF-IDF "
    "baseline, track them in MLflow; the ROC-AUC floor blocks publication.",
)

build_toxicity_model = dg.define_asset_job(
    "build_toxicity_model",
    selection=build_comments.selection | train_toxicity_model.selection,
    description="build_comments, then comment_embeddings and toxicity_model, published in one "
    "lakeFS merge when every check passed (write-audit-publish).",
)

export_toxicity_model = dg.define_asset_job(
    "export_toxicity_model",
    selection=dg.AssetSelection.assets(*TOXICITY_EXPORT_ASSETS),
    description="The branch's published toxicity_model (encoder + head, token ids + mask → "
    "probability) → ExecuTorch, TFLite and ONNX files, each gated by its blocking parity check "
    "on real comments; write-audit-publish.",
)

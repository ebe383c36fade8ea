"""The toxic-comment domain's asset jobs (one place, so sensors can target them)."""

import dagster as dg

from dfp_assets.toxic.raw import comments_raw

ingest_comments = dg.define_asset_job(
    "ingest_comments",
    selection=dg.AssetSelection.assets(comments_raw),
    description="Load toxic comments into a branch's Delta table and audit them "
    "(write-audit-publish).",
)

"""`comments_raw` as a Delta table on a lakeFS branch, through lakeFS's S3 gateway.

Layout on a branch: `raw/toxic_comments/comments/` (the Delta table: parquet files and
`_delta_log/`), beside dlt's `_dlt_*` bookkeeping under `raw/toxic_comments/`.

- A full load (`load_comments`) is a dlt load with `table_format="delta"` into a fresh table
  (the caller deletes the old one first, so a branch holds one table version per full load).
- A batch of captured changes (`apply_changes`) is one Delta MERGE with deltalake itself: dlt's
  Delta merge supports hard deletes only through a marker column that it then adds to the
  table's schema, and it needs the batch collapsed to one row per id anyway.

Delta's log commit on S3 needs an atomic "create if absent". lakeFS's S3 gateway honours
`If-None-Match: *` on PUT (checked against lakeFS 1.84: a second put of an existing key gets
412 PreconditionFailed), so delta-rs uses conditional put and needs neither a lock table nor
`AWS_S3_ALLOW_UNSAFE_RENAME`. Write-audit-publish gives each run its own branch anyway, and the
table's log is committed with the data in the run branch's commit.
No Dagster imports.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dfp.lake.lakefs_client import LakeFSClient
from dfp.toxic.records import ID, INGESTED_AT, LABEL, RAW_COLUMNS, SOURCE, TEXT, CommentChange
from dfp.toxic.sources import DEFAULT_MAX_COMMENT_BYTES, RAW_SCHEMA, collapse_changes

RAW_PREFIX = "raw"
DATASET = "toxic_comments"
TABLE = "comments"
#: Every raw object of the dataset on a branch (the Delta table and dlt's files).
RAW_OBJECTS_PREFIX = f"{RAW_PREFIX}/{DATASET}/"
TABLE_PREFIX = f"{RAW_OBJECTS_PREFIX}{TABLE}/"
CDC_SOURCE = "cdc:app.comments"

#: delta-rs (object_store) options besides credentials: path-style addressing (the gateway
#: resolves the repository from the path) and log commits by conditional put (see above).
DELTA_OPTIONS = {
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
    "AWS_CONDITIONAL_PUT": "etag",
}


def table_uri(repository: str, ref: str) -> str:
    return f"s3://{repository}/{ref}/{TABLE_PREFIX.rstrip('/')}"


def delta_storage_options(client: LakeFSClient) -> dict[str, str]:
    """deltalake storage options for lakeFS's S3 gateway."""
    settings = client.settings
    options = {
        "AWS_ACCESS_KEY_ID": settings.access_key_id,
        "AWS_SECRET_ACCESS_KEY": settings.secret_access_key,
        "AWS_ENDPOINT_URL": settings.endpoint,
        "AWS_REGION": "us-east-1",
        **DELTA_OPTIONS,
    }
    if settings.endpoint.startswith("http://"):
        options["AWS_ALLOW_HTTP"] = "true"
    return options


@dataclass(frozen=True)
class LoadResult:
    load_id: str
    rows: int
    seconds: float


def load_comments(
    table: pa.Table,
    *,
    repository: str,
    branch: str,
    credentials: dict[str, Any],
    pipelines_dir: Path | None = None,
) -> LoadResult:
    """Write `table` (`RAW_SCHEMA`) as the Delta table on `branch` with dlt (uncommitted).

    `credentials` are dlt AwsCredentials fields (key, secret, endpoint_url, ...).
    """
    import time

    import dlt

    if table.schema != RAW_SCHEMA:
        raise ValueError(f"comments table has schema {table.schema}, want {RAW_SCHEMA}")
    started = time.monotonic()

    @dlt.resource(name=TABLE, write_disposition="replace", table_format="delta")
    def comments():
        # Slices keep dlt's extract buffers bounded on full-size data.
        for batch in table.to_batches(max_chunksize=20_000):
            yield pa.Table.from_batches([batch], schema=table.schema)

    with tempfile.TemporaryDirectory(prefix="dfp-dlt-", dir=pipelines_dir) as work:
        pipeline = dlt.pipeline(
            pipeline_name=f"toxic_raw_{branch}",
            pipelines_dir=work,
            destination=dlt.destinations.filesystem(
                bucket_url=f"s3://{repository}/{branch}/{RAW_PREFIX}",
                credentials=credentials,
                deltalake_storage_options=dict(DELTA_OPTIONS),
            ),
            dataset_name=DATASET,
        )
        info = pipeline.run(comments(), loader_file_format="parquet")
        info.raise_on_failed_jobs()
        load_id = info.loads_ids[0]
    return LoadResult(load_id=load_id, rows=table.num_rows, seconds=time.monotonic() - started)


def read_table(client: LakeFSClient, ref: str) -> pa.Table:
    """The Delta table on `ref` (a branch or a commit id) as stored: every column."""
    from deltalake import DeltaTable

    uri = table_uri(client.repository, ref)
    return DeltaTable(uri, storage_options=delta_storage_options(client)).to_pyarrow_table()


def read_comments(client: LakeFSClient, ref: str) -> pa.Table:
    """`comments_raw` on `ref` (a branch or a commit id): `RAW_COLUMNS`, sorted by id."""
    return read_table(client, ref).select(list(RAW_COLUMNS)).sort_by(ID)


def table_exists(client: LakeFSClient, ref: str) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(
        table_uri(client.repository, ref), storage_options=delta_storage_options(client)
    )


@dataclass(frozen=True)
class ApplyResult:
    upserts: int  # changes in the batch after collapsing per id
    deletes: int
    inserted: int  # rows the merge inserted, updated and deleted in the table
    updated: int
    deleted: int
    version: int  # the Delta table version written


_OP = "_dfp_op"


def apply_changes(
    client: LakeFSClient,
    branch: str,
    changes: Iterable[CommentChange],
    *,
    max_comment_bytes: int = DEFAULT_MAX_COMMENT_BYTES,
) -> ApplyResult:
    """Upsert and delete `changes` (in stream order; the last change of an id wins) by id in
    the Delta table on `branch`, in one Delta commit (uncommitted in lakeFS). A change's row
    gets source `cdc:app.comments` and, as ingestion time, the change's own commit time, so
    applying the same batch twice writes the same rows."""
    from deltalake import DeltaTable, write_deltalake

    last = collapse_changes(changes, max_comment_bytes=max_comment_bytes)
    upserts = [c for c in last.values() if c.op == "upsert"]
    deletes = [c for c in last.values() if c.op == "delete"]
    options = delta_storage_options(client)
    uri = table_uri(client.repository, branch)
    rows = pa.table(
        {
            ID: pa.array([c.id for c in last.values()], pa.string()),
            TEXT: pa.array([c.comment_text for c in last.values()], pa.string()),
            LABEL: pa.array([c.labels for c in last.values()], pa.int64()),
            SOURCE: pa.array([CDC_SOURCE] * len(last), pa.string()),
            INGESTED_AT: pa.array(
                [_utc(c.event_time) for c in last.values()], pa.timestamp("us", tz="UTC")
            ),
            _OP: pa.array([c.op for c in last.values()], pa.string()),
        }
    )
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        # No table yet: the upserts are the table (deleting from nothing deletes nothing).
        fresh = rows.filter(pc.equal(rows.column(_OP), "upsert")).drop_columns([_OP])
        write_deltalake(uri, fresh.cast(RAW_SCHEMA), mode="error", storage_options=options)
        version = DeltaTable(uri, storage_options=options).version()
        return ApplyResult(len(upserts), len(deletes), fresh.num_rows, 0, 0, version)
    if not last:
        version = DeltaTable(uri, storage_options=options).version()
        return ApplyResult(0, 0, 0, 0, 0, version)
    table = DeltaTable(uri, storage_options=options)
    values = {c: f"source.{c}" for c in RAW_COLUMNS}
    metrics = (
        table.merge(
            source=rows,
            predicate=f"target.{ID} = source.{ID}",
            source_alias="source",
            target_alias="target",
        )
        .when_matched_delete(predicate=f"source.{_OP} = 'delete'")
        .when_matched_update(updates=values, predicate=f"source.{_OP} = 'upsert'")
        .when_not_matched_insert(updates=values, predicate=f"source.{_OP} = 'upsert'")
        .execute()
    )
    return ApplyResult(
        upserts=len(upserts),
        deletes=len(deletes),
        inserted=int(metrics.get("num_target_rows_inserted", 0)),
        updated=int(metrics.get("num_target_rows_updated", 0)),
        deleted=int(metrics.get("num_target_rows_deleted", 0)),
        version=DeltaTable(uri, storage_options=options).version(),
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

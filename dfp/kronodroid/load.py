"""Load typed Kronodroid tables into lakeFS as parquet with dlt (through lakeFS's S3 gateway).

Layout on the branch: `raw/kronodroid/<release>/<load id>.<file id>.parquet`, plus dlt's own
`_dlt_*` bookkeeping tables beside them. Column names are kept exactly as the source spells
them (dlt's `direct` naming; its default would snake_case `Malware` → `malware`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dfp.kronodroid.schema import Release
from dfp.lake.lakefs_client import LakeFSClient

if TYPE_CHECKING:
    from dlt.common.schema import Schema


RAW_PREFIX = "raw"
DATASET = "kronodroid"
#: Every raw object of the dataset on a branch (all releases, dlt's files included).
RAW_OBJECTS_PREFIX = f"{RAW_PREFIX}/{DATASET}/"


def release_prefix(release: Release) -> str:
    """Where a release's parquet files live on a branch."""
    return f"{RAW_PREFIX}/{DATASET}/{release}/"


@dataclass(frozen=True)
class LoadResult:
    load_id: str
    rows: dict[str, int]
    files: list[str]


def _raw_schema() -> Schema:
    from dlt.common.schema import Schema

    return Schema("kronodroid_raw", normalizers={"names": "direct"})


def load_to_lakefs(
    tables: dict[Release, pa.Table],
    *,
    repository: str,
    branch: str,
    credentials: dict[str, Any],
    pipelines_dir: Path | None = None,
) -> LoadResult:
    """Replace each release's files on `branch` with `tables` (one dlt load, uncommitted).

    `credentials` are dlt AwsCredentials fields (key, secret, endpoint_url, ...).
    """
    import dlt

    if not tables:
        raise ValueError("nothing to load: no release tables")

    def release_resource(release: Release, table: pa.Table):
        @dlt.resource(name=str(release), write_disposition="replace", file_format="parquet")
        def _resource():
            # Yield in slices so dlt's extract buffers stay bounded on full-size data.
            for batch in table.to_batches(max_chunksize=20_000):
                yield pa.Table.from_batches([batch])

        return _resource

    with tempfile.TemporaryDirectory(prefix="dfp-dlt-", dir=pipelines_dir) as work:
        pipeline = dlt.pipeline(
            pipeline_name=f"kronodroid_raw_{branch}",
            pipelines_dir=work,
            destination=dlt.destinations.filesystem(
                bucket_url=f"s3://{repository}/{branch}/{RAW_PREFIX}",
                credentials=credentials,
                # Table names are fixed release names, so the layout's '/' is unambiguous.
                warn_unsafe_layout_separators=False,
            ),
            dataset_name=DATASET,
        )
        info = pipeline.run(
            [release_resource(r, t) for r, t in tables.items()],
            schema=_raw_schema(),
            loader_file_format="parquet",
        )
        info.raise_on_failed_jobs()
        files = [
            job.job_file_info.file_name()
            for package in info.load_packages
            for job in package.jobs["completed_jobs"]
        ]
        load_id = info.loads_ids[0]
    return LoadResult(
        load_id=load_id,
        rows={str(r): t.num_rows for r, t in tables.items()},
        files=files,
    )


def read_releases(client: LakeFSClient, ref: str) -> dict[Release, pa.Table]:
    """The raw releases present on `ref`, read back through the S3 gateway (dlt's own
    bookkeeping columns dropped)."""
    import pyarrow.parquet as pq
    import s3fs

    fs = s3fs.S3FileSystem(**client.s3fs_storage_options())
    found: dict[Release, pa.Table] = {}
    for release in Release:
        paths = [
            o.path
            for o in client.list_objects(ref, release_prefix(release))
            if o.path.endswith(".parquet")
        ]
        if not paths:
            continue
        table = pa.concat_tables(
            [pq.read_table(f"{client.repository}/{ref}/{p}", filesystem=fs) for p in paths],
            promote_options="default",
        )
        found[release] = table.drop_columns(
            [c for c in table.column_names if c.startswith("_dlt_")]
        )
    return found

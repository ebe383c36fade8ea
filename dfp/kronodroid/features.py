"""The Feast layer: Kronodroid features per lakeFS branch, as pure logic (no Dagster).

Layout (see `feature_repo/README.md`):

* The mart `marts.mart_app_features` has one row per (app, capture) and 476 integer feature
  columns. `mart_to_feast_table` turns it into Feast's offline table: the keys `sha256` and
  `capture`, `event_timestamp`, `created_timestamp`, `label` and ONE `list<float32>` column per
  feature group (`FEATURE_GROUPS`): three vectors instead of 476 scalar features, because
  Feast's online stores pay per field (measured: 617 s vs ~40 s to materialize into Redis).
* `export_offline` writes that table as parquet to `s3://<repo>/<branch>/feast/
  app_features.parquet` on the branch (the caller commits). It is read back through lakeFS's
  S3 gateway with the credentials of the source's `ConnectionRef` (resolved in-process,
  `offline_source`): by pyarrow + s3fs for `materialize`, `read_offline` and `stage_offline`,
  and by Feast's offline store for `historical_features`: the DuckDB store (default) joins a
  staged local copy of the branch's object, the file (Dask) store reads it in place (see
  `historical_features` for why, and `OfflineEngine`).
* `feature_store` builds a `feast.FeatureStore` in code for one branch: its own Feast project
  (`branch_project`), its own registry file and its own online keys (a SQLite file per branch,
  or Redis keys, which Feast prefixes per project).

Conventions (documented here once, relied upon by training and serving):

* vectors are float32 in `FEATURE_GROUPS` order; a missing (null) value becomes 0. Counts
  above 2**24 (file sizes) are rounded to the nearest float32, as the model sees them;
* `event_timestamp` is midnight UTC of `event_date`; apps without a date get
  `NULL_EVENT_TIMESTAMP` (1970-01-01T00:00:00Z), older than any real date, so a point-in-time
  join at any later time finds them and a full materialization window starts there;
* `created_timestamp` is when the table was built (one value per export): it only breaks ties
  between rows of equal `event_timestamp`;
* `label` travels in the offline table (for building training sets) but is not a feature.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import re
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from dfp.kronodroid.columns import PERMISSION_COLUMNS, SYSCALL_COLUMNS
from dfp.kronodroid.schema import PERMISSION_TOTAL_COLUMNS, Release, sql_feature_columns, sql_name
from dfp.settings import PROJECT_ROOT, LakeFSSettings, load_settings

if TYPE_CHECKING:
    from feast import FeatureStore, FileSource

    from dfp.lake.lakefs_client import LakeFSClient

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


# -- feature groups -------------------------------------------------------------------------
_SYSCALLS = (*SYSCALL_COLUMNS, "nr_syscalls")
_PERMISSIONS = (*(sql_name(c) for c in PERMISSION_COLUMNS), *PERMISSION_TOTAL_COLUMNS)

#: Feature group -> its columns (mart names), each in `sql_feature_columns()` order. One
#: `Array(Float32)` Feast field per group; the model's input is their concatenation.
#: syscalls: 288 syscall counts + nr_syscalls (289); permissions: 166 flags (SQL names, e.g.
#: REBOOT_permission) + the 7 permission totals (173); static_metadata: the other 14 (file
#: sizes, submissions, component and intent-filter counts).
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "syscalls": _SYSCALLS,
    "permissions": _PERMISSIONS,
    "static_metadata": tuple(
        c for c in sql_feature_columns() if c not in set(_SYSCALLS) | set(_PERMISSIONS)
    ),
}


def model_feature_order() -> tuple[str, ...]:
    """The model's input columns: the groups' columns concatenated, in `FEATURE_GROUPS` order."""
    return tuple(c for columns in FEATURE_GROUPS.values() for c in columns)


# -- the offline table ----------------------------------------------------------------------
MART_KEY_COLUMNS = ("sha256", "capture", "event_date", "label")
#: Event time of apps without an `event_date`: older than every real date (see module doc).
NULL_EVENT_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
#: The start of a window that materializes every row.
EARLIEST_EVENT = NULL_EVENT_TIMESTAMP
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
VECTOR_TYPE = pa.list_(pa.float32())
FEAST_SCHEMA = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("capture", pa.string(), nullable=False),
        pa.field("event_timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("created_timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("label", pa.int64()),
        *(pa.field(group, VECTOR_TYPE, nullable=False) for group in FEATURE_GROUPS),
    ]
)
CAPTURES = frozenset(str(r) for r in Release)


class FeatureDataError(ValueError):
    """The mart (or an entity frame) does not have the shape the Feast layer needs."""


def _check_mart(mart: pa.Table) -> None:
    present = set(mart.column_names)
    missing = [c for c in (*MART_KEY_COLUMNS, *sql_feature_columns()) if c not in present]
    if missing:
        more = f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""
        raise FeatureDataError(f"mart_app_features lacks column(s) {missing[:10]}{more}")
    for key in ("sha256", "capture"):
        if mart.column(key).null_count:
            raise FeatureDataError(f"mart column '{key}' has {mart.column(key).null_count} nulls")
    unknown = set(pc.unique(mart.column("capture")).to_pylist()) - CAPTURES
    if unknown:
        raise FeatureDataError(f"mart column 'capture' has unknown values {sorted(unknown)}")
    for column in sql_feature_columns():
        kind = mart.schema.field(column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise FeatureDataError(f"mart feature column '{column}' is {kind}, not numeric")
    keys = mart.select(["sha256", "capture"]).group_by(["sha256", "capture"]).aggregate([])
    if keys.num_rows != mart.num_rows:
        raise FeatureDataError(
            f"mart has {mart.num_rows - keys.num_rows} duplicate (sha256, capture) rows"
        )


def _event_timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type) and column.type.tz is None:
        column = pc.assume_timezone(column, "UTC")
    stamps = pc.cast(column, TIMESTAMP_TYPE)
    return pc.fill_null(stamps, pa.scalar(NULL_EVENT_TIMESTAMP, TIMESTAMP_TYPE))


def _vectors(mart: pa.Table, columns: tuple[str, ...]) -> pa.ListArray:
    """(n, k) float32 values of `columns`, nulls as 0, as a list<float32> array."""
    import numpy as np

    n, k = mart.num_rows, len(columns)
    by_column = np.empty((k, n), dtype=np.float32)
    for j, name in enumerate(columns):
        values = mart.column(name)
        if values.null_count:
            values = pc.fill_null(values, 0)
        by_column[j] = values.to_numpy()
    flat = pa.array(np.ascontiguousarray(by_column.T).reshape(-1), pa.float32())
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32), pa.int32())
    return pa.ListArray.from_arrays(offsets, flat, type=VECTOR_TYPE)


def mart_to_feast_table(mart: pa.Table, *, created_at: datetime | None = None) -> pa.Table:
    """Feast's offline table (`FEAST_SCHEMA`) from `marts.mart_app_features`.

    Vectorised with numpy: the full 142k-row mart takes about a second. Raises
    `FeatureDataError` naming the problem (missing columns, null keys, duplicates, ...).
    """
    import numpy as np

    _check_mart(mart)
    created_at = created_at or datetime.now(UTC)
    if created_at.tzinfo is None:
        raise FeatureDataError("created_at must be timezone-aware")
    mart = mart.combine_chunks()
    n = mart.num_rows
    created = pa.array(
        np.full(n, np.datetime64(created_at.astimezone(UTC).replace(tzinfo=None), "us")),
        TIMESTAMP_TYPE,
    )
    arrays = [
        mart.column("sha256").cast(pa.string()),
        mart.column("capture").cast(pa.string()),
        _event_timestamps(mart.column("event_date")),
        created,
        mart.column("label").cast(pa.int64()),
        *(_vectors(mart, columns) for columns in FEATURE_GROUPS.values()),
    ]
    return pa.Table.from_arrays(arrays, schema=FEAST_SCHEMA)


def feature_matrix(features: Mapping[str, Sequence[Any]]) -> np.ndarray:
    """The (n, 476) float32 model input from group vectors (an `online_features` answer or
    a `historical_features` frame), in `model_feature_order()`."""
    import numpy as np

    blocks = []
    for group, columns in FEATURE_GROUPS.items():
        rows = list(features[group])
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            raise FeatureDataError(f"no '{group}' features for row(s) {missing[:10]}")
        block = np.asarray([np.asarray(row, dtype=np.float32) for row in rows], np.float32)
        if block.shape[1:] != (len(columns),):
            raise FeatureDataError(f"'{group}' vectors have shape {block.shape[1:]}")
        blocks.append(block.reshape(len(rows), len(columns)))
    return np.concatenate(blocks, axis=1)


# -- where the offline table lives ----------------------------------------------------------
OFFLINE_OBJECT = "feast/app_features.parquet"
#: `offline_digest` of the table in OFFLINE_OBJECT (what the training set is made from).
OFFLINE_DIGEST_OBJECT = "feast/app_features.digest"


def offline_uri(repository: str, branch: str) -> str:
    """`s3://<repo>/<branch>/feast/app_features.parquet`: the branch's offline table."""
    return f"s3://{repository}/{branch}/{OFFLINE_OBJECT}"


def offline_digest(table: pa.Table) -> str:
    """A content hash of the offline table that ignores row order and `created_timestamp`
    (the snapshot's time): the same mart rebuilt by dbt gets the same digest."""
    body = (
        table.cast(FEAST_SCHEMA)
        .drop_columns(["created_timestamp"])
        .sort_by([("sha256", "ascending"), ("capture", "ascending")])
        .combine_chunks()
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, body.schema) as writer:
        writer.write_table(body, max_chunksize=65536)
    return "sha256:" + hashlib.sha256(sink.getvalue()).hexdigest()


def read_offline_digest(client: LakeFSClient, ref: str) -> str | None:
    """The digest `export_offline` stored beside the offline table on `ref`; None when there
    is none (no table yet, or one exported before digests existed)."""
    from dfp.lake.lakefs_client import LakeFSError

    try:
        return client.read(ref, OFFLINE_DIGEST_OBJECT).decode()
    except LakeFSError:
        return None


def export_offline(
    client: LakeFSClient, branch: str, table: pa.Table, *, io_ref: str | None = None
) -> str:
    """Write the offline table for `branch` (uncommitted: the caller commits `io_ref`).

    As with Iceberg tables, the object is written on `io_ref` (a write-audit-publish run
    branch; defaults to `branch`) and reaches `branch` when that is merged. Returns the URI
    on `branch`, which Feast reads after the merge.
    """
    if table.schema.names != FEAST_SCHEMA.names:
        raise FeatureDataError(
            f"not a Feast table: columns {table.schema.names[:8]}, want {FEAST_SCHEMA.names}"
        )
    sink = pa.BufferOutputStream()
    pq.write_table(table.cast(FEAST_SCHEMA), sink, compression="zstd")
    client.upload(io_ref or branch, OFFLINE_OBJECT, sink.getvalue().to_pybytes())
    client.upload(io_ref or branch, OFFLINE_DIGEST_OBJECT, offline_digest(table).encode())
    return offline_uri(client.repository, branch)


# -- settings -------------------------------------------------------------------------------
class S3Gateway(BaseModel):
    """lakeFS's S3 gateway, as Feast's file offline store (Dask + s3fs) reads it. s3fs sends
    path-style requests to a custom endpoint, which is what the gateway wants (checked with
    `http://127.0.0.1:<port>` and `http://localhost:<port>`)."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    access_key_id: str
    secret_access_key: SecretStr

    @classmethod
    def from_lakefs(cls, lakefs: LakeFSSettings) -> S3Gateway:
        return cls(
            endpoint=lakefs.endpoint,
            access_key_id=lakefs.access_key_id,
            secret_access_key=SecretStr(lakefs.secret_access_key),
        )

    @classmethod
    def from_env(cls) -> S3Gateway:
        """LAKEFS_* from the environment (or the local stack's stack.env)."""
        return cls.from_lakefs(LakeFSSettings.from_env())


class SqliteOnline(BaseModel):
    """Feast's SQLite online store: one database file per Feast project under `directory`."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["sqlite"] = "sqlite"
    directory: Path

    def feast_config(self, project: str) -> dict[str, Any]:
        return {"type": "sqlite", "path": str(self.directory.resolve() / f"{project}.db")}


_REDIS_TOKEN = re.compile(r"^[A-Za-z0-9_.~-]*$")


class RedisOnline(BaseModel):
    """Feast's Redis online store. `url` is `redis://[:password@]host:port[/db]` (`rediss://`
    for TLS), e.g. the local stack's `DFP_REDIS_URL`. Keys carry the Feast project, so
    branches share one Redis without seeing each other's values.

    `skip_dedup` (default True) writes every materialized row. Feast's default reads each
    key's stored event time first and skips rows that are not newer, which would keep stale
    values when a mart is rebuilt with changed features but the same `event_date`; dfp always
    materializes whole snapshots (one row per key), so last write is the right rule.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["redis"] = "redis"
    url: SecretStr
    skip_dedup: bool = True

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: SecretStr) -> SecretStr:
        parts = urllib.parse.urlsplit(url.get_secret_value())
        if parts.scheme not in ("redis", "rediss") or not parts.hostname or not parts.port:
            raise ValueError("want redis://[:password@]host:port[/db]")
        for piece in (parts.username or "", parts.password or "", parts.path.strip("/")):
            if not _REDIS_TOKEN.match(urllib.parse.unquote(piece)):
                raise ValueError("user, password and db may hold only letters, digits, _.~-")
        return url

    @classmethod
    def from_env(cls) -> RedisOnline:
        """DFP_REDIS_URL from the environment (or, in local mode, the stack's stack.env)."""
        url = load_settings().dfp_redis_url
        if not url or not url.get_secret_value():
            raise RuntimeError(
                "DFP_REDIS_URL is unset: run the local stack with DFP_STACK_SERVICES=lakefs,redis "
                "(`dfp stack up`) or set it in the environment"
            )
        return cls(url=url)

    def server(self) -> str:
        """`host:port` of `url`, for messages (no user or password)."""
        parts = urllib.parse.urlsplit(self.url.get_secret_value())
        return f"{parts.hostname}:{parts.port}"

    def connection_string(self) -> str:
        """Feast's `host:port,password=...,db=...` form of `url`."""
        parts = urllib.parse.urlsplit(self.url.get_secret_value())
        out = [f"{parts.hostname}:{parts.port}"]
        if parts.username:
            out.append(f"username={urllib.parse.unquote(parts.username)}")
        if parts.password:
            out.append(f"password={urllib.parse.unquote(parts.password)}")
        if parts.path.strip("/"):
            out.append(f"db={int(parts.path.strip('/'))}")
        if parts.scheme == "rediss":
            out.append("ssl=true")
        return ",".join(out)

    def feast_config(self, project: str) -> dict[str, Any]:
        return {
            "type": "redis",
            "connection_string": self.connection_string(),
            "skip_dedup": self.skip_dedup,
        }


OnlineStoreSettings = Annotated[SqliteOnline | RedisOnline, Field(discriminator="kind")]


# -- projects, sources, stores --------------------------------------------------------------
def branch_project(repository: str, branch: str) -> str:
    """A Feast project name unique per (repository, branch): readable parts plus a hash of
    the exact names, so `exp-1` and `exp_1` (or `exp.1`) never share a project."""

    def part(name: str) -> str:
        return (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "x")[:24]

    digest = hashlib.sha256(f"{repository}\0{branch}".encode()).hexdigest()[:10]
    return f"dfp_{part(repository)}__{part(branch)}_{digest}"


_CREDENTIAL_PROVIDER = "dfp-lakefs-s3"
_GATEWAYS: dict[str, S3Gateway] = {}


def _register_gateway(gateway: S3Gateway) -> None:
    """Make `gateway`'s credentials resolvable by Feast in this process.

    Feast's file offline store asks the source's `ConnectionRef` for credentials
    (`DataSource.resolve_credentials`) and hands them to s3fs/Dask. The ref stored in the
    registry names only this provider and the endpoint; the secret stays in this process
    (it comes from the environment / stack.env) and never enters the registry or os.environ.
    """
    from feast.credentials import (
        ConnectionRef,
        CredentialProvider,
        CredentialResolutionError,
        register_credential_provider,
    )

    class LakeFSGatewayCredentials(CredentialProvider):
        def provider_type(self) -> str:
            return _CREDENTIAL_PROVIDER

        def resolve(self, ref: ConnectionRef) -> dict[str, str]:
            found = _GATEWAYS.get(ref.name)
            if found is None:
                raise CredentialResolutionError(
                    f"no lakeFS S3 credentials for {ref.name} in this process: build the store "
                    "with dfp.kronodroid.features.feature_store(...)"
                )
            return {
                "AWS_ACCESS_KEY_ID": found.access_key_id,
                "AWS_SECRET_ACCESS_KEY": found.secret_access_key.get_secret_value(),
            }

    _GATEWAYS[gateway.endpoint] = gateway
    register_credential_provider(LakeFSGatewayCredentials())


def offline_source(path: str, s3: S3Gateway | None = None) -> FileSource:
    """Feast's FileSource for an offline table: `s3://<repo>/<ref>/...` through lakeFS's S3
    gateway (credentials from `s3`, else LAKEFS_* of the environment), or a local path."""
    from feast import FileSource
    from feast.credentials import ConnectionRef

    options: dict[str, Any] = {}
    if path.startswith("s3://"):
        s3 = s3 or S3Gateway.from_env()
        _register_gateway(s3)
        options = {
            "s3_endpoint_override": s3.endpoint,
            "connection_ref": ConnectionRef(provider=_CREDENTIAL_PROVIDER, name=s3.endpoint),
        }
    elif "://" not in path:
        path = str(Path(path).resolve())
    return FileSource(
        name="app_features",
        path=path,
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description="dfp's Feast table of marts.mart_app_features (dfp.kronodroid.features)",
        **options,
    )


@functools.cache
def _feature_store_class() -> type[FeatureStore]:
    from feast import FeatureStore

    class BranchFeatureStore(FeatureStore):
        """A `feast.FeatureStore` for one lakeFS branch, knowing its offline source."""

        def __init__(self, config: Any, *, branch: str, repository: str, source: Any):
            super().__init__(config=config)
            self.dfp_branch = branch
            self.dfp_repository = repository
            self.dfp_source = source

    return BranchFeatureStore


#: Feast's offline store for the point-in-time join (`DFP_FEAST_OFFLINE`): "duckdb" (Feast's
#: DuckDB store, default) or "file" (Feast's file/Dask store, kept for comparison).
OfflineEngine = Literal["duckdb", "file"]


def feature_store(
    branch: str,
    *,
    repository: str,
    online: SqliteOnline | RedisOnline,
    registry_dir: Path,
    offline_path: str | None = None,
    s3: S3Gateway | None = None,
    offline_engine: OfflineEngine = "duckdb",
    registry_cache_ttl_s: int = 60,
    online_write_batch_size: int | None = 10_000,
    project: str | None = None,
) -> FeatureStore:
    """A Feast store for `branch` of lakeFS `repository`, configured in code.

    - project `project`, by default `branch_project(repository, branch)` (a run writes a
      project of its own, see `dfp.kronodroid.online_publish`); registry file
      `<registry_dir>/<project>.db` (one per project);
    - offline: Feast's `offline_engine` store ("duckdb" or "file", see `historical_features`)
      over `offline_path`, by default the branch's exported table
      `offline_uri(repository, branch)` on lakeFS;
    - online: `online` (a SQLite file per branch, or Redis keys prefixed by the project),
      written `online_write_batch_size` rows at a time by `materialize` (bounds its memory).
    """
    from feast.repo_config import RepoConfig

    project = project or branch_project(repository, branch)
    source = offline_source(offline_path or offline_uri(repository, branch), s3)
    registry_dir = registry_dir.resolve()
    registry_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(online, SqliteOnline):
        online.directory.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project=project,
        provider="local",
        registry={
            "registry_type": "file",
            "path": str(registry_dir / f"{project}.db"),
            "cache_ttl_seconds": registry_cache_ttl_s,
        },
        offline_store={"type": offline_engine},
        online_store=online.feast_config(project),
        entity_key_serialization_version=3,
        materialization={"online_write_batch_size": online_write_batch_size},
        repo_path=registry_dir,
    )
    return _feature_store_class()(config, branch=branch, repository=repository, source=source)


# -- definitions ----------------------------------------------------------------------------
DEFINITIONS_FILE = PROJECT_ROOT / "feature_repo" / "definitions.py"
SERVICE_NAME = "malware_model"


def definitions_module() -> ModuleType:
    """`feature_repo/definitions.py`, loaded by path (like the dbt project, it is part of the
    source tree, not of the installed packages)."""
    name = "dfp_feature_repo_definitions"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DEFINITIONS_FILE)
        assert spec and spec.loader, DEFINITIONS_FILE
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _source_of(store: FeatureStore) -> FileSource:
    source = getattr(store, "dfp_source", None)
    if source is None:
        raise TypeError("not a store built by dfp.kronodroid.features.feature_store()")
    return source


def apply_definitions(store: FeatureStore) -> Any:
    """Register the entities, views and service of `feature_repo/definitions.py` (on the
    store's branch source) and remove any view or service no longer defined there. Returns
    the `FeastDefinitions` applied."""
    definitions = definitions_module().build_definitions(_source_of(store))
    views = {v.name for v in definitions.feature_views}
    stale = [v for v in store.list_feature_views() if v.name not in views]
    stale += [
        s for s in store.list_feature_services() if s.name != definitions.feature_service.name
    ]
    store.apply(definitions.objects(), objects_to_delete=stale, partial=False)
    return definitions


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {moment}")
    return moment


def read_offline(store: FeatureStore, columns: Sequence[str] | None = None) -> pa.Table:
    """The store's offline table, read with pyarrow from its source (the branch's object
    through lakeFS's S3 gateway, with the source's credentials; or a local file)."""
    source = _source_of(store)
    path = source.path
    if not path.startswith("s3://"):
        return pq.read_table(path, columns=list(columns) if columns else None)
    return pq.read_table(
        path.removeprefix("s3://"),
        filesystem=_gateway_filesystem(source),
        columns=list(columns) if columns else None,
    )


def _gateway_filesystem(source: FileSource) -> Any:
    """s3fs on lakeFS's S3 gateway with the source's credentials."""
    import s3fs

    from dfp.lake.lakefs_client import s3fs_storage_options

    creds = source.resolve_credentials() or {}
    return s3fs.S3FileSystem(
        **s3fs_storage_options(
            source.s3_endpoint_override,
            creds.get("AWS_ACCESS_KEY_ID"),
            creds.get("AWS_SECRET_ACCESS_KEY"),
        ),
        skip_instance_cache=True,  # a branch's table changes with every run: no stale cache
        use_listings_cache=False,
    )


def offline_engine(store: FeatureStore) -> str:
    """The store's Feast offline store type: "duckdb" or "file"."""
    return store.config.offline_store.type


def _needs_staging(store: FeatureStore) -> bool:
    return offline_engine(store) == "duckdb" and _source_of(store).path.startswith("s3://")


def stage_offline(store: FeatureStore, directory: Path) -> Path:
    """A local copy of the store's offline table in `directory` (the object's bytes, read
    once through lakeFS's S3 gateway); a local source is returned as it is."""
    source = _source_of(store)
    if not source.path.startswith("s3://"):
        return Path(source.path)
    local = directory / Path(source.path).name
    _gateway_filesystem(source).get_file(source.path.removeprefix("s3://"), str(local))
    return local


@contextmanager
def joinable_store(store: FeatureStore) -> Iterator[FeatureStore]:
    """A store whose offline engine can read its source: `store` itself, or (DuckDB engine,
    source on lakeFS) a throwaway store of the same branch and definitions over a staged
    local copy of the branch's table (see `historical_features` for why)."""
    if not _needs_staging(store):
        yield store
        return
    with tempfile.TemporaryDirectory(prefix="dfp-feast-join-") as scratch:
        local = feature_store(
            store.dfp_branch,
            repository=store.dfp_repository,
            online=SqliteOnline(directory=Path(scratch) / "online"),
            registry_dir=Path(scratch) / "registry",
            offline_path=str(stage_offline(store, Path(scratch))),
            offline_engine="duckdb",
        )
        apply_definitions(local)
        yield local


def _latest_per_key(table: pa.Table) -> pa.Table:
    """One row per (sha256, capture): the one with the latest (event_timestamp,
    created_timestamp), as Feast's materialization picks it. A table without duplicate keys
    (every export of the mart) is returned as is, uncopied."""
    import numpy as np

    keys = table.select(list(ENTITY_KEYS)).group_by(list(ENTITY_KEYS)).aggregate([])
    if keys.num_rows == table.num_rows:
        return table
    ordered = table.sort_by(
        [(c, "ascending") for c in (*ENTITY_KEYS, "event_timestamp", "created_timestamp")]
    )
    if ordered.num_rows < 2:
        return ordered
    keys = [ordered.column(k).to_numpy(zero_copy_only=False) for k in ENTITY_KEYS]
    last = np.ones(ordered.num_rows, dtype=bool)
    last[:-1] = np.logical_or.reduce([k[1:] != k[:-1] for k in keys])
    return ordered.filter(pa.array(last))


def materialize(
    store: FeatureStore,
    start: datetime,
    end: datetime,
    *,
    engine: Literal["arrow", "feast"] = "arrow",
    batch_rows: int = 10_000,
) -> int | None:
    """Load rows with `start <= event_timestamp <= end` (latest per key) into the online store
    for every view, record the interval in Feast's registry, and return the rows written
    per view (None with engine "feast", which does not say).
    `start=EARLIEST_EVENT` includes apps without a date.

    engine "arrow" (default) reads the offline table with pyarrow and writes `batch_rows` at
    a time through the store's own Feast online store class (`OnlineStore.online_write_batch`
    of Feast's SQLite or Redis store, so `get_online_features` reads what it wrote), then
    records the interval (`registry.apply_materialization`), which is what `feast
    materialize` does. The rows are built vectorised (`_online_rows`) instead of through
    `FeatureStore.write_to_online_store`, whose per-value proto conversion was half the
    time. engine "feast" calls `FeatureStore.materialize`, whose file (Dask)
    offline store tokenises the list columns by pickling them several times per view: at
    Kronodroid size (142k entities, 3 views) it took ~170 s instead of ~40 s (see
    benchmarks/feast_online.py). Both write the same values.
    """
    _aware(start, "start")
    _aware(end, "end")
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    if engine == "feast":
        if _needs_staging(store):
            raise ValueError(
                "materialize(engine='feast') of a table on lakeFS needs offline_engine='file' "
                "(Feast's DuckDB store cannot read it there, see historical_features); "
                "engine 'arrow' reads any store"
            )
        store.materialize(start_date=start, end_date=end)
        return None  # Feast does not report a count
    views = store.list_feature_views()
    groups = [f.name for view in views for f in view.features]
    table = read_offline(store, [*ENTITY_KEYS, "event_timestamp", "created_timestamp", *groups])
    stamps = table.column("event_timestamp")
    in_window = pc.and_(
        pc.greater_equal(stamps, pa.scalar(start, TIMESTAMP_TYPE)),
        pc.less_equal(stamps, pa.scalar(end, TIMESTAMP_TYPE)),
    )
    if not pc.all(in_window).as_py():
        table = table.filter(in_window)
    table = _in_key_order(_latest_per_key(table))
    from feast.infra.online_stores.helpers import get_online_store_from_config

    online_store = get_online_store_from_config(store.config.online_store)
    for batch in table.to_batches(max_chunksize=batch_rows):
        keys, stamps, created = _online_keys(batch)
        for view in views:
            rows = zip(keys, _online_values(batch, view), stamps, created, strict=True)
            online_store.online_write_batch(store.config, view, list(rows), None)
    for view in views:
        store.registry.apply_materialization(view, store.project, start, end, commit=True)
    return table.num_rows


def _in_key_order(table: pa.Table) -> pa.Table:
    """`table` sorted by the entity key (uncopied when it already is). SQLite's upserts into
    a fresh table's (entity_key, feature) index in key order took half the seconds of the
    same rows in the mart's order (measured: 3.2 vs 7.2 s for 142k keys x 3 views)."""
    import numpy as np

    if table.num_rows < 2:
        return table
    order = pc.sort_indices(table, [(k, "ascending") for k in ENTITY_KEYS]).to_numpy()
    if (np.diff(order) > 0).all():
        return table
    return table.take(order)


def _online_keys(batch: pa.RecordBatch) -> tuple[list[Any], list[datetime], list[datetime]]:
    """Feast entity keys (one proto per row, shared by every view) and timestamps, naive UTC
    (what Feast's SQLite store converts each one to, and Redis's reads as UTC)."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    columns = [batch.column(k).to_pylist() for k in ENTITY_KEYS]
    keys = [
        EntityKey(join_keys=ENTITY_KEYS, entity_values=[Value(string_val=v) for v in values])
        for values in zip(*columns, strict=True)
    ]

    def naive(column: str) -> list[datetime]:
        values = batch.column(column)
        return values.cast(pa.timestamp(values.type.unit)).to_pylist()

    return keys, naive("event_timestamp"), naive("created_timestamp")


#: Field number of `float_list_val` in feast.types.Value, as its wire-format tag bytes.
_FLOAT_LIST_TAG = b"\x82\x01"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _online_values(batch: pa.RecordBatch, view: Any) -> list[dict[str, Any]]:
    """Each row's `{feature: ValueProto}` for `view`: a fixed-length float32 vector's
    protobuf bytes are the same prefix plus its little-endian floats, so they are built for
    the whole batch with numpy and parsed once per row (upb), instead of converting each
    value through Python floats."""
    import numpy as np
    from feast.protos.feast.types.Value_pb2 import Value

    out: list[dict[str, Any]] = [{} for _ in range(batch.num_rows)]
    for feature in view.features:
        vectors = batch.column(feature.name)
        if vectors.null_count:
            raise FeatureDataError(f"'{feature.name}' has {vectors.null_count} null vectors")
        n, k = len(vectors), len(FEATURE_GROUPS[feature.name])
        lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
        if n and not (lengths == k).all():
            raise FeatureDataError(f"'{feature.name}' vectors are not all {k} long")
        floats = vectors.flatten().to_numpy().astype("<f4", copy=False).reshape(n, k)
        packed = b"\x0a" + _varint(4 * k)  # FloatList.val, packed
        prefix = _FLOAT_LIST_TAG + _varint(len(packed) + 4 * k) + packed
        rows = np.empty((n, len(prefix) + 4 * k), dtype=np.uint8)
        rows[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        rows[:, len(prefix) :] = floats.view(np.uint8).reshape(n, 4 * k)
        for row, value in zip(out, rows, strict=True):
            row[feature.name] = Value.FromString(value.tobytes())
    return out


ENTITY_KEYS = ("sha256", "capture")


def online_features(store: FeatureStore, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The service's vectors for entity rows `{"sha256": ..., "capture": ...}`: a dict of
    columns (the keys, then one list per group; `None` where an entity is unknown)."""
    for i, row in enumerate(rows):
        missing = [k for k in ENTITY_KEYS if k not in row]
        if missing:
            raise FeatureDataError(f"entity row {i} lacks {missing}")
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    views, online_store = _online_reader(store)
    keys = [
        EntityKey(
            join_keys=ENTITY_KEYS,
            entity_values=[Value(string_val=str(row[k])) for k in ENTITY_KEYS],
        )
        for row in rows
    ]
    out: dict[str, list[Any]] = {k: [row[k] for row in rows] for k in ENTITY_KEYS}
    for view in views:
        names = [f.name for f in view.features]
        # A copy: Feast's Redis store appends its `_ts:<view>` column to the list it is given.
        found = online_store.online_read(store.config, view, keys, list(names))
        for name in names:
            # An unset Value is Feast's null (Redis answers an unknown key with one).
            out[name] = [
                list(values[name].float_list_val.val)
                if values and name in values and values[name].HasField("float_list_val")
                else None
                for _, values in found
            ]
    return out


def _online_reader(store: FeatureStore) -> tuple[list[Any], Any]:
    """The service's views and the store's Feast online store, kept on the store while its
    registry is unchanged and for at most the registry's cache TTL (what Feast's own
    `allow_cache` lookups allow): `get_online_features` rebuilds the views from the
    registry's protos on every call, which was most of a single-entity read's ~3 ms."""
    import time

    from feast.infra.online_stores.helpers import get_online_store_from_config

    token = hashlib.sha256(store.registry.proto().SerializeToString(deterministic=True)).digest()
    cached = getattr(store, "_dfp_online_reader", None)
    if cached and cached[0] == token and time.monotonic() < cached[1]:
        return cached[2], cached[3]
    service = store.get_feature_service(SERVICE_NAME, allow_cache=True)
    views = [
        store.get_feature_view(p.name, allow_registry_cache=True)
        for p in service.feature_view_projections
    ]
    if any(v.ttl for v in views):
        raise FeatureDataError("online_features assumes views without TTL (feature_repo ttl=0)")
    online_store = get_online_store_from_config(store.config.online_store)
    ttl = store.config.registry.cache_ttl_seconds or 0
    store._dfp_online_reader = (token, time.monotonic() + ttl, views, online_store)
    return views, online_store


_ROW_ID = "__dfp_row"


def historical_features(store: FeatureStore, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time vectors for `entity_df` (sha256, capture, event_timestamp, any extra
    columns such as label), via the `malware_model` service and Feast's
    `get_historical_features` (so TTL and as-of rules are Feast's): each row gets the latest
    values with `event_timestamp <=` its own, or `None` when there is none.

    Rows come back in `entity_df`'s order, all of them, on both offline engines: Feast
    0.67's file (Dask) store drops an entity row whose only matches are newer than it (its
    left join is followed by a timestamp filter), and neither store promises an order, so
    rows are matched back by position and missing ones restored with `None`.

    Engines (the store's `offline_engine`), measured on the full 142k-row table (2 cores):

    - "duckdb" (default): Feast's DuckDB offline store, seconds. Its reader cannot read the
      branch's object on lakeFS: DuckDB reads `s3://` only with its httpfs extension, which
      DuckDB downloads at run time from its own extension site (not reachable from dfp's
      machines), and the httpfs wheel on PyPI (`duckdb-extension-httpfs`) is built for one
      DuckDB release only (1.5.5; the lock's duckdb 1.5.6 refuses to load it). Feast 0.67's
      reader also passes `storage_options` to DuckDB's `read_parquet`, which rejects it. So
      the join runs against a local copy of the branch's object, staged through lakeFS's S3
      gateway (`joinable_store`; a store whose source is already local is used as is).
    - "file": Feast's file (Dask) store reads the object in place, but pickles the list
      columns to tokenise them: ~130 s for 20k entity rows, ~16 min for all 142k.
    """
    import numpy as np
    import pandas as pd

    missing = [c for c in (*ENTITY_KEYS, "event_timestamp") if c not in entity_df.columns]
    if missing:
        raise FeatureDataError(f"entity_df lacks column(s) {missing}")
    frame = entity_df.reset_index(drop=True).copy()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame[_ROW_ID] = np.arange(len(frame))
    with joinable_store(store) as joinable:
        service = joinable.get_feature_service(SERVICE_NAME, allow_cache=True)
        result = joinable.get_historical_features(entity_df=frame, features=service).to_df()
    groups = [g for g in FEATURE_GROUPS if g in result.columns]
    merged = frame.merge(result[[_ROW_ID, *groups]], on=_ROW_ID, how="left")
    if merged[_ROW_ID].duplicated().any():
        raise FeatureDataError("historical retrieval returned several rows for one entity row")
    for group in groups:
        merged[group] = [v if isinstance(v, np.ndarray | list) else None for v in merged[group]]
    return merged.sort_values(_ROW_ID).drop(columns=_ROW_ID).reset_index(drop=True)


def _without_meta(message: Any) -> Any:
    """A copy of a proto with every nested `meta` (creation/update times) cleared."""
    copy = type(message)()
    copy.CopyFrom(message)
    stack = [copy]
    while stack:
        current = stack.pop()
        for field, value in current.ListFields():
            if field.name == "meta":
                current.ClearField("meta")
            elif field.message_type is not None:
                if field.is_repeated:
                    if not field.message_type.GetOptions().map_entry:
                        stack.extend(value)
                else:
                    stack.append(value)
    return copy


def registry_version(store: FeatureStore) -> str:
    """A stable id of the definitions applied to the store's project, for lineage:
    `sha256:<16 hex>` over the specs (without metadata such as creation times) of its
    entities, data sources, views and services. Materializing or re-applying the same
    definitions does not change it; changing a definition or the branch's source path does."""
    digest = hashlib.sha256()
    kinds = (
        ("entity", store.list_entities()),
        ("data_source", store.list_data_sources()),
        ("feature_view", store.list_feature_views()),
        ("feature_service", store.list_feature_services()),
    )
    for kind, objects in kinds:
        for obj in sorted(objects, key=lambda o: o.name):
            proto = obj.to_proto()
            spec = _without_meta(proto.spec if hasattr(proto, "spec") else proto)
            digest.update(f"{kind}:{obj.name}:".encode())
            digest.update(spec.SerializeToString(deterministic=True))
    return "sha256:" + digest.hexdigest()[:16]

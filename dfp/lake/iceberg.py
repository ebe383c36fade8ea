"""Iceberg tables on lakeFS branches, isolated per branch (pure logic, no Dagster).

Iceberg metadata records absolute file paths, so a table copied to a new branch would keep
reading its parent's files. dfp keeps branches isolated with three rules:

1. Logical paths name the branch a version was written *for*: `s3://<repo>/<branch>/iceberg/
   <schema>/<table>/…` (a write-audit-publish run writes for its target branch). Engines that
   read paths directly (Spark, DuckDB) therefore find published files where they belong.
2. Physical IO goes to the branch being read, or the run branch being written:
   `BranchFileIO` rewrites `s3://<repo>/<any ref>/<path>` to `s3://<repo>/<io ref>/<path>`.
   A branch's reads never touch another branch's objects (zero-copy branching makes the same
   path exist on every branch that has not changed it).
3. lakeFS is the source of truth for which metadata file is current: the pointer object
   `iceberg/<schema>/<table>/dfp-current.json` is written with the data, travels with it
   through merges, and a concurrent change to one table on two branches is a lakeFS merge
   conflict (never a silent fast-forward). The SQL catalog (pyiceberg SqlCatalog, schema shared
   with Iceberg's JdbcCatalog) is a per-branch index: catalog name = the lakeFS repository,
   namespace `(<branch>, <schema>)`, synced from those pointers.

A run indexes only its own run branch, and drops that index when its step ends; publishing is
the lakeFS merge alone, so a partition branch's catalog rows change only when it is read
(`sync`). Every catalog operation rides out a restart of the catalog's database (bounded
retries, `dfp.lake.outages`); a database that stays down fails the operation with
CatalogUnavailable naming the catalog's server and the operation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from dfp.lake import outages
from dfp.lake.lakefs_client import LakeFSClient
from dfp.lake.pg_branches import says_unreachable, server_name

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table


ICEBERG_PREFIX = "iceberg"
POINTER_FILE = "dfp-current.json"
REPOSITORY_PROPERTY = "dfp.lakefs.repository"
IO_REF_PROPERTY = "dfp.lakefs.io-ref"
#: pyiceberg loads the FileIO by name (its own module: subclassing needs pyiceberg loaded).
BRANCH_FILEIO = "dfp.lake.iceberg_io.BranchFileIO"

T = TypeVar("T")


class CatalogUnavailable(outages.ServiceUnavailable):
    """The Iceberg catalog's database could not be reached or went away during an operation,
    and stayed away through the retries; the message names its server (never a password)
    and the operation."""


def catalog_server(uri: str) -> str:
    """The catalog's database for messages: `Iceberg catalog (Postgres at host:port/db)`."""
    if uri.startswith("postgres"):
        return f"Iceberg catalog (Postgres at {server_name(uri)})"
    return f"Iceberg catalog ({uri.split('://', 1)[0]})"


def _catalog_unreachable(exc: BaseException) -> bool:
    """A database error saying the server is not there or dropped the connection (SQLAlchemy
    invalidates the connection then), not one refusing the request."""
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or says_unreachable(str(exc.orig))
    )


def _namespaces(catalog: SqlCatalog, branch: str) -> list[tuple[str, ...]]:
    from pyiceberg.exceptions import NoSuchNamespaceError

    try:
        return catalog.list_namespaces((branch,))
    except NoSuchNamespaceError:
        return []


def _indexed(catalog: SqlCatalog, branch: str) -> dict[tuple[str, str], str | None]:
    """(schema, table) -> metadata location of a branch's catalog rows, read from the rows
    themselves (the metadata file may already be gone from the branch)."""
    from pyiceberg.catalog.sql import IcebergTables
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    with Session(catalog.engine) as session:
        rows = session.execute(
            select(IcebergTables).where(
                IcebergTables.catalog_name == catalog.name,
                IcebergTables.table_namespace.startswith(f"{branch}."),
            )
        ).scalars()
        return {
            (row.table_namespace.split(".", 1)[1], row.table_name): row.metadata_location
            for row in rows
        }


def _column_types(schema: pa.Schema) -> dict[str, str]:
    # Iceberg has one string and one binary type: pyarrow's large_* forms are the same column.
    return {f.name: str(f.type).replace("large_", "") for f in schema}


def adds_columns_or_types(table_schema: pa.Schema, data: pa.Schema) -> bool:
    """Whether writing `data` changes the table's schema (a column it lacks, another type).

    The table's Arrow schema never equals the data's (field-id metadata, large_string), and
    pyiceberg's `union_by_name` walks the schema once per column: for a wide table, seconds
    per write to find nothing to change."""
    current = _column_types(table_schema)
    return any(current.get(name) != kind for name, kind in _column_types(data).items())


def table_prefix(schema: str, table: str) -> str:
    return f"{ICEBERG_PREFIX}/{schema}/{table}"


def pointer_path(schema: str, table: str) -> str:
    return f"{table_prefix(schema, table)}/{POINTER_FILE}"


@dataclass(frozen=True)
class TablePointer:
    schema: str
    table: str
    metadata_location: str
    snapshot_id: int | None


def read_pointers(client: LakeFSClient, ref: str) -> dict[tuple[str, str], TablePointer]:
    """(schema, table) -> current metadata of every table, as recorded on `ref` in lakeFS
    (no catalog needed: the pointers are objects on the branch)."""
    out = {}
    for obj in client.list_objects(ref, f"{ICEBERG_PREFIX}/"):
        if not obj.path.endswith(f"/{POINTER_FILE}"):
            continue
        _, schema, table, _ = obj.path.split("/", 3)
        body = json.loads(client.read(ref, obj.path))
        out[(schema, table)] = TablePointer(
            schema, table, body["metadata_location"], body.get("snapshot_id")
        )
    return out


def describe_tables(client: LakeFSClient, ref: str) -> dict[str, dict[str, Any]]:
    """Per table on `ref`: snapshot id and metadata location (lineage metadata)."""
    return {
        f"{p.schema}.{p.table}": {
            "snapshot_id": p.snapshot_id,
            "metadata_location": p.metadata_location,
        }
        for p in read_pointers(client, ref).values()
    }


class BranchTables:
    """Iceberg tables of one lakeFS repository, one catalog namespace per branch."""

    def __init__(self, client: LakeFSClient, catalog_uri: str, retries: int = outages.RETRIES):
        self.client = client
        self.catalog_uri = catalog_uri
        self.retries = retries
        #: Set once an operation ran out of retries: later ones get one attempt each, so a
        #: build of many models waits out one retry window, not one per model.
        self.found_down = False
        if catalog_uri.startswith("sqlite:///"):
            # A local catalog file: its directory is made on first use, not at import.
            Path(catalog_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    # -- catalogs ---------------------------------------------------------------------------
    def _retrying(self, operation: str, call: Callable[[], T], retries: int | None = None) -> T:
        """`call()`, run again from the start while the catalog's database is unreachable
        (each catalog operation here is idempotent: a sync mirrors the pointers again, a
        write overwrites again); then CatalogUnavailable names the catalog and `operation`."""
        if retries is None:
            retries = 0 if self.found_down else self.retries
        try:
            return outages.with_retries(
                call,
                unreachable=_catalog_unreachable,
                error=CatalogUnavailable,
                server=catalog_server(self.catalog_uri),
                operation=operation,
                retries=retries,
            )
        except CatalogUnavailable:
            self.found_down = True
            raise

    def catalog(self, io_ref: str) -> SqlCatalog:
        """A catalog whose FileIO reads/writes on `io_ref` (one catalog object per ref)."""
        # One catalog name per lakeFS repository: repositories may share a catalog database.
        from pyiceberg.catalog.sql import SqlCatalog

        return SqlCatalog(
            self.client.repository,
            uri=self.catalog_uri,
            **self.client.pyiceberg_properties(),
            **{
                "py-io-impl": BRANCH_FILEIO,
                REPOSITORY_PROPERTY: self.client.repository,
                IO_REF_PROPERTY: io_ref,
            },
        )

    @staticmethod
    def identifier(branch: str, schema: str, table: str) -> tuple[str, str, str]:
        return (branch, schema, table)

    def location(self, branch: str, schema: str, table: str) -> str:
        return self.client.s3_uri(branch, table_prefix(schema, table))

    # -- pointers ---------------------------------------------------------------------------
    def pointers(self, ref: str) -> dict[tuple[str, str], TablePointer]:
        """(schema, table) -> current metadata, as recorded on `ref` in lakeFS."""
        return read_pointers(self.client, ref)

    def _write_pointer(
        self, io_ref: str, schema: str, table: str, iceberg_table: Table
    ) -> TablePointer:
        snapshot = iceberg_table.current_snapshot()
        pointer = TablePointer(
            schema,
            table,
            iceberg_table.metadata_location,
            snapshot.snapshot_id if snapshot else None,
        )
        body = {"metadata_location": pointer.metadata_location, "snapshot_id": pointer.snapshot_id}
        self.client.upload(io_ref, pointer_path(schema, table), json.dumps(body).encode())
        return pointer

    # -- catalog index ----------------------------------------------------------------------
    def sync(self, branch: str) -> dict[str, int]:
        """Make the catalog namespaces of `branch` mirror the pointers on its lakeFS head."""
        return self._retrying(f"sync of the catalog index of {branch}", lambda: self._sync(branch))

    def _sync(self, branch: str) -> dict[str, int]:
        catalog = self.catalog(branch)
        wanted = self.pointers(branch)
        stats = {"registered": 0, "updated": 0, "dropped": 0}
        present = _indexed(catalog, branch)
        for key, pointer in wanted.items():
            ident = self.identifier(branch, *key)
            if present.get(key) == pointer.metadata_location:
                continue
            catalog.create_namespace_if_not_exists((branch, key[0]))
            if key in present:
                catalog.drop_table(ident)  # catalog row only; files are lakeFS's business
                stats["updated"] += 1
            else:
                stats["registered"] += 1
            catalog.register_table(ident, pointer.metadata_location)
        for key in present.keys() - wanted.keys():
            catalog.drop_table(self.identifier(branch, *key))
            stats["dropped"] += 1
        return stats

    def forget(self, branch: str, retries: int | None = None) -> None:
        """Drop the catalog index of a branch (e.g. a deleted run branch)."""
        self._retrying(
            f"forget of the catalog index of {branch}", lambda: self._forget(branch), retries
        )

    def _forget(self, branch: str) -> None:
        catalog = self.catalog(branch)
        for namespace in _namespaces(catalog, branch):
            for ident in catalog.list_tables(namespace):
                catalog.drop_table(ident)
            catalog.drop_namespace(namespace)

    @contextmanager
    def run_index(self, run_branch: str, *, sync: bool = False) -> Iterator[BranchTables]:
        """The catalog index of a run branch for the duration of a step (`sync`: made from
        its pointers first), dropped at the end; lakeFS keeps the pointers. A step that
        failed keeps its own error: its index is dropped with one attempt, and if the catalog
        is down the cleanup sensor drops it later (`indexed_branches`)."""
        try:
            if sync:
                self.sync(run_branch)
            yield self
        except BaseException:
            try:
                self.forget(run_branch, retries=0)
            except CatalogUnavailable:
                pass  # an orphaned index: lakefs_run_branch_cleanup drops it
            raise
        self.forget(run_branch)

    def indexed_branches(self) -> list[str]:
        """The branches that have catalog rows (run branches among them after an outage)."""
        return self._retrying(
            "listing of the branches indexed",
            lambda: sorted({ns[0] for ns in self.catalog("").list_namespaces()}),
        )

    # -- tables -----------------------------------------------------------------------------
    def load(self, branch: str, schema: str, table: str) -> Table:
        """The table as it is on `branch` (reads only that branch's objects)."""

        def synced_load() -> Table:
            self._sync(branch)
            return self._load(branch, schema, table)

        return self._retrying(f"load of {schema}.{table} on {branch}", synced_load)

    def table(self, ref: str, schema: str, table: str) -> Table:
        """The table as the catalog index of `ref` has it (no sync: the caller indexed it,
        e.g. a run branch during its step)."""
        return self._retrying(
            f"load of {schema}.{table} on {ref}", lambda: self._load(ref, schema, table)
        )

    def _load(self, ref: str, schema: str, table: str) -> Table:
        return self.catalog(ref).load_table(self.identifier(ref, schema, table))

    def write(
        self,
        data: pa.Table,
        *,
        schema: str,
        table: str,
        target_branch: str,
        io_ref: str | None = None,
        snapshot_properties: dict[str, str] | None = None,
    ) -> Table:
        """Overwrite `schema.table` with `data` for `target_branch`.

        Files and the pointer are written on `io_ref` (a write-audit-publish run branch made
        from `target_branch`; defaults to the branch itself) and reach the target branch only
        when that branch is merged. Uncommitted: the caller commits `io_ref`.
        """
        io_ref = io_ref or target_branch
        return self._retrying(
            f"write of {schema}.{table} for {target_branch} on {io_ref}",
            lambda: self._write(data, schema, table, target_branch, io_ref, snapshot_properties),
        )

    def _write(
        self,
        data: pa.Table,
        schema: str,
        table: str,
        target_branch: str,
        io_ref: str,
        snapshot_properties: dict[str, str] | None,
    ) -> Table:
        from pyiceberg.exceptions import NoSuchTableError

        self._sync(io_ref)
        catalog = self.catalog(io_ref)
        ident = self.identifier(io_ref, schema, table)
        catalog.create_namespace_if_not_exists((io_ref, schema))
        location = self.location(target_branch, schema, table)
        write_paths = self.write_paths(target_branch, schema, table)
        try:
            iceberg_table = catalog.load_table(ident)
            if adds_columns_or_types(iceberg_table.schema().as_arrow(), data.schema):
                with iceberg_table.update_schema() as update:
                    update.union_by_name(data.schema)
            self._ensure_write_paths(iceberg_table, write_paths)
            iceberg_table = catalog.load_table(ident)
        except NoSuchTableError:
            iceberg_table = catalog.create_table(
                ident, schema=data.schema, location=location, properties=write_paths
            )
        if iceberg_table.current_snapshot() is None:
            iceberg_table.append(data, snapshot_properties=snapshot_properties or {})
        else:
            iceberg_table.overwrite(data, snapshot_properties=snapshot_properties or {})
        self._write_pointer(io_ref, schema, table, iceberg_table)
        return iceberg_table

    def write_paths(self, target_branch: str, schema: str, table: str) -> dict[str, str]:
        """New files go under the target branch's logical paths, whichever branch the table
        was created on (rule 1)."""
        from pyiceberg.table import TableProperties

        location = self.location(target_branch, schema, table)
        return {
            TableProperties.WRITE_DATA_PATH: f"{location}/data",
            TableProperties.WRITE_METADATA_PATH: f"{location}/metadata",
        }

    @staticmethod
    def _ensure_write_paths(iceberg_table: Table, write_paths: dict[str, str]) -> Table:
        if all(iceberg_table.properties.get(k) == v for k, v in write_paths.items()):
            return iceberg_table
        with iceberg_table.transaction() as tx:
            tx.set_properties(**write_paths)
        return iceberg_table.refresh()

    def prepare_writes(self, io_ref: str, target_branch: str) -> list[str]:
        """Index `io_ref`'s tables and point their new files at `target_branch`'s logical
        paths, for engines that write through the catalog themselves (Spark keeps a replaced
        table's properties). Returns the tables as `schema.table`."""
        return self._retrying(
            f"prepare of the tables on {io_ref} for {target_branch}",
            lambda: self._prepare_writes(io_ref, target_branch),
        )

    def _prepare_writes(self, io_ref: str, target_branch: str) -> list[str]:
        self._sync(io_ref)
        catalog = self.catalog(io_ref)
        prepared = []
        # After sync the catalog rows mirror the pointers: no second read from lakeFS.
        for schema, table in sorted(_indexed(catalog, io_ref)):
            iceberg_table = catalog.load_table(self.identifier(io_ref, schema, table))
            self._ensure_write_paths(iceberg_table, self.write_paths(target_branch, schema, table))
            prepared.append(f"{schema}.{table}")
        return prepared

    def refresh_pointer(self, io_ref: str, schema: str, table: str) -> TablePointer:
        """Record the catalog's current metadata of a table in lakeFS after a direct commit
        through `catalog(io_ref)` (a Spark build, maintenance such as snapshot expiry)."""
        iceberg_table = self.table(io_ref, schema, table)
        return self._write_pointer(io_ref, schema, table, iceberg_table)

    def describe(self, branch: str) -> dict[str, dict[str, Any]]:
        """Per table on `branch`: snapshot id and metadata location (lineage metadata)."""
        return describe_tables(self.client, branch)

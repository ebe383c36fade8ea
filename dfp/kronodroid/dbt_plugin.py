"""dbt-duckdb plugin: dbt reads raw Kronodroid from a lakeFS ref and writes its models as
branch-isolated Iceberg tables (`dfp.lake.iceberg.BranchTables`). No Dagster import.

Profile config (`dbt/kronodroid/profiles.yml`): `io_ref` (the branch dbt reads and writes: a
write-audit-publish run branch) and `target_branch` (the branch the tables are written for).
Secrets and the catalog URI come from the environment (LAKEFS_*, DFP_ICEBERG_CATALOG_URI).

Why a plugin: DuckDB's httpfs extension is downloaded at run time from DuckDB's servers, which
a locked-down deployment cannot reach; pyarrow + s3fs talk to lakeFS's S3 gateway directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig, TargetConfig

from dfp.kronodroid.load import read_releases
from dfp.kronodroid.parse import conform, empty_release_table
from dfp.kronodroid.schema import Release, sql_name
from dfp.lake.iceberg import BranchTables
from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import LakeFSSettings, load_settings

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection


def catalog_uri() -> str:
    # The Dagster asset passes the run's catalog to this dbt build as the variable; a fresh
    # read: the build may run in a process whose settings were read before it was set.
    uri = load_settings().dfp_iceberg_catalog_uri
    if not uri:
        raise RuntimeError("DFP_ICEBERG_CATALOG_URI is not set (the Iceberg SQL catalog)")
    return uri


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.io_ref = plugin_config["io_ref"]
        self.target_branch = plugin_config.get("target_branch") or self.io_ref
        self.client = LakeFSClient(LakeFSSettings.from_env())
        self.tables = BranchTables(self.client, catalog_uri())
        self.connection: DuckDBPyConnection | None = None

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        # dbt-duckdb calls this for each database it opens; store() counts a model's rows there.
        self.connection = conn

    def load(self, source_config: SourceConfig):
        """Source `releases`: every raw release on `io_ref`, canonical columns (SQL-safe names,
        see `schema.sql_name`), plus `release`."""
        if source_config.identifier != "releases":
            raise ValueError(f"unknown Kronodroid source table {source_config.identifier!r}")
        found = read_releases(self.client, self.io_ref)
        tables = []
        for release in Release:
            table = (
                conform(found[release], release)
                if release in found
                else empty_release_table(release)
            )
            table = table.rename_columns([sql_name(c) for c in table.column_names])
            tables.append(
                table.append_column(
                    "release", pa.array([str(release)] * table.num_rows, pa.string())
                )
            )
        return pa.concat_tables(tables, promote_options="default")

    def store(self, target_config: TargetConfig) -> None:
        """The model's DuckDB table (`lakefs_iceberg` materialization) → Iceberg
        `<schema>.<model>`: exactly the rows dbt's tests query, an empty model as an empty
        table."""
        relation = target_config.relation
        data = self._rows(relation)
        self.tables.write(
            data,
            schema=relation.schema,
            table=relation.identifier,
            target_branch=self.target_branch,
            io_ref=self.io_ref,
            snapshot_properties={"dbt_model": relation.identifier, "lakefs_io_ref": self.io_ref},
        )

    def _rows(self, relation: object) -> pa.Table:
        if self.connection is None:
            raise RuntimeError("the dbt-duckdb connection was never configured for this plugin")
        cursor = self.connection.cursor()
        try:
            return cursor.execute(f"select * from {relation}").to_arrow_table()
        finally:
            cursor.close()

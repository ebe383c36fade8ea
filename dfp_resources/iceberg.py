"""The Iceberg SQL catalog: SQLite embedded, Postgres for real (same schema as JdbcCatalog)."""

import dagster as dg

from dfp.lake.iceberg import BranchTables
from dfp.lake.lakefs_client import LakeFSClient


class IcebergCatalogResource(dg.ConfigurableResource):
    """SQLAlchemy URI of the catalog database (sqlite:///… or postgresql+psycopg2://…)."""

    uri: str

    def tables(self, client: LakeFSClient) -> BranchTables:
        return BranchTables(client, self.uri)

"""dfp's data Postgres: one schema per lakeFS branch and schema family (`dfp.lake.pg_branches`).

Assets never write a branch's schema: `run_schema(context, family)` registers the run's own
schema with write-audit-publish and creates it; the executor swaps it in as the branch's schema
in one transaction around the lakeFS merge (`publisher()`), or drops it when the run does not
publish. Readers use `branch_schema(family, branch)`.
"""

from typing import Any, ClassVar

import dagster as dg

from dfp.lake import pg_branches, wap
from dfp.settings import load_settings

#: The publish-participant system name runs register their schemas under.
SYSTEM = pg_branches.PostgresPublisher.system


class PostgresStagingResource(dg.ConfigurableResource):
    """Per-branch schemas on dfp's data Postgres (DFP_POSTGRES_URL; unset: not configured)."""

    url: str | None = None

    def _url(self) -> str:
        # Unset when the Definitions were loaded (the resource is built at import): the
        # settings as they are now, as the executor's publish reads them at run end.
        url = self.url or load_settings().dfp_postgres_url
        if not url:
            raise dg.Failure(
                "dfp's data Postgres is not configured: set DFP_POSTGRES_URL, or run "
                "`dfp stack up` with postgres in DFP_STACK_SERVICES (local)"
            )
        return url.get_secret_value() if hasattr(url, "get_secret_value") else url

    @property
    def configured(self) -> bool:
        return bool(self.url or load_settings().dfp_postgres_url)

    #: What `discard_orphans` drops, as the run-branch cleanup reports it.
    orphans_name: ClassVar[str] = "run schemas"

    def discard_orphans(self, client: object, live_run_ids: set[str]) -> list[str]:
        """Drop the run schemas of runs no longer in progress (a crashed worker's, or a run
        whose discard found Postgres down); returns their names. Nothing to do (and no
        Postgres to reach) in a deployment without it. `client` (lakeFS) is not needed."""
        if not self.configured:
            return []
        conn = self.connect("cleanup of orphaned run schemas")
        try:
            orphans = pg_branches.orphaned_run_schemas(conn, live_run_ids)
            for schema in orphans:
                pg_branches.discard(conn, schema)
        finally:
            conn.close()
        return orphans

    def dsn(self) -> str:
        """The data Postgres URL, password included: for connections and child processes
        (e.g. dbt's), never for logs or metadata."""
        return self._url()

    def connect(self, operation: str = "connect") -> Any:
        """A psycopg2 connection (the caller closes it); a server that stays down fails,
        after bounded retries, with an error naming it and `operation`."""
        return pg_branches.connect(self._url(), operation)

    def publisher(self) -> pg_branches.PostgresPublisher:
        return pg_branches.PostgresPublisher(self._url())

    def branch_schema(self, family: str, branch: str) -> str:
        return pg_branches.branch_schema(family, branch)

    def read_schema(self, context: Any, family: str) -> str:
        """The schema of `family` a step of this run reads: the run's own when an earlier step
        of the run wrote one (it publishes with the run), else its branch's."""
        branch = _branch(context)
        own = pg_branches.run_schema(family, context.run.run_id)
        conn = self.connect()
        try:
            if pg_branches.schema_exists(conn, own):
                return own
        finally:
            conn.close()
        return pg_branches.branch_schema(family, branch)

    def run_schema(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext, family: str
    ) -> str:
        """The schema this run writes `family` into (created, empty on the first call of the
        run), registered so that it publishes with the run's lakeFS merge."""
        from dfp_assets.platform.wap_executor import register_staged

        branch = _branch(context)
        staged = wap.Staged(
            system=SYSTEM,
            staged=pg_branches.run_schema(family, context.run.run_id),
            target=pg_branches.branch_schema(family, branch),
        )
        # Registered before it exists: a step that dies after creating it is still cleaned up.
        register_staged(context, staged)
        conn = self.connect(f"creating run schema {staged.staged}")
        try:
            pg_branches.create_run_schema(conn, staged.staged)
        finally:
            conn.close()
        return staged.staged


def _branch(context: Any) -> str:
    """The run's partition branch (run tag: asset, op and check contexts alike)."""
    from dfp_assets.platform.wap_executor import PARTITION_TAG

    branch = context.run.tags.get(PARTITION_TAG)
    if branch is None:
        raise dg.Failure(
            "Postgres staging needs a branch-partitioned run under write-audit-publish"
        )
    return branch

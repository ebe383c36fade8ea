"""`table_clean`: dbt/toxic_comments builds the branch's production table from its staging.

dbt (dagster-dbt, through the platform's `dbt_events`) reads `text_comments` from the staging
schema this run wrote (`comments_tokenized` in the same run; else the branch's) and builds
`table_clean` into the run's own `production` schema, which write-audit-publish swaps in as the
branch's (`production__<branch>`) together with the staging schema, in the transaction around
the lakeFS merge. Every dbt test is a blocking check: a failing one publishes nothing, so the
branch's staging and production stay as they were. The connection is DFP_POSTGRES_URL, passed
to dbt's process as the variables its profile reads.
"""

import json
import tempfile
from pathlib import Path

import dagster as dg

from dfp.toxic.dbt_build import PROJECT_DIR, build_on_prepared_manifest, dbt_vars, postgres_env
from dfp.warm_imports import run_warm
from dfp_assets.platform.dbt_plan import dbt_events, dbt_multi_asset
from dfp_assets.platform.partitions import lakefs_branch_partitions
from dfp_assets.toxic.dbt_project import MANIFEST_PATH, asset_plan
from dfp_assets.toxic.staging import STAGING_FAMILY, STAGING_TABLE
from dfp_resources.postgres_staging import PostgresStagingResource

PRODUCTION_FAMILY = "production"

# The specs dagster-dbt derives from the manifest (`dfp dbt prepare`); loading runs no dbt.
_PLAN = asset_plan(lakefs_branch_partitions)


# dbt runs through its Python API on the prepared manifest (no dbt process, no parse), in the
# run's warm worker that imported it while the first steps ran: a CDC batch's build is a
# second of SQL, which a dbt process start and its parse made 12-15 s.
@dbt_multi_asset(
    "toxic_dbt",
    _PLAN,
    warm_imports=("dbt.cli.main", "dbt.adapters.postgres", "dfp.toxic.dbt_build"),
)
def toxic_dbt(context: dg.AssetExecutionContext, postgres_staging: PostgresStagingResource):
    from dfp_assets.platform.dbt_cli import InProcessDbtCli  # dagster-dbt: only in this step
    from dfp_assets.toxic.dbt_project import translator

    staging = postgres_staging.read_schema(context, STAGING_FAMILY)
    production = postgres_staging.run_schema(context, PRODUCTION_FAMILY)
    published_as = postgres_staging.branch_schema(PRODUCTION_FAMILY, context.partition_key)
    context.log.info(f"dbt: {staging}.{STAGING_TABLE} → {production} (publishes as {published_as})")
    manifest = json.loads(MANIFEST_PATH.read_text())
    variables = dbt_vars(staging, production, STAGING_TABLE)
    connection = postgres_env(postgres_staging.dsn())

    def build(args: list[str]):
        return run_warm(build_on_prepared_manifest, args, variables, connection)

    with tempfile.TemporaryDirectory(prefix="dfp-toxic-dbt-") as root:
        events = dbt_events(
            context,
            InProcessDbtCli(PROJECT_DIR, build).cli,
            ["build", "--vars", json.dumps(variables)],
            manifest=manifest,
            translator=translator(),
            env=connection,
            # Per-run artifacts live and die with the run (not under dbt/toxic_comments/target).
            target_path=Path(root) / "target",
        )
        for event in events:
            if isinstance(event, dg.MaterializeResult):
                table = event.asset_key.path[-1]
                event = dg.MaterializeResult(
                    asset_key=event.asset_key,
                    metadata={
                        **(event.metadata or {}),
                        **_table_metadata(postgres_staging, production, table),
                        "staging_table": f"{staging}.{STAGING_TABLE}",
                        "published_as": f"{published_as}.{table}",
                    },
                )
            yield event


def _table_metadata(
    postgres_staging: PostgresStagingResource, schema: str, table: str
) -> dict[str, object]:
    from psycopg2 import sql

    conn = postgres_staging.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            )
            rows = int(cur.fetchone()[0])
    finally:
        conn.close()
    return {"dagster/row_count": rows, "postgres_table": f"{schema}.{table}"}

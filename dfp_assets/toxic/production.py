"""`table_clean`: dbt/toxic_comments builds the branch's production table from its staging.

dbt (its Python API in the run's warm worker, events by dagster-dbt) reads `text_comments`
from the staging schema this run wrote (`comments_tokenized` in the same run; else the
branch's) and builds `table_clean` into the run's own `production` schema, which
write-audit-publish swaps in as the branch's (`production__<branch>`) together with the
staging schema, in the transaction around the lakeFS merge. Every dbt test is a blocking
check: a failing one publishes nothing, so the branch's staging and production stay as they
were. The connection is DFP_POSTGRES_URL, passed to dbt as the variables its profile reads.
"""

import json
import tempfile
from pathlib import Path

import dagster as dg

from dfp.dbt_inprocess import project_args
from dfp.toxic.dbt_build import PROJECT_DIR, build_on_prepared_manifest, dbt_vars, postgres_env
from dfp.warm_imports import run_warm
from dfp_assets.platform.dbt_plan import dbt_multi_asset, dbt_selection, step_results
from dfp_assets.platform.partitions import lakefs_branch_partitions
from dfp_assets.toxic.dbt_project import MANIFEST_PATH, asset_plan, translator
from dfp_assets.toxic.staging import STAGING_FAMILY, STAGING_TABLE
from dfp_resources.postgres_staging import PostgresStagingResource

PRODUCTION_FAMILY = "production"

# The specs dagster-dbt derives from the manifest (`dfp dbt prepare`); loading runs no dbt.
_PLAN = asset_plan(lakefs_branch_partitions)


#: What the dbt step's warm worker imports (dfp.warm_imports): dbt with its Postgres adapter,
#: dagster-dbt and this module, whose `_build_in_worker` it runs; then dbt's first-invocation
#: costs are paid (`warm_up`: the manifest loaded, a `dbt ls` without a database).
DBT_WARM_IMPORTS = (
    "dbt.cli.main,dbt.adapters.postgres,dagster_dbt,dfp_assets.toxic.production,"
    "dfp.toxic.dbt_build:warm_up"
)


# dbt runs through its Python API on the prepared manifest (no dbt process, no parse), in the
# run's warm worker that imported dbt and dagster-dbt while the first steps ran: a CDC batch's
# build is a second of SQL, which a dbt process start and its parse made 12-15 s.
@dbt_multi_asset("toxic_dbt", _PLAN, warm_imports=DBT_WARM_IMPORTS)
def toxic_dbt(context: dg.AssetExecutionContext, postgres_staging: PostgresStagingResource):
    staging = postgres_staging.read_schema(context, STAGING_FAMILY)
    production = postgres_staging.run_schema(context, PRODUCTION_FAMILY)
    published_as = postgres_staging.branch_schema(PRODUCTION_FAMILY, context.partition_key)
    context.log.info(f"dbt: {staging}.{STAGING_TABLE} → {production} (publishes as {published_as})")
    variables = dbt_vars(staging, production, STAGING_TABLE)
    selection, indirect = dbt_selection(context, json.loads(MANIFEST_PATH.read_text()), translator)
    env = {
        **postgres_env(postgres_staging.dsn()),
        **({"DBT_INDIRECT_SELECTION": indirect} if indirect else {}),
    }
    args = ["build", "--vars", json.dumps(variables), *selection]
    with tempfile.TemporaryDirectory(prefix="dfp-toxic-dbt-") as root:
        # Per-run artifacts live and die with the run (not under dbt/toxic_comments/target).
        target = str(Path(root) / "target")
        events, failure = run_warm(DBT_WARM_IMPORTS, _build_in_worker, args, variables, env, target)
    for event in step_results(context, dg.deserialize_value(events, as_type=list)):
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
    if failure:  # after the failed tests' results: they show in the UI, and nothing publishes
        raise dg.Failure(description=failure)


def _build_in_worker(
    args: list[str], variables: dict[str, str], env: dict[str, str], target_path: str
) -> tuple[str, str | None]:
    """`dbt build` on the prepared manifest and dagster-dbt's events of it (serialized), and
    why it failed if it did. Module-level and picklable: the warm worker runs it."""
    from dfp_assets.platform.dbt_cli import dbt_run_events, dbt_run_failure

    location = project_args(PROJECT_DIR, Path(target_path))
    run = build_on_prepared_manifest([*args, *location], variables, env)
    manifest = json.loads(MANIFEST_PATH.read_text())
    events = dbt_run_events(run, manifest, translator(), Path(target_path))
    return dg.serialize_value(events), dbt_run_failure(run)


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

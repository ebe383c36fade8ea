"""dbt staging and mart models as Iceberg tables on the run's lakeFS branch (dagster-dbt).

dbt reads `kronodroid_raw` from the run branch and writes every model as a branch-isolated
Iceberg table (`dfp.lake.iceberg`), on one of two engines (DFP_DBT_TARGET): DuckDB through dfp's
dbt-duckdb plugin (default, embedded) or Spark through dbt-spark's session method (local[2],
S3A, dfp's branch FileIO). dbt tests are blocking
asset checks: a failing test stops the build, so the run fails and nothing is published.

A build whose inputs are unchanged (the same raw objects, dbt project and engine) is not run
again: the tables on the branch are the ones that build wrote (a memo checks their pointers),
so their materializations and test results are reported from the memo.
"""

import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from dfp.kronodroid.dbt_build import PREPARED_ENGINE, build
from dfp.kronodroid.load import RAW_OBJECTS_PREFIX
from dfp.lake import memo
from dfp.lake.iceberg import pointer_path, table_prefix
from dfp_assets.kronodroid.dbt_project import MANIFEST_PATH, asset_plan
from dfp_assets.platform.dbt_plan import dbt_events, dbt_inprocess_events, dbt_multi_asset
from dfp_assets.platform.partitions import lakefs_branch_partitions
from dfp_assets.platform.step import BranchStep, branch_step
from dfp_resources.dbt import DbtResource
from dfp_resources.environment import DBT_PROJECT_DIR
from dfp_resources.iceberg import IcebergCatalogResource
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.spark import SparkResource

#: Bump when this glue or the Iceberg writing changes: memos of older builds are not reused.
STAGING_CODE_VERSION = "kronodroid_dbt/1"
_NOT_PROJECT = {"target", "logs", "dbt_packages", "__pycache__"}
_DBT_PLUGIN = Path(__file__).resolve().parents[2] / "dfp" / "kronodroid" / "dbt_plugin.py"


def dbt_project_version() -> str:
    """A content hash of the dbt project (models, tests, macros, profiles) and dfp's plugin."""
    sha = hashlib.sha256()
    files = [
        p
        for p in DBT_PROJECT_DIR.rglob("*")
        if p.is_file()
        and not _NOT_PROJECT & set(p.relative_to(DBT_PROJECT_DIR).parts)
        and p.name != ".user.yml"
    ]
    named = [(str(p.relative_to(DBT_PROJECT_DIR)), p) for p in files]
    for name, path in [*sorted(named), ("dfp/kronodroid/dbt_plugin.py", _DBT_PLUGIN)]:
        sha.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


# The specs dagster-dbt derives from the manifest (prepared beforehand by `dfp dbt prepare`,
# or by `dagster dev` when the dbt project changed); loading runs no dbt and no dagster-dbt.
_PLAN = asset_plan(lakefs_branch_partitions)


@dbt_multi_asset("kronodroid_dbt", _PLAN)
def kronodroid_dbt(
    context: dg.AssetExecutionContext,
    dbt: DbtResource,
    lakefs: LakeFSResource,
    iceberg: IcebergCatalogResource,
    spark: SparkResource,
):
    engine = dbt.target or "duckdb"  # the resource's declared config (DFP_DBT_TARGET)
    manifest = json.loads(MANIFEST_PATH.read_text())  # parsed once: models here, dbt's events
    models = {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model"
    }
    with (
        branch_step(context, lakefs, "kronodroid_dbt") as step,
        tempfile.TemporaryDirectory(prefix="dfp-dbt-") as root,
    ):
        run_branch, client = step.run_branch, step.client
        inputs = memo.input_version(
            STAGING_CODE_VERSION,
            dbt_project_version(),
            engine,
            memo.listing(client, run_branch, RAW_OBJECTS_PREFIX),
        )
        if step.lookup(inputs, accept=lambda found: _memo_covers(context, found)):
            yield from _reused_build(context, step, iceberg.tables(client))
            return
        built: dict[str, dict[str, Any]] = {}
        checked: dict[str, dict[str, Any]] = {}
        dbt_vars = {
            "lakefs_io_ref": run_branch,
            "lakefs_branch": step.branch,
        }
        engine_env = {"DFP_ICEBERG_CATALOG_URI": iceberg.uri, "DFP_DBT_TARGET": engine}
        # The run branch's catalog rows serve this run only; lakeFS keeps the pointers.
        with iceberg.tables(client).run_index(run_branch) as tables:
            if engine == "spark":
                # Spark replaces tables through the catalog: index the run branch's tables and
                # aim their new files at the partition branch's logical paths first.
                prepared = tables.prepare_writes(run_branch, step.branch)
                context.log.info(f"Spark engine; existing tables on {run_branch}: {prepared}")
                engine_env["DFP_SPARK_CONF"] = repr(spark.conf(client, run_branch))
            from dfp_assets.kronodroid.dbt_cli import DfpDbtTranslator  # dagster-dbt: ~2.5 s

            args = ["build", "--vars", json.dumps(dbt_vars), "--target", engine]
            # Per-run artifacts live and die with the run (not under dbt/target).
            target_path = Path(root) / "target"
            if engine == PREPARED_ENGINE:
                # In this process on the prepared manifest: no dbt process, no parse.
                events = dbt_inprocess_events(
                    context,
                    lambda args, env: build(
                        args,
                        repository=client.repository,
                        lakefs_branch=step.branch,
                        env={**engine_env, **env},
                        target_path=target_path,
                    ),
                    args,
                    manifest=manifest,
                    translator=DfpDbtTranslator(),
                    target_path=target_path,
                )
            else:  # Spark's configs differ from the prepared manifest's: a dbt process parses
                events = dbt_events(
                    context,
                    dbt.cli_resource().cli,
                    args[:-2],  # the resource passes its target itself
                    manifest=manifest,
                    translator=DfpDbtTranslator(),
                    env=engine_env,
                    target_path=target_path,
                )
            for event in events:
                model = (
                    event.asset_key.path[-1] if isinstance(event, dg.MaterializeResult) else None
                )
                if model in models:
                    node = models[model]
                    if engine == "spark":
                        # The dbt-duckdb plugin writes pointers itself; Spark does not.
                        tables.refresh_pointer(run_branch, _schema(node), node["name"])
                    metadata = {
                        **(event.metadata or {}),
                        **_iceberg_metadata(tables, run_branch, node, engine),
                    }
                    built[event.asset_key.to_user_string()] = _plain(metadata)
                    # Reported before the build's lineage commit: the link is to the table on
                    # the partition branch, which holds it once the run is published.
                    links = step.links(wrote=_table_objects(_schema(node), node["name"]))
                    event = dg.MaterializeResult(
                        asset_key=event.asset_key, metadata={**metadata, **links}
                    )
                elif isinstance(event, dg.AssetCheckResult):
                    checked[_check_id(event.asset_key, event.check_name)] = {
                        "passed": event.passed,
                        "metadata": _plain(event.metadata),
                    }
                yield event
            complete = len(built) == len(models) and len(checked) == len(kronodroid_dbt.check_keys)
            if complete and all(c["passed"] for c in checked.values()):
                # Only a whole build that passed every test can stand in for a later one.
                step.record(
                    [pointer_path(_schema(n), n["name"]) for n in models.values()],
                    {"models": built, "checks": checked},
                )
            _commit_build(step, tables)


def _commit_build(step: BranchStep, tables) -> str:
    """The lineage commit of a dbt build: every table's current snapshot on the branch."""
    described = tables.describe(step.run_branch)
    return step.commit(
        f"dbt build for {step.branch}",
        {f"iceberg.{k}": str(v["snapshot_id"]) for k, v in described.items()},
    )


def _schema(node: Mapping[str, Any]) -> str:
    # The model's configured schema (staging, marts): on Spark node["schema"] also names the
    # branch namespace.
    return node["config"].get("schema") or node["schema"]


def _iceberg_metadata(
    tables, run_branch: str, node: Mapping[str, Any], engine: str
) -> dict[str, Any]:
    # dbt committed this table's catalog row moments ago: no resync from lakeFS.
    table = tables.table(run_branch, _schema(node), node["name"])
    snapshot = table.current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    return {
        "iceberg_table": f"{_schema(node)}.{node['name']}",
        "staging_engine": engine,
        "iceberg_snapshot_id": str(snapshot.snapshot_id) if snapshot else "",
        "iceberg_metadata_location": table.metadata_location,
        "dagster/row_count": int(summary.get("total-records", 0)),
    }


def _table_objects(schema: str, table: str) -> str:
    """The lakeFS prefix of an Iceberg table's files (data, metadata, pointer)."""
    return f"{table_prefix(schema, table)}/"


def _check_id(asset_key: dg.AssetKey, check_name: str) -> str:
    return f"{asset_key.to_user_string()}:{check_name}"


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-representable entries of event metadata (what a memo can show again)."""
    out = {}
    for key, value in metadata.items():
        raw = value.value if isinstance(value, dg.MetadataValue) else value
        if isinstance(raw, str | int | float | bool) or raw is None:
            out[key] = raw
    return out


def _memo_covers(context: dg.AssetExecutionContext, reused: memo.Memo) -> bool:
    models, checks = reused.metadata.get("models", {}), reused.metadata.get("checks", {})
    return all(k.to_user_string() in models for k in context.selected_asset_keys) and all(
        _check_id(k.asset_key, k.name) in checks for k in context.selected_asset_check_keys
    )


def _reused_build(
    context: dg.AssetExecutionContext, step: BranchStep, tables
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Report the build the memo describes: its tables are the ones on the branch."""
    _commit_build(step, tables)
    models, checks = step.reused.metadata["models"], step.reused.metadata["checks"]
    selected = {k.to_user_string(): k for k in context.selected_asset_keys}
    for name, reported in models.items():  # in dbt's build order: parents first
        if name in selected:
            schema, table = str(reported["iceberg_table"]).split(".", 1)
            yield dg.MaterializeResult(
                asset_key=selected[name],
                metadata=step.reported(reported, wrote=_table_objects(schema, table)),
            )
    for key in sorted(
        context.selected_asset_check_keys, key=lambda k: _check_id(k.asset_key, k.name)
    ):
        outcome = checks[_check_id(key.asset_key, key.name)]
        yield dg.AssetCheckResult(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=outcome["passed"],
            metadata=step.reported(outcome["metadata"]),
        )

"""dbt staging and mart models as Iceberg tables on the run's lakeFS branch (dagster-dbt).

dbt reads `kronodroid_raw` from the run branch and writes every model as a branch-isolated
Iceberg table (`dfp.iceberg`), on one of two engines (DFP_DBT_TARGET): DuckDB through dfp's
dbt-duckdb plugin (default, embedded) or Spark through dbt-spark's session method (local[2],
S3A, dfp's branch FileIO). dbt tests are blocking
asset checks: a failing test stops the build, so the run fails and nothing is published.
"""

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from dfp_assets.partitions import lakefs_branch_partitions
from dfp_resources.environment import DBT_PROJECT_DIR, dbt_executable, dbt_target
from dfp_resources.iceberg import IcebergCatalogResource
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.spark import SparkResource

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _manifest_is_stale() -> bool:
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [p for p in DBT_PROJECT_DIR.rglob("*") if p.suffix in (".sql", ".yml")]
    return any(p.stat().st_mtime > built for p in sources if "target" not in p.parts)


# `dbt parse` writes the manifest the asset definitions are built from; redo it whenever
# the dbt project changed (a fresh clone has none).
if _manifest_is_stale():
    subprocess.run(
        [dbt_executable(), "parse", "--quiet", "--profiles-dir", str(DBT_PROJECT_DIR)],
        cwd=DBT_PROJECT_DIR,
        check=True,
    )


class DfpDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "staging" if dbt_resource_props["resource_type"] == "model" else None

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        # A failing dbt test stops everything downstream of its model.
        return spec._replace(blocking=True) if spec is not None else None


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set variables for the dbt subprocess (it inherits os.environ), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    partitions_def=lakefs_branch_partitions,
    dagster_dbt_translator=DfpDbtTranslator(),
    name="kronodroid_dbt",
)
def kronodroid_dbt(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    lakefs: LakeFSResource,
    iceberg: IcebergCatalogResource,
    spark: SparkResource,
):
    run_branch = lakefs.run_branch(context)
    target_branch = context.partition_key
    engine = dbt_target()
    models = {
        node["name"]: node
        for node in json.loads(dbt_project.manifest_path.read_text())["nodes"].values()
        if node["resource_type"] == "model"
    }
    with lakefs.client() as client, tempfile.TemporaryDirectory(prefix="dfp-dbt-") as root:
        tables = iceberg.tables(client)
        dbt_vars = {
            "lakefs_io_ref": run_branch,
            "lakefs_branch": target_branch,
            "external_root": root,
        }
        engine_env = {"DFP_ICEBERG_CATALOG_URI": iceberg.uri, "DFP_DBT_TARGET": engine}
        if engine == "spark":
            # Spark replaces tables through the catalog: index the run branch's tables and
            # aim their new files at the partition branch's logical paths first.
            prepared = tables.prepare_writes(run_branch, target_branch)
            context.log.info(f"Spark engine; existing tables on {run_branch}: {prepared}")
            engine_env["DFP_SPARK_CONF"] = repr(spark.conf(client, run_branch))
        try:
            with _environ(**engine_env):
                invocation = dbt.cli(
                    ["build", "--vars", json.dumps(dbt_vars)],
                    context=context,
                    # Per-run artifacts live and die with the run (not under dbt/target).
                    target_path=Path(root) / "target",
                )
                for event in invocation.stream():
                    model = (
                        context.asset_key_for_output(event.output_name).path[-1]
                        if isinstance(event, dg.Output)
                        else None
                    )
                    if model in models:
                        node = models[model]
                        if engine == "spark":
                            # The dbt-duckdb plugin writes pointers itself; Spark does not.
                            tables.refresh_pointer(run_branch, _schema(node), node["name"])
                        event = event.with_metadata(
                            {**event.metadata, **_iceberg_metadata(tables, run_branch, node)}
                        )
                    yield event
            described = tables.describe(run_branch)
            client.commit(
                run_branch,
                f"dbt build for {target_branch}",
                {
                    "dagster_run_id": context.run.run_id,
                    "asset": "kronodroid_dbt",
                    **{f"iceberg.{k}": str(v["snapshot_id"]) for k, v in described.items()},
                },
            )
        finally:
            # The run branch's catalog rows served this run only; lakeFS keeps the pointers.
            tables.forget(run_branch)


def _schema(node: Mapping[str, Any]) -> str:
    # The model's configured schema (staging, marts): on Spark node["schema"] also names the
    # branch namespace.
    return node["config"].get("schema") or node["schema"]


def _iceberg_metadata(tables, run_branch: str, node: Mapping[str, Any]) -> dict[str, Any]:
    # dbt committed this table's catalog row moments ago: no resync from lakeFS.
    ident = tables.identifier(run_branch, _schema(node), node["name"])
    table = tables.catalog(run_branch).load_table(ident)
    snapshot = table.current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    return {
        "iceberg_table": f"{_schema(node)}.{node['name']}",
        "staging_engine": dbt_target(),
        "iceberg_snapshot_id": str(snapshot.snapshot_id) if snapshot else "",
        "iceberg_metadata_location": table.metadata_location,
        "dagster/row_count": int(summary.get("total-records", 0)),
    }

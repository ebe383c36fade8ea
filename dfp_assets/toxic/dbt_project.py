"""The toxic-comment dbt project (dbt/toxic_comments) for Dagster: its translator, manifest and
asset plan, as dfp_assets/kronodroid/dbt_project.py does for Kronodroid's (the plan machinery is
the platform's, dfp_assets/platform/dbt_plan.py). Not registered here.

table_clean's asset depends on the staging asset (`STAGING_ASSET_KEY`, dbt's source
`staging.text_comments`); every dbt test is a blocking check of it. The run's schemas reach dbt
as vars (dfp.toxic.dbt_build.dbt_vars); the connection through DFP_TOXIC_PG_* (postgres_env).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from dfp.toxic.dbt_build import PROJECT_DIR
from dfp_assets.platform.dbt_plan import DbtAssetPlan, ensure_plan, write_plan

MANIFEST_PATH = PROJECT_DIR / "target" / "manifest.json"
#: The staging asset that writes `<staging schema>.text_comments`.
STAGING_ASSET_KEY = dg.AssetKey("comments_staging")
GROUP = "toxic_comments"


def translator():
    """dagster-dbt's translator for this project (imports dagster-dbt: only when preparing)."""
    from dagster_dbt import DagsterDbtTranslator

    class ToxicDbtTranslator(DagsterDbtTranslator):
        def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
            if dbt_resource_props["resource_type"] == "source":
                return STAGING_ASSET_KEY
            # dagster-dbt prefixes a custom schema, which here is per run: keep the bare name.
            return dg.AssetKey(dbt_resource_props["name"])

        def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
            return GROUP if dbt_resource_props["resource_type"] == "model" else None

        def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
            spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
            # A failing dbt test keeps the run from publishing.
            return spec._replace(blocking=True) if spec is not None else None

    return ToxicDbtTranslator()


def dbt_project():
    from dagster_dbt import DbtProject

    return DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)


def prepare() -> Path:
    """Parse the project into its manifest (no database needed) and write the asset plan."""
    # dagster-dbt's preparer run with the dbt beside this Python; nothing Kronodroid in it.
    from dfp_assets.kronodroid.dbt_cli import DfpDbtProjectPreparer

    project = dbt_project()
    DfpDbtProjectPreparer().prepare(project)
    write_plan(project.manifest_path, translator(), project)
    return project.manifest_path


def asset_plan(partitions_def: dg.PartitionsDefinition | None) -> DbtAssetPlan:
    """table_clean's asset spec and its tests' check specs, from the prepared manifest."""
    if not MANIFEST_PATH.exists():
        raise FileNotFoundError(
            f"dbt manifest {MANIFEST_PATH} is missing: run `uv run dfp dbt prepare`"
        )
    return ensure_plan(MANIFEST_PATH, partitions_def, translator, dbt_project)

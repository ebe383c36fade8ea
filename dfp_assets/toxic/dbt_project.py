"""The toxic-comment dbt project (dbt/toxic_comments) for Dagster: its translator, manifest and
asset plan (the plan, preparer and blocking-test translator are the platform's:
dfp_assets/platform/dbt_plan.py, dfp_assets/platform/dbt_cli.py).

table_clean's asset depends on the staging asset (`STAGING_ASSET_KEY`, dbt's source
`staging.text_comments`); every dbt test is a blocking check of it. The run's schemas reach dbt
as vars (dfp.toxic.dbt_build.dbt_vars), the connection as variables derived from
DFP_POSTGRES_URL (dfp.toxic.dbt_build.postgres_env).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from dfp.toxic.dbt_build import PROJECT_DIR
from dfp_assets.platform.dbt_plan import DbtAssetPlan, ensure_plan

MANIFEST_PATH = PROJECT_DIR / "target" / "manifest.json"
#: The staging asset that writes `<staging schema>.text_comments` (dfp_assets/toxic/staging.py).
STAGING_ASSET_KEY = dg.AssetKey("comments_tokenized")
GROUP = "toxic_production"


def translator():
    """dagster-dbt's translator for this project (imports dagster-dbt: only in steps and when
    preparing)."""
    from dfp_assets.platform.dbt_cli import BlockingTestsTranslator

    class ToxicDbtTranslator(BlockingTestsTranslator):
        def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
            if dbt_resource_props["resource_type"] == "source":
                return STAGING_ASSET_KEY
            # dagster-dbt prefixes a custom schema, which here is per run: keep the bare name.
            return dg.AssetKey(dbt_resource_props["name"])

        def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
            return GROUP if dbt_resource_props["resource_type"] == "model" else None

    return ToxicDbtTranslator()


def dbt_project():
    from dfp_assets.platform.dbt_cli import dbt_project as project

    return project(PROJECT_DIR)


def prepare() -> Path:
    """Parse the project into its manifest (no database needed) and write the asset plan."""
    from dfp_assets.platform import dbt_cli

    return dbt_cli.prepare(dbt_project(), translator())


def asset_plan(partitions_def: dg.PartitionsDefinition | None) -> DbtAssetPlan:
    """table_clean's asset spec and its tests' check specs, from the prepared manifest."""
    if not MANIFEST_PATH.exists():
        raise FileNotFoundError(
            f"dbt manifest {MANIFEST_PATH} is missing: run `uv run dfp dbt prepare`"
        )
    return ensure_plan(MANIFEST_PATH, partitions_def, translator, dbt_project)

"""The Kronodroid dbt glue that imports dagster-dbt: its translator and project (the preparer
and blocking-test translator are the platform's, dfp_assets/platform/dbt_cli.py). Loaded by the
dbt step, `dfp dbt prepare` and a stale plan, never by loading the definitions
(dfp_assets/kronodroid/dbt_project.py reads the plan instead)."""

from collections.abc import Mapping
from typing import Any

from dagster_dbt import DbtProject

from dfp_assets.platform import dbt_cli
from dfp_resources.environment import DBT_PROJECT_DIR


class DfpDbtTranslator(dbt_cli.BlockingTestsTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "staging" if dbt_resource_props["resource_type"] == "model" else None


def dbt_project() -> DbtProject:
    return dbt_cli.dbt_project(DBT_PROJECT_DIR)

"""The Kronodroid dbt glue that imports dagster-dbt: the translator, the project and its
preparer. Loaded by the dbt step, `dfp dbt prepare` and a stale plan, never by loading the
definitions (dfp_assets/kronodroid/dbt_project.py reads the plan instead)."""

from collections.abc import Mapping
from typing import Any

from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer

from dfp_resources.environment import DBT_PROJECT_DIR, dbt_executable


class DfpDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "staging" if dbt_resource_props["resource_type"] == "model" else None

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        # A failing dbt test stops everything downstream of its model.
        return spec._replace(blocking=True) if spec is not None else None


class DfpDbtProjectPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparer (`dbt deps` if needed, `dbt parse`, with its guard against
    concurrent writers), run with the dbt beside this Python. When it runs (always for
    `dfp dbt prepare`, only when stale under `dagster dev`) is dbt_project.ensure_manifest's."""

    def _prepare_manifest(self, project: DbtProject) -> None:
        # The parent runs `dbt` from PATH; a venv's python run without activating it (the
        # test runner, a daemon) has dbt beside sys.executable but not on PATH.
        DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
            self._prepare_project_cli_args, target_path=project.target_path
        ).wait()
        self._invalidate_seeds_in_partial_parse(project)


def dbt_project() -> DbtProject:
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

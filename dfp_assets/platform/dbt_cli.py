"""The dbt glue every domain shares that imports dagster-dbt: a translator whose tests are
blocking checks, the project preparer, `prepare` (manifest + asset plan) and the CLI resource.
Loaded by dbt steps, `dfp dbt prepare` and a stale plan, never by loading the definitions
(dfp_assets/platform/dbt_plan.py reads the plan instead)."""

from __future__ import annotations

from pathlib import Path

from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer

from dfp_assets.platform.dbt_plan import write_plan
from dfp_resources.environment import dbt_executable


class BlockingTestsTranslator(DagsterDbtTranslator):
    """dagster-dbt's translator with every dbt test a blocking check: a failing test keeps
    the run from publishing and stops everything downstream of its model."""

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        return spec._replace(blocking=True) if spec is not None else None


class DfpDbtProjectPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparer (`dbt deps` if needed, `dbt parse`, with its guard against
    concurrent writers), run with the dbt beside this Python."""

    def _prepare_manifest(self, project: DbtProject) -> None:
        # The parent runs `dbt` from PATH; a venv's python run without activating it (the
        # test runner, a daemon) has dbt beside sys.executable but not on PATH.
        DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
            self._prepare_project_cli_args, target_path=project.target_path
        ).wait()
        self._invalidate_seeds_in_partial_parse(project)


def dbt_project(project_dir: Path) -> DbtProject:
    """A dbt project whose profiles.yml is beside its dbt_project.yml (as dfp's are)."""
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir)


def prepare(project: DbtProject, translator: DagsterDbtTranslator) -> Path:
    """Parse `project` into its manifest and write the asset plan beside it."""
    DfpDbtProjectPreparer().prepare(project)
    write_plan(project.manifest_path, translator, project)
    return project.manifest_path


def cli(project_dir: Path) -> DbtCliResource:
    """dagster-dbt's CLI resource for a project (profiles beside it, dbt beside this Python),
    less its unused start-up work."""
    from dfp_assets.platform.dagster_private import lean_dbt_cli_resource

    return lean_dbt_cli_resource(
        project_dir=str(project_dir), profiles_dir=str(project_dir), dbt_executable=dbt_executable()
    )

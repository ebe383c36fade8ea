"""The Kronodroid dbt project (dagster-dbt's `DbtProject`) and how its manifest is prepared.

`dbt_assets` builds the dbt asset definitions from `target/manifest.json`, so the manifest must
exist before the definitions load. Loading never runs dbt, except under `dagster dev`:
- `dagster dev` (`bash scripts/dev.sh`): `prepare_if_dev()` re-parses when the dbt project is
  newer than the manifest (a fresh clone, an edited model). Every run and step process that
  `dagster dev` starts inherits its environment, so parsing only when stale keeps them from
  each running `dbt parse` again.
- everywhere else (tests, the daemon's run and step workers, deployments): the manifest is
  prepared beforehand by `dfp dbt prepare` (`.ci/run`, the Docker image; the test session does
  it too when stale). A missing manifest fails loading with that instruction.
`dagster-dbt project prepare-and-package --file dfp_assets/kronodroid/dbt_project.py` does the
same preparation (this module loads without a manifest).
"""

import logging
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer, using_dagster_dev

from dfp.kronodroid.dbt_manifest import manifest_is_stale
from dfp_resources.environment import DBT_PROJECT_DIR, dbt_executable

PREPARE_COMMAND = "uv run dfp dbt prepare"


class DfpDbtProjectPreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparer (`dbt deps` if needed, `dbt parse`, with its guard against
    concurrent writers), run with the dbt beside this Python and, in dev, only when stale."""

    def prepare_if_dev(self, project: DbtProject) -> None:
        if using_dagster_dev() and manifest_is_stale(project.project_dir):
            super().prepare_if_dev(project)

    def _prepare_manifest(self, project: DbtProject) -> None:
        # The parent runs `dbt` from PATH; a venv's python run without activating it (the
        # test runner, a daemon) has dbt beside sys.executable but not on PATH.
        DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
            self._prepare_project_cli_args, target_path=project.target_path
        ).wait()
        self._invalidate_seeds_in_partial_parse(project)


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# DbtProject is a frozen record that builds dagster-dbt's default preparer; ours is kept beside.
preparer = DfpDbtProjectPreparer()


def prepare() -> Path:
    """Parse the dbt project into its manifest now (`dfp dbt prepare`); returns its path."""
    preparer.prepare(dbt_project)
    return dbt_project.manifest_path


def ensure_manifest() -> Path:
    """The manifest the definitions are built from: prepared if stale under `dagster dev`,
    otherwise it must exist already (never a dbt subprocess while loading)."""
    preparer.prepare_if_dev(dbt_project)
    if not dbt_project.manifest_path.exists():
        raise FileNotFoundError(
            f"dbt manifest {dbt_project.manifest_path} is missing: run `{PREPARE_COMMAND}` "
            "once (and after changing dbt/kronodroid), or use `bash scripts/dev.sh` / "
            "`dagster dev`, which prepare it themselves."
        )
    if not using_dagster_dev() and manifest_is_stale(DBT_PROJECT_DIR):
        logging.getLogger(__name__).warning(
            "dbt manifest is older than dbt/kronodroid: the asset graph may miss model changes; "
            "run `%s`",
            PREPARE_COMMAND,
        )
    return dbt_project.manifest_path

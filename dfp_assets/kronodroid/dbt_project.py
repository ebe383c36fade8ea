"""The Kronodroid dbt project: its manifest, how that is prepared, and the asset plan.

The dbt assets are built from `target/manifest.json` through a plan of their specs
(dfp_assets/platform/dbt_plan.py), so the manifest must exist before the definitions load.
Loading never runs dbt, except under `dagster dev`:
- `dagster dev` (`bash scripts/dev.sh`): loading re-parses (dagster-dbt's preparer) when the
  dbt project is newer than the manifest (a fresh clone, an edited model). Every run and step
  process that `dagster dev` starts inherits its environment, so parsing only when stale keeps
  them from each running `dbt parse` again.
- everywhere else (tests, the daemon's run and step workers, deployments): the manifest and
  plan are prepared beforehand by `dfp dbt prepare` (`.ci/run`, the Docker image; the test
  session does it too when stale). A missing manifest fails loading with that instruction; a
  plan older than its manifest is rebuilt (with dagster-dbt, once).
"""

import logging
import os
from pathlib import Path

import dagster as dg

from dfp.kronodroid.dbt_manifest import manifest_is_stale
from dfp_assets.platform.dbt_plan import DbtAssetPlan, ensure_plan
from dfp_resources.environment import DBT_PROJECT_DIR

PREPARE_COMMAND = "uv run dfp dbt prepare"
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"


def _using_dagster_dev() -> bool:
    # The variable `dagster dev` sets for its processes (dagster-dbt's test reads the same).
    return bool(os.getenv("DAGSTER_IS_DEV_CLI"))


def _translator():
    from dfp_assets.kronodroid.dbt_cli import DfpDbtTranslator

    return DfpDbtTranslator()


def _project():
    from dfp_assets.kronodroid.dbt_cli import dbt_project

    return dbt_project()


def prepare() -> Path:
    """Parse the dbt project into its manifest and write the asset plan now
    (`dfp dbt prepare`); returns the manifest's path."""
    from dfp_assets.platform import dbt_cli

    return dbt_cli.prepare(_project(), _translator())


def ensure_manifest() -> Path:
    """The manifest the definitions are built from: prepared if stale under `dagster dev`,
    otherwise it must exist already (never a dbt subprocess while loading)."""
    if _using_dagster_dev() and manifest_is_stale(DBT_PROJECT_DIR):
        prepare()
    if not MANIFEST_PATH.exists():
        raise FileNotFoundError(
            f"dbt manifest {MANIFEST_PATH} is missing: run `{PREPARE_COMMAND}` "
            "once (and after changing dbt/kronodroid), or use `bash scripts/dev.sh` / "
            "`dagster dev`, which prepare it themselves."
        )
    if not _using_dagster_dev() and manifest_is_stale(DBT_PROJECT_DIR):
        logging.getLogger(__name__).warning(
            "dbt manifest is older than dbt/kronodroid: the asset graph may miss model changes; "
            "run `%s`",
            PREPARE_COMMAND,
        )
    return MANIFEST_PATH


def asset_plan(partitions_def: dg.PartitionsDefinition | None) -> DbtAssetPlan:
    """The dbt models' asset specs and the dbt tests' check specs, from the manifest."""
    return ensure_plan(ensure_manifest(), partitions_def, _translator, _project)

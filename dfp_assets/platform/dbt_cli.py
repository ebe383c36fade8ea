"""The dbt glue every domain shares that imports dagster-dbt: a translator whose tests are
blocking checks, the project preparer, `prepare` (manifest + asset plan) and the CLI resource.
Loaded by dbt steps, `dfp dbt prepare` and a stale plan, never by loading the definitions
(dfp_assets/platform/dbt_plan.py reads the plan instead)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def dbt_run_events(
    run: Any, manifest: Mapping[str, Any], translator: DagsterDbtTranslator, target_path: Path
) -> list[Any]:
    """The Dagster events (op form, as `DbtCliInvocation.stream()` gives them without a
    context) of a dbt run made through dbt's Python API (`dfp.dbt_inprocess.DbtRun`), by
    dagster-dbt's own translation; dbt's log lines (info and up) echoed to stdout, as
    dagster-dbt does with its subprocess's."""
    from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

    events: list[Any] = []
    for raw in run.events:
        event = DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={})
        if raw["info"].get("level") in ("info", "warn", "error") and raw["info"].get("msg"):
            sys.stdout.write(str(event) + "\n")
        events.extend(
            event.to_default_asset_events(
                manifest=manifest, dagster_dbt_translator=translator, target_path=target_path
            )
        )
    sys.stdout.flush()
    return events


def dbt_run_failure(run: Any) -> str | None:
    """Why the run failed (dbt's error lines and exception), or None if it succeeded."""
    if run.success:
        return None
    errors = "\n".join(run.error_messages())
    return (
        f"dbt {run.args[0] if run.args else ''} failed"
        + (f":\n{errors}" if errors else "")
        + (f"\n{run.exception}" if run.exception else "")
    )

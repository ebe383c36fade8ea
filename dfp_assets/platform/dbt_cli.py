"""The dbt glue every domain shares that imports dagster-dbt: a translator whose tests are
blocking checks, the project preparer, `prepare` (manifest + asset plan) and the CLI resource.
Loaded by dbt steps, `dfp dbt prepare` and a stale plan, never by loading the definitions
(dfp_assets/platform/dbt_plan.py reads the plan instead)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class InProcessDbtCli:
    """`DbtCliResource.cli`'s shape (what `dbt_events` calls) over dbt-core's Python API:
    `run(args)` gives a `dfp.dbt_inprocess.DbtRun` (e.g. a build on the prepared manifest, in
    dfp's warm worker); its events are turned into Dagster's by dagster-dbt's own translation,
    as from dagster-dbt's subprocess."""

    def __init__(self, project_dir: Path, run: Callable[[list[str]], Any]):
        self._project_dir = project_dir
        self._run = run

    def cli(
        self,
        args: Sequence[str],
        *,
        manifest: Mapping[str, Any],
        dagster_dbt_translator: DagsterDbtTranslator,
        target_path: Path,
    ) -> InProcessDbtInvocation:
        location = [
            *("--project-dir", str(self._project_dir)),
            *("--profiles-dir", str(self._project_dir)),
            *("--target-path", str(target_path), "--log-path", str(target_path)),
        ]
        run = self._run([*args, *location])
        return InProcessDbtInvocation(run, manifest, dagster_dbt_translator, target_path)


class InProcessDbtInvocation:
    def __init__(self, run: Any, manifest: Mapping[str, Any], translator: Any, target_path: Path):
        self._run, self._manifest = run, manifest
        self._translator, self._target_path = translator, target_path

    def stream(self) -> Iterator[Any]:
        """The Dagster events of the build's results; dbt's log lines (info and up) echoed
        to stdout, as dagster-dbt does; dagster-dbt's error when the build failed."""
        from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
        from dagster_dbt.errors import DagsterDbtCliRuntimeError

        for raw in self._run.events:
            event = DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={})
            if raw["info"].get("level") in ("info", "warn", "error") and raw["info"].get("msg"):
                sys.stdout.write(str(event) + "\n")
            yield from event.to_default_asset_events(
                manifest=self._manifest,
                dagster_dbt_translator=self._translator,
                target_path=self._target_path,
            )
        sys.stdout.flush()
        if not self._run.success:
            errors = "\n".join(self._run.error_messages())
            cause = f"\n{self._run.exception}" if self._run.exception else ""
            raise DagsterDbtCliRuntimeError(
                description=f"dbt {' '.join(self._run.args[:1])} (in process) failed"
                + (f":\n{errors}" if errors else "")
                + cause
            )

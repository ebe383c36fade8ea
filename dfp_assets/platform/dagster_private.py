"""The only module importing Dagster's private (`dagster._*`) names (Dagster 1.13).

Each name is here because no public `dagster.*` API serves; everything else imports it from
here, so a Dagster upgrade that moves one breaks this file alone.
"""

# The statuses of runs not yet finished: public RunsFilter takes statuses, but Dagster
# exports no public list of the in-progress ones (queued, starting, started, canceling...).
# Validating a config dict against a config schema (tests of the Helm chart's run launcher
# config): Dagster validates run config publicly only for whole jobs.
from dagster._config import process_config

# An engine event's payload (message metadata, error): public DagsterEvent.engine_event
# requires one and Dagster exports no public constructor for it.
from dagster._core.events import EngineEventData

# How a wrapped executor retries steps: the Executor interface's `retries` property returns
# it, and Dagster has no public name for the type.
from dagster._core.execution.retries import RetryMode

# Whether a run's steps share the run worker's process (the write-audit-publish executor warms
# their heavy imports only then): Dagster exports its executor classes privately.
from dagster._core.executor.in_process import InProcessExecutor

# The warm run launcher (dfp_assets/platform/warm_launcher.py) forks run workers from a process
# that has imported the code location; a launcher reports their health in these types, and the
# forked worker runs what `dagster api execute_run` runs (Dagster has no public run-worker
# entry point besides that command, whose fresh interpreter is what the fork saves).
from dagster._core.instance import InstanceRef

# The instance config a DAGSTER_HOME's dagster.yaml resolves to, and the serialized form of
# its configurable classes (tests of the deployments' instance configs): no public API
# loads dagster.yaml without starting an instance.
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus

# Which sensors an instance knows and whether they run (the monitoring exporter, the tests'
# sensor-tick waits): the instance's instigator-state API takes these and Dagster exports
# neither publicly.
from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType, TickStatus
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, NOT_FINISHED_STATUSES
from dagster._serdes import ConfigurableClassData


def dbt_subset_selection(context, manifest, translator, indirect_env):
    """dagster-dbt's `--select` arguments and DBT_INDIRECT_SELECTION for a step's subset.

    dagster-dbt computes them inside `DbtCliResource.cli(context=...)` only for assets made by
    `@dbt_assets` (it reads the manifest from their metadata); dfp's dbt assets are built from
    a plan (dfp_assets/platform/dbt_plan.py), so the step calls the same function itself,
    which dagster-dbt keeps in a private module. Imported here, at run time: dagster-dbt is
    too slow to load with the definitions."""
    from dagster_dbt.asset_utils import get_subset_selection_for_context

    return get_subset_selection_for_context(
        context=context,
        manifest=manifest,
        select=None,
        exclude=None,
        selector=None,
        dagster_dbt_translator=translator,
        current_dbt_indirect_selection_env=indirect_env,
    )


def lean_dbt_cli_resource(**fields):
    """dagster-dbt's `DbtCliResource` without its two start-up costs dfp does not use.

    Before each invocation `DbtCliResource.cli` runs `dbt --version` in a subprocess (a
    whole dbt start-up, 4 s of CPU) and builds a dbt adapter handle in this process (5 s),
    used only by `fetch_column_metadata` / `fetch_row_counts`, which dfp does not call (row
    counts come from the Iceberg snapshots). Both are private members of dagster-dbt's
    resource: when the executable is the `dbt` beside this Python (dbt-core's own entry
    point) its version is the installed dbt-core's, and there is no adapter handle."""
    import shutil
    import sys
    from importlib.metadata import version as installed
    from pathlib import Path

    from dagster_dbt import DbtCliResource
    from packaging.version import Version

    beside = Path(sys.executable).with_name("dbt")

    class LeanDbtCliResource(DbtCliResource):
        @property
        def _cli_version(self) -> Version:
            found = shutil.which(self.dbt_executable)
            if found and Path(found).resolve() == beside.resolve():
                return Version(installed("dbt-core"))
            return DbtCliResource._cli_version.func(self)  # another dbt: ask it

        def _initialize_dbt_core_adapter(self, args):
            return None

    return LeanDbtCliResource(**fields)


__all__ = [
    "IN_PROGRESS_RUN_STATUSES",
    "NOT_FINISHED_STATUSES",
    "ConfigurableClassData",
    "dbt_subset_selection",
    "lean_dbt_cli_resource",
    "EngineEventData",
    "InProcessExecutor",
    "InstigatorStatus",
    "InstigatorType",
    "RetryMode",
    "TickStatus",
    "dagster_instance_config",
    "process_config",
    "CheckRunHealthResult",
    "InstanceRef",
    "LaunchRunContext",
    "WorkerStatus",
]


def execute_run_worker(run_id: str, instance) -> int:
    """In a forked run worker: what `dagster api execute_run` does with a run (its exit code).
    Imported here, at run time: Dagster's CLI module is too slow to load with the definitions."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._utils.interrupts import capture_interrupts

    with capture_interrupts():
        return _execute_run_command_body(run_id, instance, lambda _event: None, False)


def load_repository_definition(job_code_origin):
    """The repository (code location) a run's code origin names, loaded as a run worker
    loads it."""
    from dagster._utils.hosted_user_process import recon_job_from_origin

    return recon_job_from_origin(job_code_origin).repository.get_definition()

"""The write-audit-publish executor: Dagster's own executor, wrapped in a lakeFS branch.

Runs in the run worker, around the whole run, whatever steps were selected:
1. create hidden branch `dfp-run-<run id>` from the partition's branch;
2. run every step with the wrapped executor (assets and checks use the run branch);
3. read the run's step failures and check evaluations from Dagster's event log;
4. all passed → one lakeFS merge into the partition's branch, with run metadata;
   anything failed → no merge. The run branch is then deleted (kept if the run has the tag
   `dfp/keep_run_branch=true`, for debugging). A killed run worker leaves only its hidden run
   branch, which `lakefs_run_branch_cleanup` removes later.
Runs without a partition (maintenance jobs) execute unwrapped.

Data a run writes outside lakeFS publishes with the merge: a step registers it (`register_staged`,
an engine event carrying a `wap.Staged`) before writing, and the executor hands it to the
publish participant of its system (e.g. Postgres run schemas): prepared before the merge,
committed after it, rolled back if it fails, discarded when the run does not publish.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from dfp.lake import wap
from dfp.lake.lakefs_client import LakeFSError
from dfp.warm_imports import (
    WARM_IMPORTS_TAG,
    WarmWorker,
    start_warm_workers,
    stop_warm_workers,
)
from dfp_assets.platform.dagster_private import EngineEventData, InProcessExecutor, RetryMode
from dfp_resources.lakefs import LakeFSResource

PARTITION_TAG = "dagster/partition"
KEEP_RUN_BRANCH_TAG = "dfp/keep_run_branch"
#: Engine-event metadata key saying what write-audit-publish did (the monitoring exporter
#: counts these): merged, unchanged or refused.
PUBLISH_RESULT_KEY = "dfp/publish"


class PublishBlocked(Exception):
    """The run finished but a check failed, so nothing was published."""


def audit_run(instance: dg.DagsterInstance, run_id: str) -> wap.RunAudit:
    audit = wap.RunAudit()
    records = instance.get_records_for_run(
        run_id,
        of_type={
            dg.DagsterEventType.STEP_FAILURE,
            dg.DagsterEventType.ASSET_CHECK_EVALUATION,
            dg.DagsterEventType.ASSET_MATERIALIZATION,
            dg.DagsterEventType.ENGINE_EVENT,
        },
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            audit.failed_steps.append(event.step_key or "?")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            (audit.passed_checks if evaluation.passed else audit.failed_checks).append(name)
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            rows = materialization.metadata.get("dagster/row_count")
            audit.materialized[materialization.asset_key.to_user_string()] = (
                int(rows.value) if rows is not None else None
            )
        elif event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            data = event.engine_event_data
            staged = data.metadata.get(wap.STAGED_KEY) if data is not None else None
            if staged is not None:
                audit.staged.append(wap.Staged.decode(str(staged.value)))
    return audit


def register_staged(
    context: dg.OpExecutionContext | dg.AssetExecutionContext, staged: wap.Staged
) -> None:
    """Record in the run's event log, at once, that this run writes `staged` outside lakeFS:
    the write-audit-publish executor then publishes it with the merge or discards it."""
    context.instance.report_engine_event(
        f"write-audit-publish: staging {staged.system} {staged.staged} (for {staged.target})",
        dagster_run=context.run,
        engine_event_data=EngineEventData({wap.STAGED_KEY: staged.encode()}),
        step_key=context.get_step_execution_context().step.key,
    )


class WriteAuditPublishExecutor(dg.Executor):
    """`participants`: by system name, resources whose `publisher()` gives a
    `wap.PublishParticipant`; initialised only for runs that staged data in that system."""

    def __init__(
        self,
        inner: dg.Executor,
        lakefs: LakeFSResource,
        participants: Mapping[str, Any] | None = None,
    ):
        self._inner = inner
        self._lakefs = lakefs
        self._participants = dict(participants or {})

    def _publishers(self, staged: list[wap.Staged]) -> dict[str, wap.PublishParticipant]:
        systems = wap.by_system(staged)
        return {
            system: resource.process_config_and_initialize().publisher()
            for system, resource in self._participants.items()
            if system in systems
        }

    def _discard_staged(self, plan_context, run_id: str) -> None:
        """Drop what a run that did not publish staged outside lakeFS (best effort: a
        leftover is an orphan for the cleanup, never visible to readers)."""
        staged = audit_run(plan_context.instance, run_id).staged
        if not staged:
            return
        groups = wap.by_system(staged)
        try:
            publishers = self._publishers(staged)
        except Exception as exc:
            plan_context.log.warning(f"write-audit-publish: cannot discard {groups}: {exc}")
            return
        for system, items in groups.items():
            if system not in publishers:
                plan_context.log.warning(
                    f"write-audit-publish: no {system} participant to discard {items}"
                )
                continue
            try:
                publishers[system].discard(items)
            except Exception as exc:
                plan_context.log.warning(
                    f"write-audit-publish: discarding {system} {items} failed: {exc}"
                )

    @property
    def retries(self) -> RetryMode:
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def _warm_imports(self, execution_plan) -> list[WarmWorker]:
        """Steps sharing this process: worker processes import their declared heavy modules
        (op tag `dfp/warm_imports`) while the first steps run, and run their heavy part."""
        if not isinstance(self._inner, InProcessExecutor):
            return []  # each step has a process of its own, importing what it needs
        steps = execution_plan.get_steps_to_execute_in_topo_order()
        return start_warm_workers((step.tags or {}).get(WARM_IMPORTS_TAG) for step in steps)

    def _warmed(self, plan_context, workers: list[WarmWorker]) -> Iterator[dg.DagsterEvent]:
        for worker in workers:
            report = worker.report()
            if report is None:
                continue
            shown = ", ".join(f"{m} {s:.1f}s" for m, s in report["seconds"].items())
            failed = "; ".join(f"{m}: {e}" for m, e in report["failed"].items())
            yield dg.DagsterEvent.engine_event(
                plan_context,
                f"warm worker (pid {report.get('pid', '?')}) imported while the first steps "
                f"ran: {shown}" + (f" (failed, left to the steps: {failed})" if failed else ""),
                EngineEventData({"warm_imports": shown}),
            )

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        warming = self._warm_imports(execution_plan)
        try:
            yield from self._execute(plan_context, execution_plan, warming)
        finally:
            stop_warm_workers()

    def _execute(
        self, plan_context, execution_plan, warming: list[WarmWorker]
    ) -> Iterator[dg.DagsterEvent]:
        run = plan_context.dagster_run
        target = run.tags.get(PARTITION_TAG)
        if target is None:
            yield from self._inner.execute(plan_context, execution_plan)
            yield from self._warmed(plan_context, warming)
            return

        client = self._lakefs.process_config_and_initialize().client()
        run_branch = wap.run_branch_name(run.run_id)
        keep = run.tags.get(KEEP_RUN_BRANCH_TAG, "").lower() == "true"
        base = wap.start(client, run.run_id, target)
        yield dg.DagsterEvent.engine_event(
            plan_context,
            f"write-audit-publish: writing to lakeFS branch {run_branch} "
            f"(from {target} @ {base[:12]})",
            EngineEventData({"run_branch": run_branch, "target_branch": target, "base": base}),
        )
        published = False
        try:
            yield from self._inner.execute(plan_context, execution_plan)
            yield from self._warmed(plan_context, warming)
            audit = audit_run(plan_context.instance, run.run_id)
            if not audit.publishable:
                yield dg.DagsterEvent.engine_event(
                    plan_context,
                    f"write-audit-publish: NOT publishing to {target}: {audit.reason()}",
                    EngineEventData({"target_branch": target, PUBLISH_RESULT_KEY: "refused"}),
                )
                if audit.failed_checks and not audit.failed_steps:
                    # Non-blocking checks failed but every step succeeded: fail the run, so a
                    # green run always means published data.
                    raise PublishBlocked(
                        f"nothing published to lakeFS branch {target}: {audit.reason()}"
                    )
                return
            if audit.staged:
                publishers = self._publishers(audit.staged)
                commit = wap.publish_with(client, run.run_id, target, audit, publishers, base)
            else:
                commit = wap.publish(client, run.run_id, target, audit, base)
            published = True
            yield dg.DagsterEvent.engine_event(
                plan_context,
                f"write-audit-publish: published to {target}"
                + (f" as merge commit {commit[:12]}" if commit else " (no changes)"),
                EngineEventData(
                    {
                        "target_branch": target,
                        "merge_commit": commit or "",
                        "assets": ",".join(sorted(audit.materialized)),
                        "staged": ",".join(sorted(s.target for s in audit.staged)),
                        PUBLISH_RESULT_KEY: "merged" if commit else "unchanged",
                    }
                ),
            )
        finally:
            if published or not keep:
                try:
                    wap.discard(client, run.run_id)
                except LakeFSError as exc:
                    # lakeFS down: the hidden run branch stays, unseen by readers, until
                    # lakefs_run_branch_cleanup deletes it; the run's own error stands.
                    plan_context.log.warning(
                        f"write-audit-publish: run branch {run_branch} not deleted: {exc}"
                    )
            if not published and not keep:
                self._discard_staged(plan_context, run.run_id)
            client.close()


def default_mode_config(mode: str, preload_modules: Sequence[str] = ()) -> dict[str, Any]:
    """The inner executor's config for `mode`: a multiprocess run with `preload_modules`
    starts its steps from a forkserver that has imported them (Dagster's `start_method`)."""
    if mode == "multiprocess" and preload_modules:
        return {"start_method": {"forkserver": {"preload_modules": list(preload_modules)}}}
    return {}


def lakefs_wap_executor(
    lakefs: LakeFSResource,
    inner: dg.ExecutorDefinition = dg.multi_or_in_process_executor,
    *,
    default_mode: str | None = None,
    participants: Mapping[str, Any] | None = None,
    preload_modules: Sequence[str] = (),
) -> dg.ExecutorDefinition:
    """`inner` (default: Dagster's multiprocess/in-process executor) wrapped in WAP.

    `participants` (system → resource with `publisher()`) publish what runs stage outside
    lakeFS together with the merge.

    `default_mode` ("in_process" / "multiprocess") replaces the inner executor's default
    config, used by runs whose config has no `execution` (the UI's, the sensors').
    `preload_modules`: with "multiprocess", steps are forked from a forkserver that imported
    them once per run, instead of each step process importing them anew (spawn)."""
    schema = inner.config_schema
    if default_mode is not None:
        schema = dg.Field(
            schema.as_field().config_type,
            default_value={default_mode: default_mode_config(default_mode, preload_modules)},
            is_required=False,
        )
    return dg.ExecutorDefinition(
        name="lakefs_wap_executor",
        config_schema=schema,
        requirements=inner.get_requirements,
        executor_creation_fn=lambda init_context: WriteAuditPublishExecutor(
            inner.executor_creation_fn(init_context), lakefs, participants
        ),
        description=f"{inner.name} with lakeFS write-audit-publish around each partitioned run",
    )

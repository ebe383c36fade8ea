"""The Dagster side of `dfp monitor serve`: read the instance (and lakeFS) into a
`dfp.monitoring.snapshot.Snapshot`. The metrics themselves are computed in dfp.monitoring.

Dagster has no /metrics endpoint, and pushing from runs (dagster-prometheus → Pushgateway)
would miss what happens outside runs (sensor ticks, runs that never started, device uploads
recorded by a sensor) and lose history when the gateway restarts. So the exporter reads the
instance, which already records all of it. Finished runs never change: their events are read
once and cached, so a scrape reads only runs still in flight and the newest finished ones.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from dfp.lake.lakefs_client import LakeFSClient
from dfp.monitoring import domains
from dfp.monitoring.snapshot import (
    FINISHED,
    BranchHead,
    CheckEvaluation,
    Materialization,
    Publish,
    Run,
    SensorState,
    Snapshot,
    Step,
)
from dfp_assets.platform.dagster_private import InstigatorStatus, InstigatorType
from dfp_assets.platform.wap_executor import PARTITION_TAG, PUBLISH_RESULT_KEY

#: Tags lakefs_commit_sensor puts on the runs it requests (dfp_assets.kronodroid.automation;
#: not imported, which would load the whole asset graph into the exporter).
TRIGGER_TAG = "dfp/trigger"
COMMIT_TAG = "dfp/lakefs_commit"
PARTITIONS = "lakefs_branch"

EVENT_TYPES = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ENGINE_EVENT,
}


@dataclass
class _RunEvents:
    steps: list[Step]
    checks: list[CheckEvaluation]
    materializations: list[Materialization]
    publishes: list[Publish]


def _numbers(metadata) -> dict[str, float]:
    out = {}
    for key, value in (metadata or {}).items():
        raw = getattr(value, "value", value)
        if isinstance(raw, bool):
            continue
        if isinstance(raw, int | float):
            out[key] = float(raw)
    return out


def _texts(metadata, keys: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for key in keys:
        value = (metadata or {}).get(key)
        raw = getattr(value, "value", value)
        if isinstance(raw, str):
            out[key] = raw
    return out


def read_run_events(instance: dg.DagsterInstance, run_id: str, branch: str) -> _RunEvents:
    """One run's steps, check evaluations, materializations and publish outcome."""
    found = _RunEvents([], [], [], [])
    started: dict[str, float] = {}
    cursor = None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, of_type=EVENT_TYPES, limit=1000)
        for record in page.records:
            entry = record.event_log_entry
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type
            if kind == dg.DagsterEventType.STEP_START:
                started[event.step_key or ""] = entry.timestamp
            elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                key = event.step_key or ""
                if key in started:
                    outcome = "success" if kind == dg.DagsterEventType.STEP_SUCCESS else "failure"
                    found.steps.append(Step(run_id, key, outcome, entry.timestamp - started[key]))
            elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                ev = event.asset_check_evaluation_data
                found.checks.append(
                    CheckEvaluation(
                        run_id=run_id,
                        asset=ev.asset_key.to_user_string(),
                        check=ev.check_name,
                        branch=branch,
                        passed=ev.passed,
                        blocking=bool(ev.blocking),
                        timestamp=entry.timestamp,
                        metadata=_numbers(ev.metadata),
                    )
                )
            elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
                found.materializations.append(_materialization(entry, run_id, branch))
            elif kind == dg.DagsterEventType.ENGINE_EVENT:
                data = event.engine_event_data
                result = (data.metadata or {}).get(PUBLISH_RESULT_KEY) if data else None
                if result is not None:
                    target = getattr(data.metadata.get("target_branch"), "value", branch)
                    outcome = Publish(run_id, str(target), result.value, entry.timestamp)
                    found.publishes.append(outcome)
        if not page.has_more:
            return found
        cursor = page.cursor


def _materialization(entry, run_id: str, branch: str) -> Materialization:
    mat = entry.dagster_event.step_materialization_data.materialization
    numbers = _numbers(mat.metadata)
    rows = numbers.get("dagster/row_count")
    return Materialization(
        asset=mat.asset_key.to_user_string(),
        branch=mat.partition or branch,
        timestamp=entry.timestamp,
        run_id=run_id,
        row_count=int(rows) if rows is not None else None,
        metadata=numbers,
        labels=_texts(mat.metadata, ("online_store", "device")),
    )


class InstanceReader:
    """Snapshots of one Dagster instance (and optionally lakeFS), reusing what is final."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        lakefs: Callable[[], LakeFSClient] | None = None,
        *,
        max_runs: int = 1000,
        benchmark_uploads: int = 200,
        recent_ticks: int = 50,
    ):
        self.instance = instance
        self.lakefs = lakefs
        self.max_runs = max_runs
        self.benchmark_uploads = benchmark_uploads
        self.recent_ticks = recent_ticks
        self._finished: dict[str, _RunEvents] = {}
        self._commit_times: dict[str, float] = {}

    def sources(self) -> tuple[str, ...]:
        return ("dagster", "lakefs") if self.lakefs else ("dagster",)

    def snapshot(self) -> Snapshot:
        snap = Snapshot(now=time.time())
        records = self.instance.get_run_records(limit=self.max_runs)
        live_ids = set()
        for record in records:
            run = record.dagster_run
            branch = run.tags.get(PARTITION_TAG, "")
            snap.runs.append(
                Run(
                    run_id=run.run_id,
                    job=run.job_name,
                    status=run.status.value,
                    branch=branch,
                    created=record.create_timestamp.timestamp(),
                    trigger=run.tags.get(TRIGGER_TAG, ""),
                    commit=run.tags.get(COMMIT_TAG, ""),
                )
            )
            live_ids.add(run.run_id)
            events = self._finished.get(run.run_id)
            if events is None:
                events = read_run_events(self.instance, run.run_id, branch)
                if run.status.value in FINISHED:
                    self._finished[run.run_id] = events
            snap.steps += events.steps
            snap.checks += events.checks
            snap.materializations += events.materializations
            snap.publishes += events.publishes
        # Runs deleted from the instance (or beyond max_runs) leave the cache.
        for run_id in set(self._finished) - live_ids:
            del self._finished[run_id]
        snap.materializations += self._benchmark_uploads()
        snap.sensors, cursors = self._sensors()
        if self.lakefs is not None:
            try:
                self._read_lakefs(snap, cursors)
            except Exception as exc:  # lakeFS down: the Dagster metrics still go out
                snap.errors["lakefs"] = f"{type(exc).__name__}: {exc}"
        return snap

    def _benchmark_uploads(self) -> list[Materialization]:
        """Materializations a sensor records without a run (device benchmark uploads)."""
        out = []
        for domain in domains.DOMAINS:
            for asset in domain.benchmark_assets:
                result = self.instance.fetch_materializations(
                    dg.AssetKey.from_user_string(asset), limit=self.benchmark_uploads
                )
                out += [
                    _materialization(r.event_log_entry, r.run_id or "", "")
                    for r in result.records
                    if not r.run_id  # those of runs are read with their run
                ]
        return out

    def _sensors(self) -> tuple[list[SensorState], dict[str, dict]]:
        states, cursors = [], {}
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            ticks = self.instance.get_ticks(
                state.instigator_origin_id, state.selector_id, limit=self.recent_ticks
            )
            states.append(
                SensorState(
                    name=state.instigator_name,
                    running=state.status
                    in (InstigatorStatus.RUNNING, InstigatorStatus.DECLARED_IN_CODE),
                    last_tick=max((t.timestamp for t in ticks), default=None),
                    ticks=dict(Counter(t.status.value for t in ticks)),
                )
            )
            if state.instigator_name in domains.commit_sensors():
                cursor = getattr(state.instigator_data, "cursor", None)
                try:
                    cursors[state.instigator_name] = json.loads(cursor) if cursor else {}
                except ValueError:
                    cursors[state.instigator_name] = {}
        return states, cursors

    def _commit_time(self, client: LakeFSClient, commit: str) -> float | None:
        if commit not in self._commit_times:  # commits are immutable: ask once
            try:
                self._commit_times[commit] = float(client.get_commit(commit).creation_date)
            except Exception:
                return None
        return self._commit_times[commit]

    def _read_lakefs(self, snap: Snapshot, cursors: dict[str, dict]) -> None:
        assert self.lakefs is not None
        partitions = set(self.instance.get_dynamic_partitions(PARTITIONS))
        with self.lakefs() as client:
            for run in snap.runs:
                if run.commit:
                    when = self._commit_time(client, run.commit)
                    if when is not None:
                        snap.commit_times[run.commit] = when
            if not cursors:
                return  # no commit sensor has ever run: nothing to compare heads with
            for branch, head in sorted(client.list_branches().items()):
                if branch not in partitions:
                    continue
                when = self._commit_time(client, head)
                if when is None:
                    continue
                seen = all(c.get(branch) == head for c in cursors.values())
                snap.heads.append(BranchHead(branch, head, when, seen))

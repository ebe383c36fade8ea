"""Plain records of what the platform did, as read from the Dagster instance and lakeFS.

The exporter fills one `Snapshot` per scrape; `dfp.monitoring.metrics` turns it into metrics.
Timestamps are Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


@dataclass(frozen=True)
class Run:
    run_id: str
    job: str
    status: str  # DagsterRunStatus name: QUEUED, STARTED, SUCCESS, FAILURE, CANCELED, ...
    branch: str  # the lakeFS branch partition, "" for unpartitioned maintenance runs
    created: float
    trigger: str = ""  # dfp/trigger tag (e.g. lakefs_commit_sensor), "" when launched by hand
    commit: str = ""  # dfp/lakefs_commit tag: the commit a sensor requested this run for


@dataclass(frozen=True)
class Step:
    run_id: str
    step: str
    outcome: str  # success | failure
    seconds: float


@dataclass(frozen=True)
class CheckEvaluation:
    run_id: str
    asset: str
    check: str
    branch: str
    passed: bool
    blocking: bool
    timestamp: float
    metadata: dict[str, float] = field(default_factory=dict)  # numeric metadata only


@dataclass(frozen=True)
class Materialization:
    asset: str
    branch: str
    timestamp: float
    run_id: str = ""  # "" for materializations reported by a sensor (device benchmarks)
    row_count: int | None = None
    metadata: dict[str, float] = field(default_factory=dict)  # numeric metadata only
    labels: dict[str, str] = field(default_factory=dict)  # text metadata worth a label


@dataclass(frozen=True)
class Publish:
    """A write-audit-publish outcome of one run: merged, unchanged or refused."""

    run_id: str
    branch: str
    result: str
    timestamp: float


@dataclass(frozen=True)
class SensorState:
    name: str
    running: bool
    last_tick: float | None  # timestamp of the newest tick, None if it never ticked
    ticks: dict[str, int] = field(default_factory=dict)  # tick status -> count (recent ticks)


@dataclass(frozen=True)
class BranchHead:
    """A partition branch's head commit, and whether lakefs_commit_sensor has looked at it."""

    branch: str
    commit: str
    committed_at: float
    seen_by_sensor: bool


@dataclass
class Snapshot:
    now: float
    runs: list[Run] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    checks: list[CheckEvaluation] = field(default_factory=list)
    materializations: list[Materialization] = field(default_factory=list)
    publishes: list[Publish] = field(default_factory=list)
    sensors: list[SensorState] = field(default_factory=list)
    heads: list[BranchHead] = field(default_factory=list)
    #: commit id -> creation time of the commits that runs were requested for.
    commit_times: dict[str, float] = field(default_factory=dict)
    #: sources that could not be read this scrape (e.g. "lakefs"): exported, not raised.
    errors: dict[str, str] = field(default_factory=dict)

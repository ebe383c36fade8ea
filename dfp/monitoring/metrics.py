"""One `Snapshot` → the Prometheus metric families dfp exports (see deploy/monitoring/).

Every family is computed from scratch per scrape (a custom collector, not process-global
counters), so the exporter can restart without losing history: Dagster's instance is the
store. Counters (`*_total`) count records that never change once written (finished runs,
check evaluations, publishes), so they only grow while the instance keeps its history.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from dfp.monitoring import domains
from dfp.monitoring.snapshot import FINISHED, Snapshot

STEP_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
COMMIT_LATENCY_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
LATENCY_QUANTILES = {"p50_us": "0.5", "p99_us": "0.99"}
#: Runs created this recently count towards the failure ratio. A ratio the exporter computes
#: works from the first failure on; `increase()` over per-label counters in PromQL would miss
#: every first failure of a new job/branch series (a new series has no earlier sample).
FAILURE_WINDOW_S = 3600.0


def _histogram(
    name: str,
    doc: str,
    labels: list[str],
    samples: dict[tuple[str, ...], list[float]],
    buckets: tuple[float, ...],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, values in sorted(samples.items()):
        cumulative = [(str(b), float(sum(1 for v in values if v <= b))) for b in buckets]
        cumulative.append(("+Inf", float(len(values))))
        family.add_metric(list(key), cumulative, sum_value=sum(values))
    return family


def _gauge(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]):
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _counter(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]):
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def run_families(snapshot: Snapshot) -> Iterator[Metric]:
    # `dagster_job`, not `job`: Prometheus sets `job` to the scrape job on every series and
    # would rename an exported one to `exported_job`.
    labels = ["domain", "dagster_job", "branch", "status"]
    current: Counter[tuple[str, ...]] = Counter()
    for run in snapshot.runs:
        current[(domains.domain_of_job(run.job), run.job, run.branch, run.status)] += 1
    yield _gauge("dfp_runs", "Runs in the Dagster instance by current status.", labels, current)
    finished = {k: v for k, v in current.items() if k[3] in FINISHED}
    yield _counter(
        "dfp_runs_finished", "Finished runs (SUCCESS, FAILURE, CANCELED).", labels, finished
    )

    recent: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    for run in snapshot.runs:
        if run.status in FINISHED and snapshot.now - run.created <= FAILURE_WINDOW_S:
            key = (domains.domain_of_job(run.job), run.job)
            recent[key] += 1
            failed[key] += run.status == "FAILURE"
    yield _gauge(
        "dfp_runs_finished_recent",
        f"Runs of each job created in the last {FAILURE_WINDOW_S:.0f} s that finished.",
        ["domain", "dagster_job"],
        dict(recent),
    )
    yield _gauge(
        "dfp_run_failure_ratio",
        f"Failed / finished runs of each job created in the last {FAILURE_WINDOW_S:.0f} s.",
        ["domain", "dagster_job"],
        {k: failed[k] / n for k, n in recent.items()},
    )

    by_id = {run.run_id: run for run in snapshot.runs}
    durations: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for step in snapshot.steps:
        run = by_id.get(step.run_id)
        if run is None:
            continue
        key = (domains.domain_of_job(run.job), run.job, run.branch, step.step, step.outcome)
        durations[key].append(step.seconds)
    yield _histogram(
        "dfp_step_duration_seconds",
        "Step durations (STEP_START to STEP_SUCCESS / STEP_FAILURE).",
        ["domain", "dagster_job", "branch", "step", "outcome"],
        durations,
        STEP_BUCKETS,
    )

    publishes: Counter[tuple[str, ...]] = Counter()
    for publish in snapshot.publishes:
        job = by_id[publish.run_id].job if publish.run_id in by_id else ""
        publishes[(domains.domain_of_job(job), job, publish.branch, publish.result)] += 1
    yield _counter(
        "dfp_publish",
        "Write-audit-publish outcomes: merged (one lakeFS merge), unchanged (nothing to "
        "merge) or refused (a step or check failed: nothing published).",
        ["domain", "dagster_job", "branch", "result"],
        publishes,
    )
    yield from _commit_latency(snapshot)


def _commit_latency(snapshot: Snapshot) -> Iterator[Metric]:
    latency: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for run in snapshot.runs:
        committed = snapshot.commit_times.get(run.commit) if run.commit else None
        if committed is not None:
            key = (domains.domain_of_job(run.job), run.job, run.branch)
            latency[key].append(max(0.0, run.created - committed))
    yield _histogram(
        "dfp_lakefs_commit_to_run_requested_seconds",
        "From a lakeFS commit to the run a sensor requested for it (run creation time).",
        ["domain", "dagster_job", "branch"],
        latency,
        COMMIT_LATENCY_BUCKETS,
    )
    unseen = {
        (head.branch,): 0.0 if head.seen_by_sensor else max(0.0, snapshot.now - head.committed_at)
        for head in snapshot.heads
    }
    yield _gauge(
        "dfp_lakefs_unseen_commit_age_seconds",
        "Age of a partition branch's head commit that lakefs_commit_sensor has not looked at "
        "yet (0 once it has).",
        ["branch"],
        unseen,
    )


def check_families(snapshot: Snapshot) -> Iterator[Metric]:
    labels = ["domain", "asset", "check", "branch", "blocking"]
    latest: dict[tuple[str, ...], tuple[float, bool]] = {}
    totals: Counter[tuple[str, ...]] = Counter()
    for ev in snapshot.checks:
        blocking = "true" if ev.blocking else "false"
        key = (domains.domain_of_asset(ev.asset), ev.asset, ev.check, ev.branch, blocking)
        if key not in latest or ev.timestamp >= latest[key][0]:
            latest[key] = (ev.timestamp, ev.passed)
        totals[(*key, "passed" if ev.passed else "failed")] += 1
    yield _gauge(
        "dfp_asset_check_passed",
        "The latest evaluation of each asset check per branch: 1 passed, 0 failed.",
        labels,
        {k: 1.0 if passed else 0.0 for k, (_, passed) in latest.items()},
    )
    yield _gauge(
        "dfp_asset_check_last_evaluation_timestamp_seconds",
        "When each asset check was last evaluated per branch.",
        labels,
        {k: ts for k, (ts, _) in latest.items()},
    )
    yield _counter(
        "dfp_asset_check_evaluations",
        "Asset check evaluations by result.",
        [*labels, "result"],
        totals,
    )


def _latest_by(items: Iterable, key) -> dict:
    out: dict = {}
    for item in items:
        k = key(item)
        if k not in out or item.timestamp >= out[k].timestamp:
            out[k] = item
    return out


def materialization_families(snapshot: Snapshot) -> Iterator[Metric]:
    labels = ["domain", "asset", "branch"]
    mats = snapshot.materializations
    latest = _latest_by(mats, lambda m: (m.asset, m.branch))
    counts = Counter((domains.domain_of_asset(m.asset), m.asset, m.branch) for m in mats)
    yield _counter("dfp_materializations", "Asset materializations per branch.", labels, counts)
    yield _gauge(
        "dfp_asset_last_materialization_timestamp_seconds",
        "When each asset was last materialized per branch.",
        labels,
        {(domains.domain_of_asset(a), a, b): m.timestamp for (a, b), m in latest.items()},
    )
    yield _gauge(
        "dfp_materialization_rows",
        "Rows of each asset's latest materialization per branch (dagster/row_count).",
        labels,
        {
            (domains.domain_of_asset(a), a, b): float(m.row_count)
            for (a, b), m in latest.items()
            if m.row_count is not None
        },
    )
    yield _gauge(
        "dfp_online_store_rows",
        "Entities in a branch's online feature store (its latest materialization).",
        [*labels, "store"],
        {
            (domains.domain_of_asset(a), a, b, m.labels.get("online_store", "")): float(m.row_count)
            for (a, b), m in latest.items()
            if domains.is_online_store_asset(a) and m.row_count is not None
        },
    )
    yield from _model_families(snapshot)
    yield from _benchmark_families(snapshot)


def _model_families(snapshot: Snapshot) -> Iterator[Metric]:
    status = {run.run_id: run.status for run in snapshot.runs}
    models = [m for m in snapshot.materializations if domains.model_metrics(m.asset)]
    # A green run published its data (write-audit-publish): its model is the branch's model.
    published = _latest_by(
        (m for m in models if status.get(m.run_id) == "SUCCESS"), lambda m: (m.asset, m.branch)
    )
    candidates = _latest_by(models, lambda m: (m.asset, m.branch))
    labels = ["domain", "asset", "branch", "metric"]

    def values(latest: dict) -> dict[tuple[str, ...], float]:
        return {
            (domains.domain_of_asset(a), a, b, metric): m.metadata[metric]
            for (a, b), m in latest.items()
            for metric in domains.model_metrics(a)
            if metric in m.metadata
        }

    yield _gauge(
        "dfp_model_quality",
        "Quality metrics of the model published on each branch (latest green run).",
        labels,
        values(published),
    )
    yield _gauge(
        "dfp_model_candidate_quality",
        "Quality metrics of the latest model trained on each branch, published or not.",
        labels,
        values(candidates),
    )
    floors: dict[tuple[str, ...], float] = {}
    latest_checks = _latest_by(snapshot.checks, lambda c: (c.asset, c.check, c.branch))
    for (asset, _check, branch), ev in sorted(latest_checks.items()):
        for metric, floor_key in domains.model_floor_keys(asset).items():
            if floor_key in ev.metadata:
                floors[(domains.domain_of_asset(asset), asset, branch, metric)] = ev.metadata[
                    floor_key
                ]
    yield _gauge(
        "dfp_model_quality_floor",
        "The quality floor the latest gate check of each model applied, per branch.",
        labels,
        floors,
    )


def _benchmark_families(snapshot: Snapshot) -> Iterator[Metric]:
    uploads = [m for m in snapshot.materializations if domains.is_benchmark_asset(m.asset)]
    latest = _latest_by(uploads, lambda m: (m.asset, m.branch, m.labels.get("device", "")))
    values: dict[tuple[str, ...], float] = {}
    for (asset, branch, device), m in latest.items():
        for key, value in m.metadata.items():
            # <runtime>.<format>.p50_us; another model's keys (<model>.<runtime>.<format>.*,
            # the toxicity exports) have no series of their own yet.
            parts = key.split(".")
            if len(parts) == 3 and parts[2] in LATENCY_QUANTILES:
                runtime, fmt, stat = parts
                labels = (domains.domain_of_asset(asset), branch, device, runtime, fmt)
                values[(*labels, LATENCY_QUANTILES[stat])] = value / 1e6
    yield _gauge(
        "dfp_device_benchmark_latency_seconds",
        "Inference latency quantiles of the latest benchmark upload per device and runtime.",
        ["domain", "branch", "device", "runtime", "format", "quantile"],
        values,
    )


def sensor_families(snapshot: Snapshot) -> Iterator[Metric]:
    labels = ["domain", "sensor"]

    def key(name: str) -> tuple[str, str]:
        return (domains.domain_of_sensor(name), name)

    sensors = snapshot.sensors
    yield _gauge(
        "dfp_sensor_running",
        "1 when the sensor is switched on (RUNNING), else 0.",
        labels,
        {key(s.name): 1.0 if s.running else 0.0 for s in sensors},
    )
    ticked = [s for s in sensors if s.last_tick is not None]
    yield _gauge(
        "dfp_sensor_last_tick_timestamp_seconds",
        "When the sensor last ticked.",
        labels,
        {key(s.name): float(s.last_tick) for s in ticked},  # type: ignore[arg-type]
    )
    yield _gauge(
        "dfp_sensor_lag_seconds",
        "Seconds since the sensor last ticked.",
        labels,
        {key(s.name): max(0.0, snapshot.now - s.last_tick) for s in ticked},  # type: ignore[operator]
    )
    yield _gauge(
        "dfp_sensor_recent_ticks",
        "The sensor's recent ticks (the exporter reads the newest ones) by status.",
        [*labels, "status"],
        {(*key(s.name), status): float(n) for s in sensors for status, n in s.ticks.items()},
    )


def exporter_families(snapshot: Snapshot, sources: Iterable[str]) -> Iterator[Metric]:
    yield _gauge(
        "dfp_exporter_source_up",
        "1 when the exporter could read the source this scrape, else 0.",
        ["source"],
        {(s,): 0.0 if s in snapshot.errors else 1.0 for s in sources},
    )


def families(snapshot: Snapshot, sources: Iterable[str] = ("dagster", "lakefs")) -> list[Metric]:
    """Every metric family of one snapshot."""
    return [
        *run_families(snapshot),
        *check_families(snapshot),
        *materialization_families(snapshot),
        *sensor_families(snapshot),
        *exporter_families(snapshot, sources),
    ]

"""The metric computation of `dfp monitor serve` (dfp.monitoring): snapshots in, samples out."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dfp.monitoring import domains, metrics
from dfp.monitoring.exporter import SnapshotCollector, make_registry, server
from dfp.monitoring.snapshot import (
    BranchHead,
    CheckEvaluation,
    Materialization,
    Publish,
    Run,
    SensorState,
    Snapshot,
    Step,
)
from tests.stack_fixtures import free_port

NOW = 1_800_000_000.0


def samples(snapshot: Snapshot) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in metrics.families(snapshot):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def named(found: dict, name: str) -> dict[frozenset, float]:
    return {labels: v for (n, labels), v in found.items() if n == name}


def run(run_id: str, job="build_all", status="SUCCESS", branch="main", age=60.0, **kw) -> Run:
    return Run(run_id, job, status, branch, NOW - age, **kw)


def test_runs_by_status_job_branch_and_domain():
    snap = Snapshot(
        now=NOW,
        runs=[
            run("a"),
            run("b", status="FAILURE", branch="exp-1"),
            run("c", status="STARTED"),
            run("d", job="create_lakefs_branch", branch=""),
        ],
    )
    found = samples(snap)
    labels = {"domain": "kronodroid", "dagster_job": "build_all", "branch": "main"}
    assert value(found, "dfp_runs", **labels, status="SUCCESS") == 1
    assert value(found, "dfp_runs", **labels, status="STARTED") == 1
    assert value(found, "dfp_runs_finished_total", **labels, status="SUCCESS") == 1
    # A run in flight is not finished yet.
    assert ("dfp_runs_finished_total", frozenset({**labels, "status": "STARTED"}.items())) not in (
        found
    )
    failed = {
        "domain": "kronodroid",
        "dagster_job": "build_all",
        "branch": "exp-1",
        "status": "FAILURE",
    }
    assert value(found, "dfp_runs_finished_total", **failed) == 1
    maintenance = {"domain": "platform", "dagster_job": "create_lakefs_branch", "branch": ""}
    assert value(found, "dfp_runs", **maintenance, status="SUCCESS") == 1


def test_failure_ratio_counts_only_the_last_hours_finished_runs():
    snap = Snapshot(
        now=NOW,
        runs=[
            run("a", status="FAILURE"),
            run("b", status="SUCCESS"),
            run("c", status="FAILURE", branch="exp-1"),
            run("d", status="STARTED"),  # not finished
            run("e", status="SUCCESS", age=2 * 3600),  # too old
        ],
    )
    found = samples(snap)
    job = {"domain": "kronodroid", "dagster_job": "build_all"}
    assert value(found, "dfp_runs_finished_recent", **job) == 3
    assert value(found, "dfp_run_failure_ratio", **job) == pytest.approx(2 / 3)


def test_step_durations_are_a_histogram_per_job_branch_step_and_outcome():
    snap = Snapshot(
        now=NOW,
        runs=[run("a"), run("b")],
        steps=[
            Step("a", "malware_model", "success", 12.0),
            Step("b", "malware_model", "success", 70.0),
            Step("b", "kronodroid_raw", "failure", 0.5),
            Step("gone", "x", "success", 1.0),  # its run is not in the snapshot
        ],
    )
    found = samples(snap)
    labels = {
        "domain": "kronodroid",
        "dagster_job": "build_all",
        "branch": "main",
        "step": "malware_model",
        "outcome": "success",
    }
    assert value(found, "dfp_step_duration_seconds_count", **labels) == 2
    assert value(found, "dfp_step_duration_seconds_sum", **labels) == 82.0
    assert value(found, "dfp_step_duration_seconds_bucket", **labels, le="15.0") == 1
    assert value(found, "dfp_step_duration_seconds_bucket", **labels, le="120.0") == 2
    assert value(found, "dfp_step_duration_seconds_bucket", **labels, le="+Inf") == 2
    failed = {**labels, "step": "kronodroid_raw", "outcome": "failure"}
    assert value(found, "dfp_step_duration_seconds_bucket", **failed, le="1.0") == 1
    assert not [k for k in named(found, "dfp_step_duration_seconds_count") if ("step", "x") in k]


def check(run_id, passed, ts, branch="main", blocking=True, **metadata) -> CheckEvaluation:
    return CheckEvaluation(
        run_id, "malware_model", "temporal_f1_floor", branch, passed, blocking, ts, metadata
    )


def test_the_latest_check_evaluation_is_the_checks_state():
    snap = Snapshot(
        now=NOW,
        checks=[
            check("a", True, NOW - 100),
            check("b", False, NOW - 10),
            check("c", True, NOW - 50, branch="exp-1", blocking=False),
        ],
    )
    found = samples(snap)
    main = {
        "domain": "kronodroid",
        "asset": "malware_model",
        "check": "temporal_f1_floor",
        "branch": "main",
        "blocking": "true",
    }
    assert value(found, "dfp_asset_check_passed", **main) == 0
    assert value(found, "dfp_asset_check_last_evaluation_timestamp_seconds", **main) == NOW - 10
    assert value(found, "dfp_asset_check_evaluations_total", **main, result="passed") == 1
    assert value(found, "dfp_asset_check_evaluations_total", **main, result="failed") == 1
    other = {**main, "branch": "exp-1", "blocking": "false"}
    assert value(found, "dfp_asset_check_passed", **other) == 1


def model(run_id: str, branch: str, ts: float, f1: float) -> Materialization:
    return Materialization(
        "malware_model",
        branch,
        ts,
        run_id,
        row_count=None,
        metadata={"temporal_f1": f1, "temporal_roc_auc": 0.9, "rows": 5.0},
    )


def test_model_quality_of_published_models_candidates_and_floors():
    snap = Snapshot(
        now=NOW,
        runs=[
            run("good"),
            run("bad", status="FAILURE", branch="exp-1"),
            run("ok1", branch="exp-1"),
        ],
        materializations=[
            model("ok1", "exp-1", NOW - 500, 0.85),
            model("bad", "exp-1", NOW - 100, 0.70),
            model("good", "main", NOW - 300, 0.9),
        ],
        checks=[
            check("good", True, NOW - 300, temporal_f1=0.9, f1_floor=0.8),
            check("bad", False, NOW - 100, branch="exp-1", temporal_f1=0.7, f1_floor=1.01),
        ],
    )
    found = samples(snap)
    base = {"domain": "kronodroid", "asset": "malware_model", "metric": "temporal_f1"}
    # The failed run's model was not published: exp-1 still has the earlier one.
    assert value(found, "dfp_model_quality", **base, branch="exp-1") == 0.85
    assert value(found, "dfp_model_candidate_quality", **base, branch="exp-1") == 0.70
    assert value(found, "dfp_model_quality", **base, branch="main") == 0.9
    assert value(
        found, "dfp_model_quality", **{**base, "metric": "temporal_roc_auc"}, branch="main"
    )
    assert value(found, "dfp_model_quality_floor", **base, branch="exp-1") == 1.01
    assert value(found, "dfp_model_quality_floor", **base, branch="main") == 0.8
    # Only the domain's quality metrics become model metrics (not e.g. "rows").
    assert {dict(k)["metric"] for k in named(found, "dfp_model_quality")} == {
        "temporal_f1",
        "temporal_roc_auc",
    }


def test_rows_online_store_and_device_benchmark_latency():
    upload = {"onnxruntime.onnx.p50_us": 40.0, "onnxruntime.onnx.p99_us": 90.0, "iterations": 5.0}
    snap = Snapshot(
        now=NOW,
        runs=[run("a")],
        materializations=[
            Materialization("kronodroid_raw", "main", NOW - 90, "a", row_count=100),
            Materialization("kronodroid_raw", "main", NOW - 50, "a", row_count=120),
            Materialization(
                "feast_online", "main", NOW - 40, "a", 120, labels={"online_store": "sqlite"}
            ),
            Materialization(
                "device_benchmarks", "main", NOW - 30, metadata={"onnxruntime.onnx.p50_us": 1e6}
            ),
            Materialization(
                "device_benchmarks", "main", NOW - 20, metadata=upload, labels={"device": "pixel"}
            ),
            Materialization(
                "device_benchmarks", "main", NOW - 25, metadata=upload, labels={"device": "host"}
            ),
        ],
    )
    found = samples(snap)
    raw = {"domain": "kronodroid", "asset": "kronodroid_raw", "branch": "main"}
    assert value(found, "dfp_materialization_rows", **raw) == 120
    assert value(found, "dfp_materializations_total", **raw) == 2
    assert value(found, "dfp_asset_last_materialization_timestamp_seconds", **raw) == NOW - 50
    online = {"domain": "kronodroid", "asset": "feast_online", "branch": "main", "store": "sqlite"}
    assert value(found, "dfp_online_store_rows", **online) == 120
    pixel = {
        "domain": "kronodroid",
        "branch": "main",
        "device": "pixel",
        "runtime": "onnxruntime",
        "format": "onnx",
    }
    assert value(found, "dfp_device_benchmark_latency_seconds", **pixel, quantile="0.5") == 40e-6
    assert value(found, "dfp_device_benchmark_latency_seconds", **pixel, quantile="0.99") == 90e-6
    latencies = named(found, "dfp_device_benchmark_latency_seconds")
    # The latest upload per device: pixel and host p50/p99, the device-less one's p50.
    assert sorted((dict(k)["device"], dict(k)["quantile"]) for k in latencies) == [
        ("", "0.5"),
        ("host", "0.5"),
        ("host", "0.99"),
        ("pixel", "0.5"),
        ("pixel", "0.99"),
    ]


def test_publishes_commit_latency_and_unseen_heads():
    snap = Snapshot(
        now=NOW,
        runs=[
            run("a", age=100, commit="c1", trigger="lakefs_commit_sensor", branch="exp-2"),
            run("b", status="FAILURE", branch="exp-1"),
            run("c", commit="unknown"),  # its commit time could not be read
        ],
        publishes=[
            Publish("a", "exp-2", "merged", NOW - 5),
            Publish("b", "exp-1", "refused", NOW - 5),
        ],
        commit_times={"c1": NOW - 112},
        heads=[
            BranchHead("main", "h1", NOW - 1000, seen_by_sensor=True),
            BranchHead("exp-3", "h2", NOW - 400, seen_by_sensor=False),
        ],
    )
    found = samples(snap)
    job = {"domain": "kronodroid", "dagster_job": "build_all"}
    assert value(found, "dfp_publish_total", **job, branch="exp-2", result="merged") == 1
    assert value(found, "dfp_publish_total", **job, branch="exp-1", result="refused") == 1
    latency = {**job, "branch": "exp-2"}
    assert value(found, "dfp_lakefs_commit_to_run_requested_seconds_sum", **latency) == 12.0
    assert (
        value(found, "dfp_lakefs_commit_to_run_requested_seconds_bucket", **latency, le="10.0") == 0
    )
    assert (
        value(found, "dfp_lakefs_commit_to_run_requested_seconds_bucket", **latency, le="30.0") == 1
    )
    assert len(named(found, "dfp_lakefs_commit_to_run_requested_seconds_count")) == 1
    assert value(found, "dfp_lakefs_unseen_commit_age_seconds", branch="main") == 0
    assert value(found, "dfp_lakefs_unseen_commit_age_seconds", branch="exp-3") == 400


def test_sensor_state_lag_and_ticks():
    snap = Snapshot(
        now=NOW,
        sensors=[
            SensorState("lakefs_commit_sensor", True, NOW - 7, {"SKIPPED": 3, "SUCCESS": 1}),
            SensorState("lakefs_branch_sensor", False, None),
        ],
    )
    found = samples(snap)
    commit = {"domain": "kronodroid", "sensor": "lakefs_commit_sensor"}
    assert value(found, "dfp_sensor_running", **commit) == 1
    assert value(found, "dfp_sensor_lag_seconds", **commit) == 7
    assert value(found, "dfp_sensor_last_tick_timestamp_seconds", **commit) == NOW - 7
    assert value(found, "dfp_sensor_recent_ticks", **commit, status="SKIPPED") == 3
    branch = {"domain": "platform", "sensor": "lakefs_branch_sensor"}
    assert value(found, "dfp_sensor_running", **branch) == 0
    assert ("dfp_sensor_lag_seconds", frozenset(branch.items())) not in found  # never ticked


def test_domains_come_from_one_mapping_that_a_new_domain_extends(monkeypatch):
    assert domains.domain_of_asset("marts/mart_app_features") == "kronodroid"
    assert domains.domain_of_asset("something_else") == domains.PLATFORM
    assert domains.domain_of_sensor("lakefs_branch_sensor") == domains.PLATFORM
    toxic = domains.Domain(
        name="toxic_comments",
        assets=("toxic_*",),
        jobs=("build_toxic",),
        models={"toxic_model": ("f1",)},
    )
    monkeypatch.setattr(domains, "DOMAINS", (*domains.DOMAINS, toxic))
    snap = Snapshot(
        now=NOW,
        runs=[run("t", job="build_toxic")],
        materializations=[
            Materialization("toxic_model", "main", NOW, "t", metadata={"f1": 0.7}),
            Materialization("toxic_raw", "main", NOW, "t", row_count=3),
        ],
    )
    found = samples(snap)
    assert value(
        found,
        "dfp_runs",
        domain="toxic_comments",
        dagster_job="build_toxic",
        branch="main",
        status="SUCCESS",
    )
    assert (
        value(
            found,
            "dfp_model_quality",
            domain="toxic_comments",
            asset="toxic_model",
            branch="main",
            metric="f1",
        )
        == 0.7
    )
    assert (
        value(
            found,
            "dfp_materialization_rows",
            domain="toxic_comments",
            asset="toxic_raw",
            branch="main",
        )
        == 3
    )


def test_exporter_serves_the_snapshot_and_survives_a_failed_read():
    reads = iter(
        [
            RuntimeError("instance unreachable"),
            Snapshot(now=NOW, runs=[run("a")]),
            RuntimeError("database is locked"),
        ]
    )

    def read() -> Snapshot:
        item = next(reads)
        if isinstance(item, Exception):
            raise item
        return item

    registry = make_registry(SnapshotCollector(read, ("dagster",)))
    port = free_port()
    httpd = server(registry, "127.0.0.1", port)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:

        def scrape() -> dict[str, list]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                text = resp.read().decode()
            return {f.name: f.samples for f in text_string_to_metric_families(text)}

        never = scrape()  # nothing read yet: only the exporter's own state
        assert never["dfp_exporter_up"][0].value == 0 and "dfp_runs" not in never
        first = scrape()
        assert first["dfp_exporter_up"][0].value == 1
        assert first["dfp_runs"][0].labels["dagster_job"] == "build_all"
        second = scrape()
        assert second["dfp_exporter_up"][0].value == 0
        # The last good snapshot is served meanwhile: its series do not go stale.
        assert second["dfp_runs"][0].labels["dagster_job"] == "build_all"
        assert second["dfp_exporter_last_success_timestamp_seconds"][0].value > 0
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_exporter_tags_are_the_sensors():
    from dfp_assets.kronodroid.automation import COMMIT_TAG, TRIGGER_TAG
    from dfp_assets.platform import monitoring

    assert (monitoring.COMMIT_TAG, monitoring.TRIGGER_TAG) == (COMMIT_TAG, TRIGGER_TAG)
    assert domains.commit_sensors() == ("lakefs_commit_sensor",)

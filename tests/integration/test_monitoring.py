"""Monitoring end to end: the real Prometheus (with Alertmanager, Pushgateway and
node-exporter from Debian's packages, started by the stack manager) scrapes `dfp monitor
serve` while build_all runs on main and fails on a branch, a real daemon ticks the sensors
(a landing commit requests a run; a device benchmark upload is recorded), and then
Prometheus's query API returns the runs, checks, publishes and model metrics with the right
labels, the model-floor alert fires, and every Grafana panel's query returns data."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import pytest
import requests
from click.testing import CliRunner

from dfp.cli import main
from dfp.kronodroid.sources import LANDING_PREFIX
from dfp.stack.services import (
    MONITORING_DIR,
    MONITORING_SERVICES,
    MonitoringServices,
    StackError,
    prometheus_bin,
)
from dfp_assets.kronodroid.automation import COMMIT_TAG
from tests.integration import dagster_processes as procs
from tests.integration.jobs import build_everything
from tests.stack_fixtures import free_port, missing_service

pytestmark = pytest.mark.integration

DATA = {"source": "synthetic", "synthetic_scale": 0.03, "synthetic_seed": 21}
FAST = {"epochs": 3, "f1_floor": 0.5}
DASHBOARDS = sorted((MONITORING_DIR / "grafana" / "dashboards").glob("*.json"))
#: What the dashboards' template variables stand for in the test: every value.
VARIABLES = {"$branch": ".*", "$domain": ".*", "$instance": ".*"}


@pytest.fixture
def monitoring(lakefs, instance, tmp_path, monkeypatch) -> Iterator[MonitoringServices]:
    for component in ("prometheus", "alertmanager", "pushgateway", "node-exporter"):
        try:
            prometheus_bin(component)
        except StackError as exc:
            missing_service(str(exc))
    for var in (
        "DFP_PROMETHEUS_PORT",
        "DFP_PUSHGATEWAY_PORT",
        "DFP_ALERTMANAGER_PORT",
        "DFP_NODE_EXPORTER_PORT",
        "DFP_MONITOR_PORT",
    ):
        monkeypatch.setenv(var, str(free_port()))
    monkeypatch.setenv("DFP_PROMETHEUS_SCRAPE_INTERVAL", "1s")
    # The exporter reads this test's instance (and its lakeFS repository, from the env).
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    services = MonitoringServices(tmp_path / "monitoring", lambda: set(MONITORING_SERVICES))
    started = []
    try:
        for service in services.services().values():
            service.start()
            started.append(service)
        yield services
    finally:
        for service in reversed(started):
            service.stop()
        # Shown by pytest when the test failed: what the exporter and Prometheus said.
        for service in started:
            if service.name in ("monitor", "prometheus"):
                print(f"--- {service.log_file}\n{service.log_file.read_text()[-4000:]}")


def query(prometheus: str, expr: str) -> list[dict]:
    reply = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=30)
    body = reply.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def one(prometheus: str, expr: str) -> float:
    result = query(prometheus, expr)
    # On a mismatch, show every series of the metric (which label differs).
    assert len(result) == 1, (expr, result, query(prometheus, expr.split("{")[0]))
    return float(result[0]["value"][1])


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in VARIABLES.items():
                    expr = expr.replace(var, value)
                out.append((path.name, panel["title"], expr))
    return out


def test_prometheus_sees_runs_checks_models_and_every_panel_has_data(
    lakefs, instance, monitoring, tmp_path
):
    prometheus = monitoring.prometheus_url

    built = build_everything(instance, "main", DATA, FAST)
    assert built.success
    model = next(
        m.metadata
        for e in built.get_asset_materialization_events()
        for m in [e.event_specific_data.materialization]
        if m.asset_key.to_user_string() == "malware_model"
    )
    raw_rows = next(
        m.metadata["dagster/row_count"].value
        for e in built.get_asset_materialization_events()
        for m in [e.event_specific_data.materialization]
        if m.asset_key.to_user_string() == "kronodroid_raw"
    )
    lakefs.create_branch("exp-fail", "main")
    # The same data (everything reused) but a floor no model reaches: the gate refuses.
    failed = build_everything(instance, "exp-fail", DATA, {**FAST, "f1_floor": 1.01})
    assert not failed.success

    # A device benchmark on a branch of main (recorded by the daemon's sensor below).
    lakefs.create_branch("exp-bench", "main")
    instance.add_dynamic_partitions("lakefs_branch", ["exp-bench"])
    bench = CliRunner().invoke(
        main,
        ["devicefarm", "run", "--device", "host", "--branch", "exp-bench", "--upload", "lakefs"]
        + ["--iterations", "20", "--warmup", "2"],
    )
    assert bench.exit_code == 0, bench.output

    with procs.daemon(instance.root_directory, tmp_path):
        daemon_log = tmp_path / "daemon.log"
        procs.wait_for(
            "the commit sensor's first tick",
            lambda: procs.sensor_ticks(instance, "lakefs_commit_sensor"),
        )
        # A user pushes (broken) landing files to a new branch: the sensor requests build_all.
        lakefs.create_branch("exp-land", "main")
        lakefs.upload(
            "exp-land", f"{LANDING_PREFIX}kronodroid_real_device.csv", b"sha256,Malware\n"
        )
        commit = lakefs.commit("exp-land", "new landing files")
        procs.wait_for(
            "the run requested for the landing commit",
            lambda: instance.get_runs(dg.RunsFilter(tags={COMMIT_TAG: commit})),
            timeout=240,
            detail=lambda: daemon_log.read_text()[-3000:],
        )

        # Prometheus has scraped all of it (1 s scrapes; the exporter reads on each).
        needed = [
            'dfp_runs_finished_total{branch="exp-fail"}',
            'dfp_lakefs_commit_to_run_requested_seconds_count{branch="exp-land"}',
            'dfp_device_benchmark_latency_seconds{branch="exp-bench"}',
            'dfp_sensor_lag_seconds{sensor="lakefs_commit_sensor"}',
            'ALERTS{alertname="DfpModelBelowFloor", alertstate="firing"}',
        ]
        for expr in needed:
            procs.wait_for(
                f"Prometheus to return {expr}", lambda expr=expr: query(prometheus, expr)
            )

        assert one(prometheus, "dfp_exporter_up") == 1
        labels = 'domain="kronodroid", dagster_job="build_all"'
        assert (
            one(prometheus, f'dfp_runs_finished_total{{{labels}, branch="main", status="SUCCESS"}}')
            == 1
        )
        assert (
            one(
                prometheus,
                f'dfp_runs_finished_total{{{labels}, branch="exp-fail", status="FAILURE"}}',
            )
            == 1
        )
        assert (
            one(prometheus, f'dfp_publish_total{{{labels}, branch="main", result="merged"}}') == 1
        )
        assert (
            one(prometheus, f'dfp_publish_total{{{labels}, branch="exp-fail", result="refused"}}')
            == 1
        )

        gate = (
            'domain="kronodroid", asset="malware_model", check="temporal_f1_floor", blocking="true"'
        )
        assert one(prometheus, f'dfp_asset_check_passed{{{gate}, branch="main"}}') == 1
        assert one(prometheus, f'dfp_asset_check_passed{{{gate}, branch="exp-fail"}}') == 0
        assert (
            one(
                prometheus,
                f'dfp_asset_check_evaluations_total{{{gate}, branch="exp-fail", result="failed"}}',
            )
            == 1
        )
        # Every check passed on main, including the raw audit and the dbt tests.
        main_checks = query(prometheus, 'dfp_asset_check_passed{branch="main"}')
        assert len(main_checks) > 20 and all(r["value"][1] == "1" for r in main_checks)

        f1 = 'domain="kronodroid", asset="malware_model", metric="temporal_f1"'
        assert one(prometheus, f'dfp_model_quality{{{f1}, branch="main"}}') == pytest.approx(
            model["temporal_f1"].value
        )
        auc = 'domain="kronodroid", asset="malware_model", metric="temporal_roc_auc"'
        assert one(prometheus, f'dfp_model_quality{{{auc}, branch="main"}}') == pytest.approx(
            model["temporal_roc_auc"].value
        )
        # The refused model is no branch's model, but it is the branch's latest candidate.
        assert query(prometheus, 'dfp_model_quality{branch="exp-fail"}') == []
        assert one(prometheus, f'dfp_model_candidate_quality{{{f1}, branch="exp-fail"}}') == (
            pytest.approx(model["temporal_f1"].value)
        )
        assert one(prometheus, f'dfp_model_quality_floor{{{f1}, branch="exp-fail"}}') == 1.01
        firing = query(prometheus, 'ALERTS{alertstate="firing"}')
        assert {(a["metric"]["alertname"], a["metric"].get("branch")) for a in firing} >= {
            ("DfpModelBelowFloor", "exp-fail")
        }
        assert not [a for a in firing if a["metric"]["alertname"] == "DfpBlockingCheckFailedOnMain"]

        raw = 'domain="kronodroid", asset="kronodroid_raw", branch="main"'
        assert one(prometheus, f"dfp_materialization_rows{{{raw}}}") == raw_rows
        assert one(prometheus, 'dfp_online_store_rows{branch="main"}') > 0
        steps = query(
            prometheus, 'dfp_step_duration_seconds_count{branch="main", outcome="success"}'
        )
        assert {r["metric"]["step"] for r in steps} >= {"kronodroid_raw", "malware_model"}
        latency = query(prometheus, 'dfp_device_benchmark_latency_seconds{branch="exp-bench"}')
        (device,) = {r["metric"]["device"] for r in latency}  # the host profile: host-<hostname>
        assert device.startswith("host-")
        assert {r["metric"]["quantile"] for r in latency} == {"0.5", "0.99"}
        assert query(prometheus, "node_memory_MemAvailable_bytes")  # node-exporter scraped

        # Alertmanager received the firing alert from Prometheus.
        alerts = procs.wait_for(
            "Alertmanager to hold DfpModelBelowFloor",
            lambda: [
                a
                for a in requests.get(
                    f"{monitoring.alertmanager_url}/api/v2/alerts", timeout=10
                ).json()
                if a["labels"]["alertname"] == "DfpModelBelowFloor"
            ],
        )
        assert alerts[0]["labels"]["branch"] == "exp-fail"

        # Every panel of every dashboard returns data.
        empty = [
            (d, title, expr) for d, title, expr in panel_queries() if not query(prometheus, expr)
        ]
        assert not empty, empty

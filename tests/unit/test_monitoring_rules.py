"""The alert rules and Prometheus/Alertmanager configs under deploy/monitoring/, checked by
the real tools: `promtool check rules|config`, `promtool test rules` (each alert fires on its
condition and stays silent without it), `amtool check-config`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dfp.stack.services import MONITORING_DIR, MonitoringPorts, prometheus_bin, prometheus_config
from tests.stack_fixtures import missing_service

RULES = sorted((MONITORING_DIR / "rules").glob("*.rules.yml"))
RULE_TESTS = sorted((MONITORING_DIR / "tests").glob("*.test.yml"))
ALL_SERVICES = {"monitor", "node-exporter", "pushgateway", "alertmanager", "prometheus"}


@pytest.fixture(scope="module")
def promtool() -> str:
    from dfp.stack.services import StackError

    try:
        return str(prometheus_bin("promtool"))
    except StackError as exc:
        missing_service(str(exc))
        raise


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)


def alerts(path: Path) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def test_rules_pass_promtool_check(promtool):
    proc = _run([promtool, "check", "rules", *map(str, RULES)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {r["alert"] for p in RULES for r in alerts(p)} >= {
        "HostMemoryLow",
        "HostCpuHigh",
        "HostDiskLow",
        "DfpBlockingCheckFailedOnMain",
        "DfpRunFailureRateHigh",
        "DfpSensorStoppedTicking",
        "DfpCommitNotPickedUp",
        "DfpModelBelowFloor",
    }


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_tests_pass(promtool, path: Path):
    proc = _run([promtool, "test", "rules", path.name], cwd=path.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    cases: dict[str, dict[str, int]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "silent"
                counts = cases.setdefault(case["alertname"], {"fires": 0, "silent": 0})
                counts[kind] += 1
    for alert in {r["alert"] for p in RULES for r in alerts(p)}:
        assert cases.get(alert, {}).get("fires"), f"{alert}: no test where it fires"
        assert cases.get(alert, {}).get("silent"), f"{alert}: no test where it stays silent"


def test_a_broken_rule_test_fails(promtool, tmp_path):
    """The rule tests could fail: an expectation the rule does not meet is reported."""
    source = MONITORING_DIR / "tests" / "platform.test.yml"
    doc = yaml.safe_load(source.read_text())
    doc["rule_files"] = [str(MONITORING_DIR / "rules" / "platform.rules.yml")]
    for test in doc["tests"]:
        for case in test["alert_rule_test"]:
            if case["alertname"] == "DfpModelBelowFloor" and not case["exp_alerts"]:
                case["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(doc))
    proc = _run([promtool, "test", "rules", str(broken)])
    assert proc.returncode != 0
    assert "DfpModelBelowFloor" in proc.stdout + proc.stderr


def test_compose_prometheus_config_passes_promtool(promtool):
    proc = _run([promtool, "check", "config", "prometheus.yml"], cwd=MONITORING_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_local_prometheus_config_passes_promtool(promtool, tmp_path):
    config = prometheus_config(MonitoringPorts(), ALL_SERVICES, "2s")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    proc = _run([promtool, "check", "config", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_local_and_deployed_prometheus_scrape_the_same_jobs():
    deployed = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
    local = prometheus_config(MonitoringPorts(), ALL_SERVICES)
    jobs = {j["job_name"]: j for j in deployed["scrape_configs"]}
    assert set(jobs) == {j["job_name"] for j in local["scrape_configs"]}
    for job in local["scrape_configs"]:
        assert job.get("honor_labels") == jobs[job["job_name"]].get("honor_labels")
        (targets,) = [c["targets"] for c in job["static_configs"]]
        assert all(t.startswith("127.0.0.1:") for t in targets)  # loopback only
    assert [Path(p).name for p in local["rule_files"]] == [p.name for p in RULES]


def test_local_prometheus_scrapes_only_the_enabled_services():
    config = prometheus_config(MonitoringPorts(monitor=9999), {"prometheus", "monitor"})
    assert [j["job_name"] for j in config["scrape_configs"]] == ["prometheus", "dfp"]
    assert config["scrape_configs"][1]["static_configs"][0]["targets"] == ["127.0.0.1:9999"]
    assert "alerting" not in config


def test_alertmanager_config_passes_amtool():
    amtool = shutil.which("amtool")
    if amtool is None:
        missing_service("amtool not found: install Debian's prometheus-alertmanager package")
    proc = _run([str(amtool), "check-config", str(MONITORING_DIR / "alertmanager.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the same files on docker-compose and Kubernetes ------------------------------------------
def test_kubernetes_manifest_is_rendered_from_deploy_monitoring():
    from tests.unit.test_deploy import load_module

    render = load_module(
        MONITORING_DIR.parent / "k8s" / "render_monitoring.py", "dfp_render_monitoring"
    )
    committed = (MONITORING_DIR.parent / "k8s" / "monitoring.yaml").read_text()
    assert committed == render.render(), "run: python3 deploy/k8s/render_monitoring.py"
    maps = {
        d["metadata"]["name"]: d["data"]
        for d in yaml.safe_load_all(committed)
        if d and d["kind"] == "ConfigMap"
    }
    assert maps["prometheus-rules"] == {p.name: p.read_text() for p in RULES}
    assert (
        maps["alertmanager-config"]["alertmanager.yml"]
        == (MONITORING_DIR / "alertmanager.yml").read_text()
    )


def test_compose_mounts_the_monitoring_files():
    from dfp.settings import PROJECT_ROOT

    services = yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())["services"]
    prometheus = services["prometheus"]["volumes"]
    assert "./deploy/monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus
    assert "./deploy/monitoring/rules:/etc/prometheus/rules:ro" in prometheus
    grafana = services["grafana"]["volumes"]
    assert "./deploy/monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert services["dfp-monitor"]["command"][:3] == ["dfp", "monitor", "serve"]
    # deploy/monitoring/prometheus.yml scrapes the compose service names and ports.
    deployed = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
    for job in deployed["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host = target.split(":")[0]
            assert host == "localhost" or host in services, target

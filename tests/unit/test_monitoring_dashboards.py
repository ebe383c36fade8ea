"""The Grafana dashboards and provisioning files under deploy/monitoring/grafana/ (no Grafana
here: structure, the datasource they use, PromQL syntax by promtool, and that every dfp
metric they query is one the exporter serves). tests/integration/test_monitoring.py runs
every panel's query against a real Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from dfp.monitoring.metrics import families
from dfp.monitoring.snapshot import Snapshot
from dfp.stack.services import MONITORING_DIR, StackError, prometheus_bin
from tests.stack_fixtures import missing_service

GRAFANA = MONITORING_DIR / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b(dfp_[a-z0-9_]+)")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def targets(dashboard: dict) -> list[dict]:
    return [t for p in dashboard["panels"] for t in p["targets"]]


def datasource_uid() -> str:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = doc["datasources"]
    assert source["type"] == "prometheus"
    return source["uid"]


def test_there_are_platform_and_machine_dashboards():
    assert {load(p)["uid"] for p in DASHBOARDS} == {"dfp-platform", "dfp-node"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path):
    dashboard = load(path)
    uid = datasource_uid()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= defined, (panel["title"], used - defined)
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid


def test_dashboards_provider_points_at_a_folder():
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dfp.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_every_dfp_metric_in_a_dashboard_is_served_by_the_exporter():
    served = {f.name for f in families(Snapshot(now=0.0))} | {"dfp_exporter_up"}
    served |= {"dfp_exporter_scrape_duration_seconds"}
    for path in DASHBOARDS:
        for target in targets(load(path)):
            for name in METRIC.findall(target["expr"]):
                base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
                assert name in served or base in served, (path.name, name)


def test_every_panel_query_is_valid_promql(tmp_path):
    """promtool parses each query (as a recording rule) with the template variables set."""
    try:
        promtool = str(prometheus_bin("promtool"))
    except StackError as exc:
        missing_service(str(exc))
    rules = []
    for path in DASHBOARDS:
        for i, target in enumerate(targets(load(path))):
            expr = target["expr"].replace("$branch", ".*").replace("$domain", ".*")
            expr = expr.replace("$instance", ".*")
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:{i}", "expr": expr})
    rule_file = tmp_path / "dashboards.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""The monitoring services of `dfp stack`: only when listed, loopback only, state in DFP_HOME."""

from __future__ import annotations

import pytest

from dfp.stack import services
from dfp.stack.services import MONITORING_SERVICES, LocalStack


def test_monitoring_services_start_only_when_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("DFP_STACK_SERVICES", "lakefs")
    assert [s.name for s in LocalStack(tmp_path).services] == ["lakefs"]
    monkeypatch.setenv("DFP_STACK_SERVICES", "lakefs,prometheus,monitor")
    # Prometheus after the exporter it scrapes, whatever the order listed.
    assert [s.name for s in LocalStack(tmp_path).services] == ["lakefs", "monitor", "prometheus"]


def test_monitoring_services_bind_loopback_and_keep_state_under_dfp_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DFP_STACK_SERVICES", ",".join(MONITORING_SERVICES))
    monkeypatch.setenv("DFP_PROMETHEUS_PORT", "19999")
    monkeypatch.setattr(services, "prometheus_bin", lambda name: tmp_path / name)
    stack = LocalStack(tmp_path)
    by_name = {s.name: s for s in stack.services}
    assert set(MONITORING_SERVICES) <= set(by_name)
    for name in MONITORING_SERVICES:
        service = by_name[name]
        assert service.state_dir.is_relative_to(tmp_path / "state"), name
        assert service.url.startswith("http://127.0.0.1:"), name
        listen = [a for a in service.argv() if "listen-address" in a or a.isdigit()]
        assert listen and all("0.0.0.0" not in a and not a.startswith(":") for a in listen), name
    assert "--web.listen-address=127.0.0.1:19999" in by_name["prometheus"].argv()
    # Alertmanager runs alone: no cluster port opened on any interface.
    assert "--cluster.listen-address=" in by_name["alertmanager"].argv()


def test_missing_prometheus_binary_says_which_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(services, "PROMETHEUS_BINARIES", {"pushgateway": str(tmp_path / "x")})
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(services.StackError, match="apt-get install prometheus-pushgateway"):
        services.prometheus_bin("pushgateway")

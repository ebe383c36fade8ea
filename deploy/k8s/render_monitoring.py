"""Write deploy/k8s/monitoring.yaml from deploy/monitoring/ (the files Prometheus and
Alertmanager read are embedded in ConfigMaps, so the cluster runs exactly what the repository
tests with promtool). Run after changing anything under deploy/monitoring/:

    python3 deploy/k8s/render_monitoring.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
MONITORING = HERE.parent / "monitoring"
OUTPUT = HERE / "monitoring.yaml"
DFP_IMAGE = "dfp:0.1.0"
#: Upstream images of the versions Debian packages (what the local stack runs).
IMAGES = {
    "prometheus": "prom/prometheus:v2.42.0",
    "alertmanager": "prom/alertmanager:v0.25.0",
    "pushgateway": "prom/pushgateway:v1.5.1",
    "node-exporter": "prom/node-exporter:v1.5.0",
}
HEADER = """\
# Monitoring on Kubernetes: dfp's exporter (reading the Helm release's Dagster instance and
# lakeFS), Prometheus with dfp's alert rules, Alertmanager, Pushgateway and node-exporter (a
# DaemonSet: every node's memory, CPU and disks). GENERATED from deploy/monitoring/ by
# `python3 deploy/k8s/render_monitoring.py`: edit the sources, then run it.
# Grafana: point yours at http://prometheus:9090 with deploy/monitoring/grafana/.
"""
#: The exporter's view of the Dagster instance: the Helm release's Postgres (read only).
INSTANCE = """\
telemetry:
  enabled: false
storage:
  postgres:
    postgres_db:
      hostname: postgres
      port: 5432
      username: dagster
      password:
        env: DAGSTER_PG_PASSWORD
      db_name: dagster
      scheme: postgresql+psycopg2
"""


class _Literal(str):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|")
)


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "dfp"}


def _config_map(name: str, app: str, files: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": _labels(app)},
        "data": {key: _Literal(text) for key, text in files.items()},
    }


def _service(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }


def _workload(
    name: str,
    container: dict[str, Any],
    volumes: list[dict[str, Any]] | None = None,
    kind: str = "Deployment",
    pod: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [container], **(pod or {})}
    if volumes:
        spec["volumes"] = volumes
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": {"metadata": {"labels": _labels(name)}, "spec": spec},
    }
    if kind == "Deployment":
        body = {"replicas": 1, **body}
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": body,
    }


def _probe(path: str, delay: int | None = None) -> dict[str, Any]:
    probe: dict[str, Any] = {"httpGet": {"path": path, "port": "http"}, "periodSeconds": 10}
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}}


def documents() -> list[dict[str, Any]]:
    rules = {p.name: p.read_text() for p in sorted((MONITORING / "rules").glob("*.rules.yml"))}
    prometheus_yml = (MONITORING / "prometheus.yml").read_text()
    alertmanager_yml = (MONITORING / "alertmanager.yml").read_text()
    return [
        _config_map("prometheus-config", "prometheus", {"prometheus.yml": prometheus_yml}),
        _config_map("prometheus-rules", "prometheus", rules),
        _config_map("alertmanager-config", "alertmanager", {"alertmanager.yml": alertmanager_yml}),
        _config_map("dfp-monitor-instance", "dfp-monitor", {"dagster.yaml": INSTANCE}),
        _service("dfp-monitor", 9470),
        _workload(
            "dfp-monitor",
            {
                "name": "exporter",
                "image": DFP_IMAGE,
                "command": ["dfp", "monitor", "serve", "--host", "0.0.0.0", "--port", "9470"],
                "env": [
                    {"name": "DAGSTER_HOME", "value": "/opt/dagster/dagster_home"},
                    {
                        "name": "DAGSTER_PG_PASSWORD",
                        "valueFrom": {
                            "secretKeyRef": {
                                "name": "dagster-postgresql-secret",
                                "key": "postgresql-password",
                            }
                        },
                    },
                ],
                "envFrom": [
                    {"configMapRef": {"name": "dfp-env"}},
                    {"secretRef": {"name": "dfp-secrets"}},
                ],
                "ports": [{"name": "http", "containerPort": 9470}],
                "volumeMounts": [{"name": "instance", "mountPath": "/opt/dagster/dagster_home"}],
                "readinessProbe": _probe("/metrics"),
                "livenessProbe": _probe("/metrics", delay=60),
                "resources": _resources("100m", "512Mi"),
            },
            [{"name": "instance", "configMap": {"name": "dfp-monitor-instance"}}],
        ),
        _service("prometheus", 9090),
        _workload(
            "prometheus",
            {
                "name": "prometheus",
                "image": IMAGES["prometheus"],
                "args": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    "--storage.tsdb.retention.time=30d",
                ],
                "ports": [{"name": "http", "containerPort": 9090}],
                "volumeMounts": [
                    {
                        "name": "config",
                        "mountPath": "/etc/prometheus/prometheus.yml",
                        "subPath": "prometheus.yml",
                    },
                    {"name": "rules", "mountPath": "/etc/prometheus/rules"},
                    {"name": "data", "mountPath": "/prometheus"},
                ],
                "readinessProbe": _probe("/-/ready"),
                "livenessProbe": _probe("/-/healthy", delay=30),
                "resources": _resources("200m", "512Mi"),
            },
            [
                {"name": "config", "configMap": {"name": "prometheus-config"}},
                {"name": "rules", "configMap": {"name": "prometheus-rules"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "prometheus-data"}},
            ],
        ),
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "prometheus-data", "labels": _labels("prometheus")},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
        _service("alertmanager", 9093),
        _workload(
            "alertmanager",
            {
                "name": "alertmanager",
                "image": IMAGES["alertmanager"],
                "args": [
                    "--config.file=/etc/alertmanager/alertmanager.yml",
                    "--storage.path=/alertmanager",
                    "--cluster.listen-address=",
                ],
                "ports": [{"name": "http", "containerPort": 9093}],
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/alertmanager"},
                    {"name": "data", "mountPath": "/alertmanager"},
                ],
                "readinessProbe": _probe("/-/ready"),
                "resources": _resources("50m", "64Mi"),
            },
            [
                {"name": "config", "configMap": {"name": "alertmanager-config"}},
                {"name": "data", "emptyDir": {}},
            ],
        ),
        _service("pushgateway", 9091),
        _workload(
            "pushgateway",
            {
                "name": "pushgateway",
                "image": IMAGES["pushgateway"],
                "ports": [{"name": "http", "containerPort": 9091}],
                "readinessProbe": _probe("/-/ready"),
                "resources": _resources("50m", "64Mi"),
            },
        ),
        _service("node-exporter", 9100),
        _workload(
            "node-exporter",
            {
                "name": "node-exporter",
                "image": IMAGES["node-exporter"],
                "args": ["--path.rootfs=/host"],
                "ports": [{"name": "http", "containerPort": 9100}],
                "volumeMounts": [
                    {
                        "name": "root",
                        "mountPath": "/host",
                        "readOnly": True,
                        "mountPropagation": "HostToContainer",
                    }
                ],
                "readinessProbe": _probe("/metrics"),
                "resources": _resources("50m", "64Mi"),
            },
            [{"name": "root", "hostPath": {"path": "/"}}],
            kind="DaemonSet",
            pod={"hostPID": True},
        ),
    ]


def render() -> str:
    body = yaml.dump_all(documents(), Dumper=_Dumper, sort_keys=False, width=100)
    return HEADER + body


def main() -> int:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

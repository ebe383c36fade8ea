"""The deployments, checked without Docker or a cluster (no services; under a minute).

- every YAML under deploy/ and docker-compose.yaml parses;
- docker-compose.yaml: `docker compose config` and/or docker-compose v1 (whichever is
  installed; skipped when neither is) with an env file made from deploy/compose/env.example,
  plus structure: the services, 127.0.0.1-only ports, every ${VAR} documented in env.example,
  no literal secrets;
- lakeFS: the pinned binary of `dfp stack build` (skipped without it) starts with each
  deployment's settings, its KV store swapped for a local one;
- deploy/k8s: every manifest against the Kubernetes OpenAPI models of the `kubernetes` client
  (unknown keys, required fields), Services select a workload, referenced Secrets, ConfigMaps
  and PVCs exist, kustomization lists exactly the files;
- deploy/helm/dagster-values.yaml: the keys used exist in Dagster's chart schema, the run
  launcher config the chart renders passes dagster-k8s's K8sRunLauncher schema;
- Dagster instance configs (compose, Postgres) pass Dagster's schema; `dagster definitions
  validate` passes under DFP_ENV=compose and DFP_ENV=k8s with each deployment's variables.

`helm lint`/`helm template` and `kubectl apply --dry-run=server` need the chart and a cluster
and are not run here (deploy/README.md says what is and is not validated).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dfp.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = DEPLOY / "compose" / "env.example"
K8S = DEPLOY / "k8s"
SECRETS_EXAMPLE = K8S / "secrets.example.yaml"
HELM_VALUES = DEPLOY / "helm" / "dagster-values.yaml"
DFP_IMAGE = "dfp:0.1.0"

COMPOSE_SERVICES = {
    "postgres",
    "redis",
    "seaweedfs",
    "lakefs",
    "mlflow",
    "dfp-bootstrap",
    "dagster-code",
    "dagster-webserver",
    "dagster-daemon",
    "devicefarm-gateway",
    # deploy/monitoring/
    "dfp-monitor",
    "prometheus",
    "alertmanager",
    "pushgateway",
    "node-exporter",
    "grafana",
}
#: Upstream images of the monitoring services (the versions of Debian's packages that the
#: local stack runs).
MONITORING_IMAGES = {"prometheus", "alertmanager", "pushgateway", "node-exporter", "grafana"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|_KEY$")


def load_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


fill_env = load_module(DEPLOY / "compose" / "fill_env.py", "dfp_deploy_fill_env")


def yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def example_env() -> dict[str, str]:
    """env.example with every required secret filled in (as fill_env.py does)."""
    return fill_env.filled(fill_env.parse(ENV_EXAMPLE.read_text()))


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


# -- every YAML parses ----------------------------------------------------------------------
ALL_YAML = sorted([COMPOSE_FILE, *DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_yaml_parses(path: Path):
    assert yaml_docs(path), f"{path} is empty"


# -- docker-compose -------------------------------------------------------------------------
def compose_commands() -> dict[str, list[str] | None]:
    """Compose v2 (`docker compose`) and v1 (`docker-compose`, Debian's package), if here."""
    found: dict[str, list[str] | None] = {"docker compose": None, "docker-compose": None}
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            found["docker compose"] = [docker, "compose"]
    v1 = shutil.which("docker-compose")
    if v1:
        found["docker-compose"] = [v1]
    return found


COMPOSE_COMMANDS = compose_commands()


def write_env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def run_compose_config(tool: str, env_file: Path, cwd: Path) -> subprocess.CompletedProcess:
    command = COMPOSE_COMMANDS[tool]
    if command is None:
        if not any(COMPOSE_COMMANDS.values()):
            pytest.skip("neither `docker compose` nor `docker-compose` is on PATH")
        pytest.skip(f"`{tool}` is not on PATH (the other compose is)")
    # Only the env file decides: no stray variables from the test environment.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return subprocess.run(
        [*command, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("tool", list(COMPOSE_COMMANDS))
def test_compose_config_is_valid(tool: str, tmp_path: Path):
    proc = run_compose_config(tool, write_env_file(tmp_path / "env", example_env()), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("tool", list(COMPOSE_COMMANDS))
def test_compose_refuses_to_start_without_secrets(tool: str, tmp_path: Path):
    values = example_env()
    values["LAKEFS_SECRET_ACCESS_KEY"] = ""
    proc = run_compose_config(tool, write_env_file(tmp_path / "env", values), tmp_path)
    assert proc.returncode != 0
    assert "set it in .env (see deploy/compose/env.example)" in proc.stdout + proc.stderr


def test_compose_has_every_service_of_the_platform():
    services = compose()["services"]
    assert set(services) == COMPOSE_SERVICES
    assert services["lakefs"]["image"] == "treeverse/lakefs:1.84.0"
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["seaweedfs"]["image"].startswith("chrislusf/seaweedfs:")
    dfp_services = {n for n, s in services.items() if "${DFP_IMAGE" in str(s.get("image"))}
    assert dfp_services == COMPOSE_SERVICES - {"postgres", "redis", "seaweedfs", "lakefs"} - (
        MONITORING_IMAGES
    )
    built = [n for n, s in services.items() if "build" in s]
    assert built == ["dagster-code"]
    assert services["dagster-code"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (PROJECT_ROOT / "deploy" / "docker" / "Dockerfile").is_file()


def test_compose_services_are_wired_to_each_other():
    services = compose()["services"]
    code = services["dagster-code"]["command"]
    assert code[:5] == ["dagster", "api", "grpc", "-m", "dfp_assets.definitions"]
    assert "4000" in code
    workspace = yaml.safe_load((DEPLOY / "compose" / "workspace.yaml").read_text())
    (server,) = [entry["grpc_server"] for entry in workspace["load_from"]]
    assert (server["host"], server["port"]) == ("dagster-code", 4000)
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "/opt/dagster/workspace.yaml" in services[name]["command"]
        assert services[name]["depends_on"]["dagster-code"]["condition"] == "service_healthy"
    gateway = services["devicefarm-gateway"]["command"]
    assert gateway[:3] == ["dfp", "devicefarm", "gateway"]
    assert "--dagster-url=http://dagster-webserver:3000" in gateway
    assert "--port=3100" in gateway
    for name, service in services.items():
        assert "healthcheck" in service or name in ("dfp-bootstrap", "dagster-daemon"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert condition["condition"] in (
                "service_healthy",
                "service_completed_successfully",
            )
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency


def test_compose_environment_is_compose_mode():
    services = compose()["services"]
    for name in ("dagster-code", "devicefarm-gateway", "dfp-bootstrap"):
        env = services[name]["environment"]
        assert env["DFP_ENV"] == "compose", name
        assert env["LAKEFS_ENDPOINT"] == "http://lakefs:8000"
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["DFP_FEAST_ONLINE"] == "redis"
        assert env["DAGSTER_PG_HOST"] == "postgres"
    # The webserver and daemon run no dfp code: the instance's settings, no dfp secrets.
    for name in ("dagster-webserver", "dagster-daemon"):
        env = services[name]["environment"]
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert env["DAGSTER_HOME"] == services["dagster-code"]["environment"]["DAGSTER_HOME"]
        assert not any(key.startswith(("DFP_", "LAKEFS_")) for key in env), name
    lakefs = services["lakefs"]["environment"]
    assert lakefs["LAKEFS_DATABASE_TYPE"] == "postgres"
    assert lakefs["LAKEFS_BLOCKSTORE_TYPE"] == "s3"
    assert lakefs["LAKEFS_BLOCKSTORE_S3_ENDPOINT"] == "http://seaweedfs:8333"
    assert lakefs["LAKEFS_BLOCKSTORE_S3_FORCE_PATH_STYLE"] == "true"
    assert lakefs["LAKEFS_STATS_ENABLED"] == "false"


def test_compose_ports_bind_to_loopback_only():
    published = 0
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
            published += 1
        assert "network_mode" not in service, name
    assert published == 6  # Dagster UI, lakeFS, MLflow, the gateway, Prometheus, Grafana


def compose_variables(text: str) -> dict[str, str]:
    """${NAME...} references (not $$-escaped) -> their operator (':?', ':-', '')."""
    found: dict[str, str] = {}
    for match in re.finditer(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[?-])?", text):
        found[match.group(1)] = match.group(2) or ""
    return found


def test_every_compose_variable_is_documented_in_env_example():
    used = compose_variables(COMPOSE_FILE.read_text())
    example = dict(fill_env.parse(ENV_EXAMPLE.read_text()))
    assert set(used) - set(example) == set()
    assert set(example) - set(used) == set(), "env.example lists variables nothing uses"
    for name, value in example.items():
        if value or name in fill_env.OPTIONAL:
            assert used[name] == ":-", f"{name} has a default: use ${{{name}:-...}}"
        else:
            assert used[name] == ":?", f"{name} is required: use ${{{name}:?...}}"


def test_no_secret_is_committed():
    for name, value in fill_env.parse(ENV_EXAMPLE.read_text()):
        if SECRET_NAME.search(name):
            assert value == "", f"env.example must not hold a value for {name}"
    for name, service in compose()["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), name
        for key, value in env.items():
            if SECRET_NAME.search(key) or "://" in str(value) and "@" in str(value):
                assert "${" in str(value), f"{name}: {key} is a literal, not from .env"
    for doc in yaml_docs(SECRETS_EXAMPLE):
        for key, value in doc["stringData"].items():
            assert "CHANGE_ME" in value, f"{doc['metadata']['name']}.{key} is not a placeholder"
    # Kubernetes: secrets only in Secrets (the template), never in ConfigMaps or pod specs.
    for doc in k8s_docs():
        assert doc["kind"] != "Secret", doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap":
            for key, value in doc["data"].items():
                assert not SECRET_NAME.search(key), (doc["metadata"]["name"], key)
                assert not re.search(r"://[^/\s]*:[^/\s]*@", value), (doc["metadata"]["name"], key)
    for _, template in pod_templates():
        for container in template["spec"]["containers"]:
            for var in container.get("env", []):
                assert not (SECRET_NAME.search(var["name"]) and "value" in var), var["name"]


def test_fill_env_writes_a_private_complete_file(tmp_path: Path):
    target = tmp_path / ".env"
    assert fill_env.main(["--output", str(target)]) == 0
    assert target.stat().st_mode & 0o777 == 0o600
    values = dict(fill_env.parse(target.read_text()))
    assert fill_env.main(["--output", str(target)]) == 1  # never overwrites silently
    for name, value in values.items():
        assert value or name in fill_env.OPTIONAL, name
        assert re.fullmatch(r"[A-Za-z0-9_.:-]*", value), name  # URL-safe
    assert len(values["DFP_DEVICEFARM_TOKEN"]) >= 16
    assert values["DFP_IMAGE"] == DFP_IMAGE


def test_compose_scripts_are_the_ones_kubernetes_mounts():
    by_name = {doc["metadata"]["name"]: doc for doc in k8s_docs() if doc["kind"] == "ConfigMap"}
    pg = (DEPLOY / "compose" / "postgres-init.sh").read_text()
    assert by_name["postgres-init"]["data"]["10-dfp.sh"] == pg
    weed = (DEPLOY / "compose" / "seaweedfs-start.sh").read_text()
    assert by_name["seaweedfs-start"]["data"]["seaweedfs-start.sh"] == weed
    for name in ("DAGSTER", "LAKEFS", "MLFLOW", "ICEBERG"):
        assert f"CREATE DATABASE {name.lower()} OWNER {name.lower()};" in pg
        assert f"{name}_PG_PASSWORD" in compose()["services"]["postgres"]["environment"]


def test_lakefs_config_is_the_same_on_compose_and_kubernetes():
    """Each LAKEFS_* variable of the compose service is a key of the k8s config file or of
    Secret lakefs-secrets (lakeFS maps LAKEFS_A_B to a.b)."""
    (config_map,) = [d for d in k8s_docs() if d["metadata"]["name"] == "lakefs-config"]
    config = yaml.safe_load(config_map["data"]["config.yaml"])

    def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            name = f"{prefix}_{key}" if prefix else key
            out.update(flat(value, name) if isinstance(value, dict) else {name: value})
        return out

    k8s = {f"LAKEFS_{k.upper()}": str(v).lower() for k, v in flat(config).items()}
    secret_keys = set(secrets_example()["lakefs-secrets"])
    compose_env = compose()["services"]["lakefs"]["environment"]
    assert set(compose_env) == set(k8s) | secret_keys
    for key in set(compose_env) & set(k8s):
        assert compose_env[key].lower() == k8s[key], key


def lakefs_binary() -> Path:
    from dfp.stack.services import lakefs_binary_path

    binary = Path(os.environ.get("LAKEFS_BIN") or lakefs_binary_path())
    if not binary.is_file():
        pytest.skip("no lakeFS binary (`uv run dfp stack build` makes one)")
    return binary


def run_lakefs(binary: Path, args: list[str], env: dict[str, str], port: int, log: Path):
    """Start lakeFS, wait for /_health, return (process, base URL)."""
    import time
    import urllib.request

    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), *args], env={**keep, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lakeFS exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"lakeFS not healthy:\n{log.read_text()[-3000:]}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lakefs_get(url: str, path: str, key: str, secret: str) -> dict[str, Any]:
    import base64
    import json
    import urllib.request

    request = urllib.request.Request(f"{url}/api/v1{path}")
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


@pytest.mark.parametrize("mode", ["compose", "k8s"])
def test_lakefs_accepts_the_deployment_settings(mode: str, tmp_path: Path):
    """The pinned lakeFS itself reads each deployment's settings: admin user from the
    installation keys, S3 blockstore, no pre-signing. Only the KV store is swapped for a
    local one (no Postgres here); the blockstore is not contacted before first use."""
    binary = lakefs_binary()
    values = example_env()
    port = free_port()
    local = {
        "LAKEFS_DATABASE_TYPE": "local",
        "LAKEFS_DATABASE_LOCAL_PATH": str(tmp_path / "kv"),
        "LAKEFS_LISTEN_ADDRESS": f"127.0.0.1:{port}",
    }
    if mode == "compose":
        raw = compose()["services"]["lakefs"]["environment"]
        env = {k: interpolate(str(v), values) for k, v in raw.items()}
        args = ["run"]
    else:
        (config_map,) = [d for d in k8s_docs() if d["metadata"]["name"] == "lakefs-config"]
        (tmp_path / "config.yaml").write_text(config_map["data"]["config.yaml"])
        env = dict(rendered_secrets(values)["lakefs-secrets"])
        args = ["run", "--config", str(tmp_path / "config.yaml")]
    proc, url = run_lakefs(binary, args, {**env, **local}, port, tmp_path / "lakefs.log")
    try:
        key, secret = values["LAKEFS_ACCESS_KEY_ID"], values["LAKEFS_SECRET_ACCESS_KEY"]
        assert lakefs_get(url, "/user", key, secret)["user"]["id"] == "dfp-admin"
        storage = lakefs_get(url, "/config/storage", key, secret)
        assert storage["blockstore_type"] == "s3"
        assert storage["pre_sign_support"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- Kubernetes manifests -------------------------------------------------------------------
def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_docs(include_example: bool = False) -> list[dict[str, Any]]:
    return [
        doc
        for path in k8s_files()
        if include_example or path != SECRETS_EXAMPLE
        for doc in yaml_docs(path)
    ]


def secrets_example() -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc["stringData"] for doc in yaml_docs(SECRETS_EXAMPLE)}


render_secrets = load_module(K8S / "render_secrets.py", "dfp_deploy_render_secrets")


def rendered_secrets(values: dict[str, str]) -> dict[str, dict[str, str]]:
    """secrets.example.yaml filled from a compose .env, as render_secrets.py prints it."""
    text = render_secrets.render(SECRETS_EXAMPLE.read_text(), values)
    return {doc["metadata"]["name"]: doc["stringData"] for doc in yaml.safe_load_all(text) if doc}


def test_kustomization_lists_exactly_the_manifests():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    expected = {p.name for p in k8s_files()} - {SECRETS_EXAMPLE.name}
    assert set(listed) == expected
    assert kustomization["namespace"] == "dfp"
    assert [i["name"] for i in kustomization["images"]] == ["dfp"]
    assert kustomization["images"][0]["newTag"] == DFP_IMAGE.split(":")[1]


def model_class(api_version: str, kind: str) -> type:
    """apps/v1 Deployment -> kubernetes.client.V1Deployment."""
    import kubernetes.client

    version = api_version.split("/")[-1]
    cls = getattr(kubernetes.client, version.capitalize() + kind, None)
    assert cls is not None, f"no kubernetes model for {api_version} {kind}"
    return cls


def unknown_keys(value: Any, type_name: str, path: str) -> Iterator[str]:
    """Paths of keys that are not attributes of the OpenAPI model `type_name`."""
    import kubernetes.client

    if type_name.startswith("list["):
        for i, item in enumerate(value or []):
            yield from unknown_keys(item, type_name[5:-1], f"{path}[{i}]")
        return
    if type_name.startswith("dict["):
        inner = type_name[5:-1].split(", ", 1)[1]
        for key, item in (value or {}).items():
            yield from unknown_keys(item, inner, f"{path}.{key}")
        return
    cls = getattr(kubernetes.client, type_name, None)
    if cls is None:  # str, int, bool, object (IntOrString, Quantity), datetime
        return
    if not isinstance(value, dict):
        yield f"{path}: expected a {type_name} mapping, got {value!r}"
        return
    by_json_name = {json: attr for attr, json in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json_name:
            yield f"{path}.{key} (not a field of {type_name})"
        else:
            yield from unknown_keys(item, cls.openapi_types[by_json_name[key]], f"{path}.{key}")


def manifest_ids() -> list[str]:
    return [f"{d['kind']}/{d['metadata']['name']}" for d in k8s_docs(include_example=True)]


@pytest.mark.parametrize("doc", k8s_docs(include_example=True), ids=manifest_ids())
def test_manifest_matches_the_kubernetes_openapi_model(doc: dict[str, Any]):
    import kubernetes.client

    cls = model_class(doc["apiVersion"], doc["kind"])
    assert list(unknown_keys(doc, cls.__name__, doc["kind"])) == []
    # Deserializing runs the models' own checks: required fields, enums.
    kubernetes.client.ApiClient()._ApiClient__deserialize(doc, cls.__name__)
    assert doc["metadata"]["name"]


def test_the_openapi_check_catches_typos():
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"contianers": []}}},
    }
    assert list(unknown_keys(bad, "V1Deployment", "Deployment")) == [
        "Deployment.spec.template.spec.contianers (not a field of V1PodSpec)"
    ]


def pod_templates() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield doc, doc["spec"]["template"]


def test_services_select_a_workload():
    pod_labels = [template["metadata"]["labels"] for _, template in pod_templates()]
    for doc in k8s_docs():
        if doc["kind"] != "Service":
            continue
        selector = doc["spec"]["selector"]
        matches = [labels for labels in pod_labels if selector.items() <= labels.items()]
        assert len(matches) == 1, f"Service {doc['metadata']['name']} selects {len(matches)}"
        for port in doc["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str):
                (workload,) = [
                    t
                    for _, t in pod_templates()
                    if selector.items() <= t["metadata"]["labels"].items()
                ]
                names = {
                    p.get("name")
                    for c in workload["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                assert port["targetPort"] in names, doc["metadata"]["name"]


def test_workload_selectors_match_their_pods():
    for doc, template in pod_templates():
        if doc["kind"] == "Job":
            continue
        selector = doc["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items(), doc["metadata"]


def referenced(kind: str) -> set[tuple[str, str | None]]:
    """(name, key) of every Secret/ConfigMap the workloads read (key None: the whole one)."""
    ref_key, env_key = (
        ("secretRef", "secretKeyRef")
        if kind == "Secret"
        else (
            "configMapRef",
            "configMapKeyRef",
        )
    )
    found: set[tuple[str, str | None]] = set()
    for _, template in pod_templates():
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                if ref_key in source:
                    found.add((source[ref_key]["name"], None))
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get(env_key)
                if ref:
                    found.add((ref["name"], ref["key"]))
        for volume in template["spec"].get("volumes", []):
            if kind == "ConfigMap" and "configMap" in volume:
                found.add((volume["configMap"]["name"], None))
            if kind == "Secret" and "secret" in volume:
                found.add((volume["secret"]["secretName"], None))
    return found


def helm_values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text())


def helm_env_refs(field: str) -> set[str]:
    values = helm_values()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    return {ref["name"] for ref in deployment[field] + launcher[field]}


def test_every_secret_used_is_in_the_template_with_its_keys():
    template = secrets_example()
    for name, key in referenced("Secret"):
        assert name in template, f"Secret {name} is not in secrets.example.yaml"
        assert key is None or key in template[name], (name, key)
    for name in helm_env_refs("envSecrets"):
        assert name in template, name
    assert "postgresql-password" in template[helm_values()["global"]["postgresqlSecretName"]]
    used = {name for name, _ in referenced("Secret")} | helm_env_refs("envSecrets")
    used.add(helm_values()["global"]["postgresqlSecretName"])
    assert set(template) == used, "secrets.example.yaml has Secrets nothing reads"


def test_k8s_secrets_render_from_the_compose_env():
    import kubernetes.client

    values = example_env()
    text = render_secrets.render(SECRETS_EXAMPLE.read_text(), values)
    assert "CHANGE_ME_" not in text.replace("CHANGE_ME_<VAR>", "")
    docs = [doc for doc in yaml.safe_load_all(text) if doc]
    for doc in docs:
        kubernetes.client.ApiClient()._ApiClient__deserialize(doc, "V1Secret")
    rendered = {doc["metadata"]["name"]: doc["stringData"] for doc in docs}
    assert set(rendered) == set(secrets_example())
    # One value, every Secret that needs it.
    lakefs = rendered["lakefs-secrets"]
    assert lakefs["LAKEFS_INSTALLATION_ACCESS_KEY_ID"] == values["LAKEFS_ACCESS_KEY_ID"]
    assert rendered["dfp-secrets"]["LAKEFS_ACCESS_KEY_ID"] == values["LAKEFS_ACCESS_KEY_ID"]
    assert (
        rendered["dagster-postgresql-secret"]["postgresql-password"]
        == (rendered["postgres-secrets"]["DAGSTER_PG_PASSWORD"])
    )
    assert values["REDIS_PASSWORD"] in rendered["dfp-secrets"]["DFP_REDIS_URL"]
    with pytest.raises(SystemExit, match="REDIS_PASSWORD"):
        render_secrets.render(SECRETS_EXAMPLE.read_text(), {**values, "REDIS_PASSWORD": ""})


def test_connection_urls_are_what_dfp_accepts():
    """The Redis and catalog URLs of both deployments pass dfp's own parsing."""
    from pydantic import SecretStr
    from sqlalchemy.engine import make_url

    from dfp.kronodroid.features import RedisOnline

    values = example_env()
    k8s_env = rendered_secrets(values)["dfp-secrets"]
    raw = compose()["services"]["dagster-code"]["environment"]
    compose_env = {k: interpolate(str(v), values) for k, v in raw.items()}
    for env in (compose_env, k8s_env):
        online = RedisOnline(url=SecretStr(env["DFP_REDIS_URL"]))
        assert online.connection_string().startswith("redis:6379,password=")
        url = make_url(env["DFP_ICEBERG_CATALOG_URI"])
        assert (url.drivername, url.host, url.database) == (
            "postgresql+psycopg2",
            "postgres",
            "iceberg",
        )


def test_every_config_map_used_exists():
    maps = {d["metadata"]["name"]: d for d in k8s_docs() if d["kind"] == "ConfigMap"}
    for name, _ in referenced("ConfigMap"):
        assert name in maps, name
    for name in helm_env_refs("envConfigMaps"):
        assert name in maps, name
    env = maps["dfp-env"]["data"]
    assert env["DFP_ENV"] == "k8s"
    assert env["LAKEFS_ENDPOINT"] == "http://lakefs:8000"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["DFP_FEAST_ONLINE"] == "redis"
    # Non-secret ConfigMap, secret Secret: no key in both.
    assert not set(env) & set(secrets_example()["dfp-secrets"])


def test_k8s_uses_the_dfp_image_and_the_compose_images():
    services = compose()["services"]
    external = {services[n]["image"] for n in ("postgres", "redis", "seaweedfs", "lakefs")}
    external |= {services[n]["image"] for n in MONITORING_IMAGES}
    for doc, template in pod_templates():
        for container in template["spec"]["containers"]:
            assert container["name"] and container["image"], doc["metadata"]["name"]
            assert container["image"] in external | {DFP_IMAGE}, container["image"]
    (deployment,) = helm_values()["dagster-user-deployments"]["deployments"]
    image = deployment["image"]
    assert f"{image['repository']}:{image['tag']}" == DFP_IMAGE
    assert compose_variables(COMPOSE_FILE.read_text())["DFP_IMAGE"] == ":-"
    assert example_env()["DFP_IMAGE"] == DFP_IMAGE


def test_volumes_claimed_by_helm_exist():
    claims = {d["metadata"]["name"] for d in k8s_docs() if d["kind"] == "PersistentVolumeClaim"}
    values = helm_values()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for volumes in (deployment["volumes"], launcher["volumes"]):
        for volume in volumes:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
    env = {d["metadata"]["name"]: d for d in k8s_docs()}["dfp-env"]["data"]
    for mounts in (deployment["volumeMounts"], launcher["volumeMounts"]):
        assert env["DFP_FEAST_HOME"] in {m["mountPath"] for m in mounts}


def test_gateway_calls_the_helm_releases_webserver():
    (gateway,) = [
        d
        for d in k8s_docs()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "devicefarm-gateway"
    ]
    command = gateway["spec"]["template"]["spec"]["containers"][0]["command"]
    # Release `dagster` -> Service `dagster-webserver`, chart default port 80.
    assert "--dagster-url=http://dagster-webserver:80" in command
    assert "helm upgrade --install dagster " in (DEPLOY / "README.md").read_text()


# -- Helm values ----------------------------------------------------------------------------
# Keys of Dagster's chart we rely on, from its values schema (helm/dagster/schema in
# dagster-io/dagster: charts/dagster/values.py and subschema/*.py). A key outside these is a
# typo or a key the chart ignores.
HELM_KEYS: dict[str, set[str]] = {
    "": set(
        "global generatePostgresqlPasswordSecret postgresql telemetry dagster-user-deployments "
        "runLauncher dagsterDaemon dagsterWebserver computeLogManager pythonLogs retention "
        "serviceAccount imagePullSecrets ingress additionalInstanceConfig concurrency".split()
    ),
    "global": set("postgresqlSecretName dagsterHome serviceAccountName".split()),
    "postgresql": set(
        "enabled image postgresqlHost postgresqlUsername postgresqlPassword "
        "postgresqlDatabase postgresqlParams postgresqlScheme service".split()
    ),
    "postgresql.service": set("port".split()),
    "telemetry": set("enabled".split()),
    "dagster-user-deployments": set("enabled enableSubchart imagePullSecrets deployments".split()),
    "dagster-user-deployments.deployments[]": set(
        "name image dagsterApiGrpcArgs codeServerArgs includeConfigInLaunchedRuns port "
        "env envConfigMaps envSecrets annotations nodeSelector affinity tolerations "
        "podSecurityContext securityContext resources livenessProbe readinessProbe "
        "startupProbe labels volumeMounts volumes schedulerName".split()
    ),
    "dagster-user-deployments.deployments[].image": set("repository tag pullPolicy".split()),
    "dagster-user-deployments.deployments[].includeConfigInLaunchedRuns": set("enabled".split()),
    "runLauncher": set("type config".split()),
    "runLauncher.config": set("k8sRunLauncher celeryK8sRunLauncher customRunLauncher".split()),
    "runLauncher.config.k8sRunLauncher": set(
        "image imagePullPolicy jobNamespace loadInclusterConfig kubeconfigFile "
        "envConfigMaps envSecrets envVars volumeMounts volumes labels failPodOnRunFailure "
        "resources schedulerName securityContext runK8sConfig".split()
    ),
    "runLauncher.config.k8sRunLauncher.runK8sConfig": set(
        "containerConfig podSpecConfig podTemplateSpecMetadata jobSpecConfig jobMetadata".split()
    ),
    "dagsterDaemon": set(
        "enabled image runCoordinator heartbeatTolerance env envConfigMaps envSecrets "
        "resources runMonitoring runRetries sensors schedules volumeMounts volumes".split()
    ),
    "dagsterDaemon.runCoordinator": set("enabled type config".split()),
    "dagsterDaemon.runCoordinator.config": set("queuedRunCoordinator customRunCoordinator".split()),
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator": set(
        "maxConcurrentRuns tagConcurrencyLimits dequeueIntervalSeconds dequeueNumWorkers "
        "dequeueUseThreads".split()
    ),
    # Rendered into the instance's sensors by the chart's configmap-instance.yaml.
    "dagsterDaemon.sensors": set("useThreads numWorkers".split()),
    # Rendered into the instance's run_monitoring by the chart's configmap-instance.yaml.
    "dagsterDaemon.runMonitoring": set(
        "enabled startTimeoutSeconds cancelTimeoutSeconds maxResumeRunAttempts "
        "pollIntervalSeconds freeSlotsAfterRunEndSeconds".split()
    ),
}


def helm_key_problems(value: Any, path: str) -> Iterator[str]:
    if path not in HELM_KEYS or not isinstance(value, dict):
        return
    for key, item in value.items():
        if key not in HELM_KEYS[path]:
            yield f"{path or '<root>'}.{key}"
            continue
        child = f"{path}.{key}" if path else key
        if isinstance(item, list) and f"{child}[]" in HELM_KEYS:
            for element in item:
                yield from helm_key_problems(element, f"{child}[]")
                for sub_key, sub in element.items():
                    yield from helm_key_problems(sub, f"{child}[].{sub_key}")
        else:
            yield from helm_key_problems(item, child)


def test_helm_values_use_keys_of_dagsters_chart():
    assert list(helm_key_problems(helm_values(), "")) == []
    assert list(helm_key_problems({"runLauncher": {"tpye": "x"}}, "")) == ["runLauncher.tpye"]


def test_helm_values_structure():
    values = helm_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] in secrets_example()
    assert values["telemetry"]["enabled"] is False
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] is True
    assert daemon["runCoordinator"]["enabled"] is True
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    user = values["dagster-user-deployments"]
    assert user["enabled"] is True
    (deployment,) = user["deployments"]
    assert deployment["name"] == "dfp"
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "dfp_assets.definitions"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {s["name"] for s in launcher["envSecrets"]} == {"dfp-secrets"}
    assert {c["name"] for c in launcher["envConfigMaps"]} == {"dfp-env"}


def chart_run_launcher_config() -> dict[str, Any]:
    """The K8sRunLauncher config the chart renders from our values
    (templates/helpers/instance/_run-launcher.tpl), for release `dagster` in namespace dfp."""
    values = helm_values()
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_k8s = launcher.get("runK8sConfig", {})
    rendered = {
        "load_incluster_config": launcher.get("loadInclusterConfig", True),
        "job_namespace": launcher.get("jobNamespace") or "dfp",
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": "dagster",
        "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_config_maps": [c["name"] for c in launcher.get("envConfigMaps", [])],
        "env_secrets": [s["name"] for s in launcher.get("envSecrets", [])],
        "volume_mounts": launcher.get("volumeMounts", []),
        "volumes": launcher.get("volumes", []),
        "run_k8s_config": {
            "container_config": run_k8s.get("containerConfig", {}),
            "pod_spec_config": run_k8s.get("podSpecConfig", {}),
        },
    }
    return rendered


def test_rendered_run_launcher_config_passes_dagster_k8s_schema():
    """The launcher's config schema, then each Kubernetes piece parsed the way dagster-k8s
    parses it when it builds a run's Job (camelCase accepted, unknown keys rejected)."""
    import dagster as dg
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict
    from kubernetes.client import V1Container, V1PodSpec, V1Volume, V1VolumeMount

    from dfp_assets.platform.dagster_private import process_config

    def parse(cls: type, value: dict[str, Any]) -> Any:
        return k8s_model_from_dict(cls, k8s_snake_case_dict(cls, value))

    config = chart_run_launcher_config()
    result = process_config(dg.Shape(K8sRunLauncher.config_type()), config)
    assert result.success, [e.message for e in result.errors]
    for volume in config["volumes"]:
        parse(V1Volume, volume)
    for mount in config["volume_mounts"]:
        parse(V1VolumeMount, mount)
    run_k8s = config["run_k8s_config"]
    parse(V1Container, {"name": "x", **run_k8s["container_config"]})
    parse(V1PodSpec, {"containers": [{"name": "x"}], **run_k8s["pod_spec_config"]})
    with pytest.raises(Exception, match="Unexpected keys"):
        parse(V1Volume, {"name": "x", "persistentVolumeClaimm": {}})


# -- Dagster instance configs ---------------------------------------------------------------
PG_ENV = {
    "DAGSTER_PG_HOST": "postgres",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
    "DAGSTER_PG_DB": "dagster",
}


def instance_config(path: Path, tmp_path: Path, monkeypatch) -> dict[str, Any]:
    """The instance config Dagster reads from `path` as a DAGSTER_HOME's dagster.yaml."""
    from dfp_assets.platform.dagster_private import dagster_instance_config

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copyfile(path, tmp_path / "dagster.yaml")
    return dagster_instance_config(str(tmp_path))[0]


@pytest.mark.parametrize(
    "path",
    [DEPLOY / "compose" / "dagster.yaml", DEPLOY / "dagster" / "dagster-postgres.yaml"],
    ids=["compose", "postgres"],
)
def test_instance_config_passes_dagsters_schema(path: Path, tmp_path: Path, monkeypatch):
    """Dagster's instance schema, and every pluggable class (launcher, coordinator, logs)
    built from its config; storage is only schema-checked: building it would connect."""
    from dfp_assets.platform.dagster_private import ConfigurableClassData

    config = instance_config(path, tmp_path, monkeypatch)
    assert config["telemetry"]["enabled"] is False
    assert "postgres" in config["storage"]
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    for key in ("run_launcher", "run_coordinator", "compute_logs", "local_artifact_storage"):
        if key in config:
            section = config[key]
            data = ConfigurableClassData(
                section["module"], section["class"], yaml.safe_dump(section.get("config", {}))
            )
            assert data.rehydrate(as_type=object) is not None, key
    if path.parent.name == "compose":
        assert config["run_launcher"]["class"] == "DefaultRunLauncher"


#: Each instance config of the repository: local, compose, Postgres (Kubernetes: the chart's).
EVERY_INSTANCE_CONFIG = pytest.mark.parametrize(
    "path",
    [
        PROJECT_ROOT / "dagster.yaml",
        DEPLOY / "compose" / "dagster.yaml",
        DEPLOY / "dagster" / "dagster-postgres.yaml",
    ],
    ids=["local", "compose", "postgres"],
)

PARTITION_LIMIT = {
    "key": "dagster/partition",
    "value": {"applyLimitPerUniqueValue": True},
    "limit": 1,
}


@EVERY_INSTANCE_CONFIG
def test_the_run_queue_starts_one_run_per_branch_at_a_time(path: Path, tmp_path, monkeypatch):
    """Every instance (and the Helm chart's) queues a second run on a branch behind the first;
    the QueuedRunCoordinator built from the file carries the limit."""
    from dfp_assets.platform.dagster_private import ConfigurableClassData

    section = instance_config(path, tmp_path, monkeypatch)["run_coordinator"]
    coordinator = ConfigurableClassData(
        section["module"], section["class"], yaml.safe_dump(section["config"])
    ).rehydrate(as_type=object)
    assert PARTITION_LIMIT in coordinator.get_run_queue_config().tag_concurrency_limits
    helm = helm_values()["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert PARTITION_LIMIT in helm["tagConcurrencyLimits"]


@EVERY_INSTANCE_CONFIG
def test_the_daemon_ticks_sensors_in_threads_and_dequeues_every_second(
    path: Path, tmp_path, monkeypatch
):
    """The CDC latency budget: every instance (and the Helm chart's) evaluates sensors side by
    side (serially the CDC sensor ticked every 10-15 s) and dequeues a requested run within 1 s."""
    config = instance_config(path, tmp_path, monkeypatch)
    assert config["sensors"]["use_threads"] is True
    assert config["sensors"]["num_workers"] >= 4
    assert config["run_coordinator"]["config"]["dequeue_interval_seconds"] == 1
    daemon = helm_values()["dagsterDaemon"]
    assert daemon["sensors"] == {"useThreads": True, "numWorkers": config["sensors"]["num_workers"]}
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["dequeueIntervalSeconds"] == 1


# -- definitions load under each deployment's environment -----------------------------------
def deployment_env(mode: str, tmp_path: Path) -> dict[str, str]:
    """The variables a dfp container sees in `mode` (dummy endpoints: nothing connects)."""
    values = example_env()
    if mode == "compose":
        raw = compose()["services"]["dagster-code"]["environment"]
        env = {k: interpolate(str(v), values) for k, v in raw.items()}
    else:
        (config_map,) = [d for d in k8s_docs() if d["metadata"]["name"] == "dfp-env"]
        env = dict(config_map["data"])
        env.update(rendered_secrets(values)["dfp-secrets"])  # Helm's envSecrets
    # No container paths on this machine: the same layout under tmp_path.
    env["DFP_HOME"] = str(tmp_path / "dfp")
    env["DFP_FEAST_HOME"] = str(tmp_path / "dfp" / "feast")
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    Path(env["DAGSTER_HOME"]).mkdir()
    return env


def interpolate(value: str, values: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME:?error} with `values` as the .env."""

    def one(match: re.Match) -> str:
        name, operator, word = match.group(1), match.group(3), match.group(4)
        if values.get(name):
            return values[name]
        if operator == "-":
            return word or ""
        raise AssertionError(f"{name} is required and unset")

    return re.sub(r"\$\{([A-Z0-9_]+)(:([?-])([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def validated_definitions(tmp_path_factory) -> dict[str, tuple[dict[str, str], str, int]]:
    """`dagster definitions validate` under each deployment's env, both at once."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    dagster = Path(sys.executable).with_name("dagster")
    running = {}
    for mode in ("compose", "k8s"):
        env = deployment_env(mode, tmp_path_factory.mktemp(mode))
        running[mode] = (
            env,
            subprocess.Popen(
                [str(dagster), "definitions", "validate", "-m", "dfp_assets.definitions"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**keep, **env},
                cwd=PROJECT_ROOT,
            ),
        )
    results = {}
    for mode, (env, proc) in running.items():
        output, _ = proc.communicate(timeout=600)
        results[mode] = env, output, proc.returncode
    return results


@pytest.mark.parametrize("mode", ["compose", "k8s"])
def test_definitions_load_under_the_deployment_environment(mode: str, validated_definitions):
    env, output, returncode = validated_definitions[mode]
    assert env["DFP_ENV"] == mode
    assert returncode == 0, output
    assert "All code locations passed validation" in output
    # DFP_ENV=local would have written the stack defaults here; compose/k8s must not.
    assert not (Path(env["DFP_HOME"]) / "iceberg").exists()


# -- the bootstrap one-shot -----------------------------------------------------------------
def test_bootstrap_plan_comes_from_the_deployment_environment(tmp_path: Path):
    bootstrap = load_module(DEPLOY / "bootstrap.py", "dfp_deploy_bootstrap")
    compose_env = compose()["services"]["dfp-bootstrap"]["environment"]
    values = example_env()
    env = {k: interpolate(str(v), values) for k, v in compose_env.items()}
    plan = bootstrap.plan_from_env(env)
    assert plan.s3_endpoint == "http://seaweedfs:8333"
    assert plan.buckets == ("lakefs", "mlflow")
    assert plan.storage_namespace == "s3://lakefs/kronodroid"
    # MLflow writes into the bucket the bootstrap creates.
    mlflow = compose()["services"]["mlflow"]["command"]
    assert "--artifacts-destination=s3://mlflow/artifacts" in mlflow
    with pytest.raises(SystemExit, match="DFP_S3_ENDPOINT"):
        bootstrap.plan_from_env({})
    k8s_env = deployment_env("k8s", tmp_path)
    k8s_env.update({"SEAWEEDFS_ACCESS_KEY": "a", "SEAWEEDFS_SECRET_KEY": "b"})
    assert bootstrap.plan_from_env(k8s_env).s3_endpoint == "http://seaweedfs:8333"

"""A real Dagster webserver / daemon / device-farm gateway as subprocesses on 127.0.0.1,
sharing a test's instance (its DAGSTER_HOME) and the session's environment."""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import dagster as dg
import requests

from dfp.settings import PROJECT_ROOT
from dfp.stack.benchmarking import code_server_workspace
from dfp.stack.services import stop_session
from dfp_assets.platform.dagster_private import InstigatorType, TickStatus
from tests.stack_fixtures import free_port

T = TypeVar("T")

BIN = Path(sys.executable).parent


@contextmanager
def _process(
    argv: list[str], env: dict[str, str], log: Path, ready_url: str | None, timeout: float = 120.0
) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while ready_url is not None:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                if requests.get(ready_url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{argv[0]} not ready after {timeout}s: {log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield proc
    finally:
        stop_session(proc)


def _env(dagster_home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": dagster_home, **(extra or {})}


@contextmanager
def _ui(command: list[str], dagster_home: str, log: Path, timeout: float) -> Iterator[str]:
    """A Dagster UI process on the project's workspace at a free loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workspace = ["-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    with _process([*command, *workspace], _env(dagster_home), log, f"{url}/server_info", timeout):
        yield url


def webserver(dagster_home: str, log_dir: Path):
    """`dagster-webserver` alone (no daemon)."""
    return _ui([str(BIN / "dagster-webserver")], dagster_home, log_dir / "webserver.log", 120)


def dagster_dev(dagster_home: str, log_dir: Path):
    """Real `dagster dev`: webserver + daemon, as a developer starts them."""
    return _ui([str(BIN / "dagster"), "dev"], dagster_home, log_dir / "dagster-dev.log", 180)


@contextmanager
def daemon(dagster_home: str, log_dir: Path) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` on one running code server, as `dagster dev` and the deployments
    run it (a daemon given workspace.yaml would start a new code server every minute)."""
    with code_server_workspace(dagster_home, log_dir) as workspace:
        argv = [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)]
        with _process(argv, _env(dagster_home), log_dir / "daemon.log", None) as proc:
            yield proc


@contextmanager
def gateway(dagster_url: str, token: str, log_dir: Path) -> Iterator[str]:
    """`dfp devicefarm gateway` in front of `dagster_url`; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(BIN / "dfp"),
        "devicefarm",
        "gateway",
        "--port",
        str(port),
        "--dagster-url",
        dagster_url,
    ]
    env = {**os.environ, "DFP_DEVICEFARM_TOKEN": token}
    with _process(argv, env, log_dir / "gateway.log", f"{url}/healthz"):
        yield url


ASSET_MATERIALIZATIONS = """
query ($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset {
      assetMaterializations(partitions: $partitions) {
        partition
        runId
        description
        metadataEntries { label __typename ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""


def graphql_materializations(url: str, asset: str, partition: str) -> list[dict]:
    reply = requests.post(
        f"{url}/graphql",
        json={
            "query": ASSET_MATERIALIZATIONS,
            "variables": {"path": [asset], "partitions": [partition]},
        },
        timeout=30,
    )
    reply.raise_for_status()
    body = reply.json()
    assert "errors" not in body, body
    node = body["data"]["assetOrError"]
    assert node["__typename"] == "Asset", node
    return node["assetMaterializations"]


def wait_for(
    what: str,
    probe: Callable[[], T],
    timeout: float = 180.0,
    detail: Callable[[], str] = lambda: "",
) -> T:
    """Poll `probe` until it returns something truthy (bounded); returns that."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail()}")
        time.sleep(1.0)


def sensor_ticks(instance: dg.DagsterInstance, name: str, since: float = 0.0) -> int:
    """How many evaluations (ticks) sensor `name` has finished since the time `since`."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name == name:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100)
            return sum(
                1
                for t in ticks
                if t.timestamp >= since and t.status in (TickStatus.SUCCESS, TickStatus.SKIPPED)
            )
    return 0

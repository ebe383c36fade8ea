"""Helpers the benchmark scripts share (no Dagster import): throwaway repositories, a real
`dagster-daemon` process on one code server, figure output."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import PROJECT_ROOT, LakeFSSettings
from dfp.stack.services import stop_session

#: The venv's executables (dagster, dagster-daemon) beside this Python.
BIN = Path(sys.executable).parent
WORKSPACE = PROJECT_ROOT / "workspace.yaml"


def throwaway_client(repository: str) -> LakeFSClient:
    """A client on a new repository of the local stack's lakeFS (the caller deletes it)."""
    base = LakeFSSettings.from_env()
    client = LakeFSClient(
        LakeFSSettings(base.endpoint, base.access_key_id, base.secret_access_key, repository)
    )
    client.ensure_repository(storage_namespace=f"local://{repository}")
    return client


def print_figures(figures: Mapping[str, object]) -> None:
    """One aligned `name  value` line per figure (integers with thousands separators)."""
    width = max(map(len, figures))
    for key, value in figures.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"{key:<{width}}  {shown}")


#: What `dagster code-server start` logs once its code server has loaded the definitions.
CODE_SERVER_READY = "Started Dagster code proxy server"


@contextmanager
def code_server_workspace(
    home: str | Path, log_dir: str | Path, timeout_s: float = 300.0
) -> Iterator[Path]:
    """One `dagster code-server start` for the project's code location (`workspace.yaml`'s
    module and name) on a socket in a temporary directory, and a workspace file under `home`
    that points at it (yielded), as `dagster dev` and the deployments give their daemon a
    running code server.

    Why: a daemon handed `workspace.yaml` itself starts its own code server and, at each
    workspace reload (every 60 s), a new one that loads the definitions again: about a core's
    tenth taken from the runs all the time, and not what users run."""
    import yaml

    location = yaml.safe_load(WORKSPACE.read_text())["load_from"][0]["python_module"]
    # A socket path must stay under ~100 bytes; `home` may be a deep test directory.
    socket_dir = tempfile.TemporaryDirectory(prefix="dfp-code-server-")
    socket = Path(socket_dir.name) / "server.sock"
    log_path = Path(log_dir) / "code-server.log"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    argv = [
        str(BIN / "dagster"),
        "code-server",
        "start",
        "-m",
        location["module_name"],
        "--location-name",
        location["location_name"],
        "--socket",
        str(socket),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout_s
        while CODE_SERVER_READY not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited {proc.returncode}" if proc.poll() is not None else "not ready"
                raise RuntimeError(
                    f"dagster code-server {state} after {timeout_s:.0f}s: "
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.2)
        workspace = Path(home) / "workspace.yaml"
        workspace.write_text(
            yaml.safe_dump(
                {
                    "load_from": [
                        {
                            "grpc_server": {
                                "socket": str(socket),
                                "location_name": location["location_name"],
                            }
                        }
                    ]
                }
            )
        )
        yield workspace
    finally:
        stop_session(proc)
        socket_dir.cleanup()


@contextmanager
def dagster_daemon(home: str | Path) -> Iterator[None]:
    """A real `dagster-daemon run` on the instance at `home`, on one code server
    (`code_server_workspace`; logs beside them, `daemon.log`, `code-server.log`), as a
    deployment runs the sensors and the run queue."""
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    with code_server_workspace(home, home) as workspace:
        with open(Path(home) / "daemon.log", "wb") as log:
            proc = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield
        finally:
            stop_session(proc)

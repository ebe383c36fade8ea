"""Helpers the benchmark scripts share (no Dagster import): throwaway repositories, a real
`dagster-daemon` process, figure output."""

from __future__ import annotations

import os
import subprocess
import sys
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


@contextmanager
def dagster_daemon(home: str | Path) -> Iterator[None]:
    """A real `dagster-daemon run` on the instance at `home` (its log beside it,
    `daemon.log`), as a deployment runs the sensors and the run queue."""
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    with open(Path(home) / "daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        stop_session(proc)

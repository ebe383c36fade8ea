"""`dfp stack up|status|down` as a user runs them: idempotent, and stopping only its own."""

import os
import subprocess
import sys
import urllib.request

import dagster as dg
import psutil
import pytest

from dfp import settings
from dfp.lake.lakefs_client import LakeFSClient
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration


def dfp(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dfp.cli", *args], env=env, capture_output=True, text=True
    )


def test_stack_up_status_down_twice(tmp_path):
    env = {
        **os.environ,
        "DFP_HOME": str(tmp_path / "home"),
        "DFP_LAKEFS_PORT": str(free_port()),
        "DFP_CACHE_DIR": os.environ.get("DFP_CACHE_DIR", str(settings.cache_dir())),
        "DFP_STACK_SERVICES": "lakefs",
    }
    for key in ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY"):
        env.pop(key, None)
    env.pop("DAGSTER_HOME", None)  # the user's default: DFP_HOME/dagster_home
    env["LAKEFS_REPOSITORY"] = "kronodroid"
    url = f"http://127.0.0.1:{env['DFP_LAKEFS_PORT']}"
    try:
        first = dfp("stack", "up", env=env)
        assert first.returncode == 0, first.stderr
        assert f"lakefs: started at {url}" in first.stdout
        # The default binary serves lakeFS's web UI (built from the module's webui/).
        with urllib.request.urlopen(f"{url}/", timeout=30) as page:
            html = page.read().decode()
        assert "UI Not Built" not in html and '<div id="root">' in html, html[:500]
        # `main` is a partition right away: a CLI launch needs no daemon tick first.
        with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster_home")) as inst:
            assert inst.get_dynamic_partitions("lakefs_branch") == ["main"]
        second = dfp("stack", "up", env=env)
        assert second.returncode == 0, second.stderr
        assert "lakefs: already running" in second.stdout

        status = dfp("stack", "status", env=env)
        assert status.returncode == 0
        assert "running" in status.stdout and url in status.stdout

        env_file = tmp_path / "home" / "stack.env"
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        creds = settings.read_env_file(env_file)
        client = LakeFSClient(
            settings.LakeFSSettings(
                url, creds["LAKEFS_ACCESS_KEY_ID"], creds["LAKEFS_SECRET_ACCESS_KEY"]
            )
        )
        assert "main" in client.list_branches()
        client.upload("main", "keep.txt", b"state survives restarts")
        client.commit("main", "keep")

        assert "lakefs: stopped" in dfp("stack", "down", env=env).stdout
        assert "lakefs: not running" in dfp("stack", "down", env=env).stdout
        stopped = dfp("stack", "status", env=env)
        assert stopped.returncode == 1 and "stopped" in stopped.stdout

        # Up again on the same state: same credentials, same repository and data.
        again = dfp("stack", "up", env=env)
        assert again.returncode == 0, again.stderr
        assert client.read("main", "keep.txt") == b"state survives restarts"
    finally:
        dfp("stack", "down", env=env)


def test_down_never_kills_a_process_it_did_not_start(tmp_path):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        state = tmp_path / "home" / "state" / "lakefs"
        state.mkdir(parents=True)
        # A stale pid file whose pid now belongs to another process (different start time).
        (state / "lakefs.pid").write_text(f"{bystander.pid} 12345.0")
        env = {
            **os.environ,
            "DFP_HOME": str(tmp_path / "home"),
            "DFP_LAKEFS_PORT": str(free_port()),
        }
        out = dfp("stack", "down", env=env)
        assert "lakefs: not running" in out.stdout
        assert psutil.pid_exists(bystander.pid) and bystander.poll() is None
        assert not (state / "lakefs.pid").exists()
    finally:
        bystander.kill()


def test_stack_up_down_with_redis(tmp_path):
    import redis

    port = free_port()
    env = {
        **os.environ,
        "DFP_HOME": str(tmp_path / "home"),
        "DFP_LAKEFS_PORT": str(free_port()),
        "DFP_REDIS_PORT": str(port),
        "DFP_CACHE_DIR": os.environ.get("DFP_CACHE_DIR", str(settings.cache_dir())),
        "DFP_STACK_SERVICES": "lakefs,redis",
    }
    for key in ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY"):
        env.pop(key, None)
    env.pop("DFP_REDIS_URL", None)
    env["LAKEFS_REPOSITORY"] = "kronodroid"
    env_file = tmp_path / "home" / "stack.env"
    pid_file = tmp_path / "home" / "state" / "redis" / "redis.pid"
    try:
        first = dfp("stack", "up", env=env)
        assert first.returncode == 0, first.stderr + first.stdout
        assert f"redis: started at redis://127.0.0.1:{port}" in first.stdout
        assert "redis: already running" in dfp("stack", "up", env=env).stdout

        creds = settings.read_env_file(env_file)
        password = creds["DFP_REDIS_PASSWORD"]
        assert creds["DFP_REDIS_URL"] == f"redis://:{password}@127.0.0.1:{port}/0"
        client = redis.Redis.from_url(creds["DFP_REDIS_URL"])
        assert client.ping()
        assert client.config_get("protected-mode") == {"protected-mode": "yes"}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        pid = int(pid_file.read_text().split()[0])
        assert password not in " ".join(psutil.Process(pid).cmdline())

        status = dfp("stack", "status", env=env)
        assert status.returncode == 0 and f"redis://127.0.0.1:{port}" in status.stdout

        down = dfp("stack", "down", env=env)
        assert "redis: stopped" in down.stdout and "lakefs: stopped" in down.stdout
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert "redis: not running" in dfp("stack", "down", env=env).stdout

        # Without redis in the stack, DFP_REDIS_URL leaves stack.env (the password stays).
        env["DFP_STACK_SERVICES"] = "lakefs"
        again = dfp("stack", "up", env=env)
        assert again.returncode == 0, again.stderr
        creds = settings.read_env_file(env_file)
        assert "DFP_REDIS_URL" not in creds and creds["DFP_REDIS_PASSWORD"] == password
    finally:
        env["DFP_STACK_SERVICES"] = "lakefs,redis"
        dfp("stack", "down", env=env)


def test_stack_up_down_with_mlflow_server(tmp_path):
    import numpy as np
    import torch

    from dfp.tracking import Tracker

    port = free_port()
    env = {
        **os.environ,
        "DFP_HOME": str(tmp_path / "home"),
        "DFP_LAKEFS_PORT": str(free_port()),
        "DFP_MLFLOW_PORT": str(port),
        "DFP_CACHE_DIR": os.environ.get("DFP_CACHE_DIR", str(settings.cache_dir())),
        "DFP_STACK_SERVICES": "lakefs,mlflow",
        "LAKEFS_REPOSITORY": "kronodroid",
    }
    for key in ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY"):
        env.pop(key, None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env_file = tmp_path / "home" / "stack.env"
    try:
        up = dfp("stack", "up", env=env)
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"mlflow: started at http://127.0.0.1:{port}" in up.stdout
        uri = settings.read_env_file(env_file)["MLFLOW_TRACKING_URI"]
        assert uri == f"http://127.0.0.1:{port}"

        # A run with a model goes through the server; artifacts land in the stack's state.
        tracker = Tracker(uri, experiment="stack-test")
        run_id = tracker.log_run(
            run_name="t",
            params={"p": 1},
            metrics={"f1": 0.75},
            tags={"dfp.lakefs.branch": "main"},
            model=torch.nn.Linear(3, 1),
            input_example=np.zeros((1, 3), np.float32),
        )
        recorded = Tracker(uri, experiment="stack-test").read(run_id)
        assert recorded.metrics == {"f1": 0.75} and recorded.tags["dfp.lakefs.branch"] == "main"
        artifacts = tmp_path / "home" / "state" / "mlflow" / "artifacts"
        assert any(p.name == "MLmodel" for p in artifacts.rglob("*"))

        down = dfp("stack", "down", env=env)
        assert "mlflow: stopped" in down.stdout
        env["DFP_STACK_SERVICES"] = "lakefs"
        assert dfp("stack", "up", env=env).returncode == 0
        assert "MLFLOW_TRACKING_URI" not in settings.read_env_file(env_file)
    finally:
        dfp("stack", "down", env={**env, "DFP_STACK_SERVICES": "lakefs,mlflow"})

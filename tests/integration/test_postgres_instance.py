"""DAGSTER_PG_* set → the Dagster instance stores on a real Postgres (Debian's server,
started by `dfp stack` with DFP_STACK_SERVICES=lakefs,postgres), and dfp runs on it."""

import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from dfp import settings
from dfp.lake.lakefs_client import LakeFSClient
from dfp.stack.dagster_home import prepare_dagster_home
from dfp.stack.services import LocalStack, StackError
from tests.integration.jobs import materialize_raw
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def traversable_dir():
    """Postgres runs as user 'postgres': its state must sit under world-traversable dirs
    (pytest's own tmp dirs are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="dfp-pg-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root-only check applies when run as root")
def test_postgres_state_under_a_private_dir_is_refused_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("DFP_POSTGRES_PORT", str(free_port()))
    monkeypatch.setenv("DFP_STACK_SERVICES", "lakefs,postgres")
    (tmp_path / "private").mkdir(mode=0o700)
    monkeypatch.setenv("DFP_HOME", str(tmp_path / "private" / "home"))
    stack = LocalStack(tmp_path / "private" / "home")
    with pytest.raises(StackError, match="cannot enter .*private"):
        stack.postgres.start()


def test_dagster_instance_on_postgres(traversable_dir, monkeypatch):
    tmp_path = traversable_dir
    monkeypatch.setenv("DFP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DFP_CACHE_DIR", os.environ.get("DFP_CACHE_DIR", str(settings.cache_dir())))
    monkeypatch.setenv("DFP_LAKEFS_PORT", str(free_port()))
    monkeypatch.setenv("DFP_POSTGRES_PORT", str(free_port()))
    monkeypatch.setenv("DFP_STACK_SERVICES", "lakefs,postgres")
    # prepare_dagster_home() exports DAGSTER_HOME; scope it to this test.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    stack = LocalStack(tmp_path / "home")
    stack.up(log=lambda msg: None)
    try:
        assert [row["state"] for row in stack.status()] == ["running", "running"]
        for key, value in settings.read_env_file(stack.env_file).items():
            monkeypatch.setenv(key, value)
        assert os.environ["DAGSTER_PG_PORT"] == os.environ["DFP_POSTGRES_PORT"]

        home = prepare_dagster_home()
        assert "postgres" in (home / "dagster.yaml").read_text()
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            result = materialize_raw(
                instance, "main", {"source": "synthetic", "synthetic_scale": 0.02}
            )
            assert result.success
            stored = instance.get_run_by_id(result.run_id)
            assert stored.status == dg.DagsterRunStatus.SUCCESS
            assert instance.get_dynamic_partitions("lakefs_branch") == ["main"]
        client = LakeFSClient(settings.LakeFSSettings.from_env())
        assert client.get_commit(client.head("main")).metadata["dagster_run_id"] == result.run_id

        # Postgres dropped from the stack → DAGSTER_PG_* leave stack.env (back to SQLite).
        stack.down(log=lambda msg: None)
        monkeypatch.setenv("DFP_STACK_SERVICES", "lakefs")
        stack = LocalStack(tmp_path / "home")
        stack.up(log=lambda msg: None)
        assert "DAGSTER_PG_HOST" not in settings.read_env_file(stack.env_file)
    finally:
        monkeypatch.setenv("DFP_STACK_SERVICES", "lakefs,postgres")
        LocalStack(tmp_path / "home").down(log=lambda msg: None)

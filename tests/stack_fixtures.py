"""The real local stack for integration and e2e tests: lakeFS built and started by `dfp stack`.
Registered for every test layer by tests/conftest.py (fixtures are lazy: unit tests start nothing).

One lakeFS per test session (own DFP_HOME and port, so a developer's running stack is left
alone); a fresh lakeFS repository and a temporary Dagster instance per test.
"""

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from dfp import settings
from dfp.lake.lakefs_client import LakeFSClient
from dfp.stack.services import LocalStack, free_port


@pytest.fixture(scope="session")
def lakefs_stack(tmp_path_factory) -> Iterator[LocalStack]:
    home = tmp_path_factory.mktemp("dfp_home")
    overrides = {
        "DFP_HOME": str(home),
        "DFP_LAKEFS_PORT": str(free_port()),
        # Reuse the project's build cache: building lakeFS once is enough.
        "DFP_CACHE_DIR": os.environ.get("DFP_CACHE_DIR", str(settings.cache_dir())),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in overrides.items():
            mp.setenv(key, value)
        stack = LocalStack(home)
        stack.up(log=lambda msg: None)
        for key, value in settings.read_env_file(stack.env_file).items():
            mp.setenv(key, value)
        # The session's own Iceberg catalog (the import-time default is the project's).
        (home / "iceberg").mkdir()
        mp.setenv("DFP_ICEBERG_CATALOG_URI", f"sqlite:///{home / 'iceberg' / 'catalog.db'}")
        # Likewise MLflow's store and Feast's registries / SQLite online files.
        (home / "mlflow").mkdir()
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
        mp.setenv("DFP_FEAST_HOME", str(home / "feast"))
        try:
            yield stack
        finally:
            stack.down(log=lambda msg: None)


@pytest.fixture
def lakefs(lakefs_stack, monkeypatch) -> Iterator[LakeFSClient]:
    """A client on a fresh repository (default branch main), also set as LAKEFS_REPOSITORY."""
    repository = f"t-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("LAKEFS_REPOSITORY", repository)
    client = LakeFSClient(settings.LakeFSSettings.from_env())
    client.ensure_repository(storage_namespace=f"local://{repository}")
    yield client
    client.close()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="session")
def postgres_stack(tmp_path_factory) -> Iterator[LocalStack]:
    """A real Postgres (Debian's server, via the stack manager): `.postgres` is the service
    (outage tests stop and start it), `.env_file` holds its password."""
    import shutil
    import tempfile
    from pathlib import Path

    # Postgres runs as user 'postgres': its state must sit under world-traversable dirs.
    home = Path(tempfile.mkdtemp(prefix="dfp-pg-session-", dir="/tmp"))
    home.chmod(0o755)
    # The variables only steer the start; they must not leak into the rest of the session.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DFP_POSTGRES_PORT", str(free_port()))
        mp.setenv("DFP_STACK_SERVICES", "lakefs,postgres")
        stack = LocalStack(home / "home")
        stack.postgres.start()
    try:
        yield stack
    finally:
        stack.postgres.stop()
        shutil.rmtree(home, ignore_errors=True)


def crash_postgres(stack: LocalStack) -> None:
    """An immediate shutdown of the stack's Postgres (SIGQUIT: no checkpoint, crash recovery
    at the next start), as when the server dies; waits until the postmaster is gone."""
    import signal

    import psutil

    pid = stack.postgres.pid()
    assert pid is not None, "Postgres is not running"
    os.kill(pid, signal.SIGQUIT)
    psutil.Process(pid).wait(60)


@pytest.fixture(scope="session")
def postgres_url(postgres_stack) -> str:
    """The URL of the session's Postgres (database `dagster`) for catalog and staging tests."""
    password = settings.read_env_file(postgres_stack.env_file)["DFP_POSTGRES_PASSWORD"]
    return f"postgresql+psycopg2://dfp:{password}@127.0.0.1:{postgres_stack.postgres_port}/dagster"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real Redis (Debian's redis-server, via the stack manager) for Feast's online store."""
    import shutil

    from dfp.stack.services import StackError, redis_server_bin, redis_url

    try:
        redis_server_bin()
    except StackError as exc:
        missing_service(str(exc))
    home = tmp_path_factory.mktemp("dfp_redis_home")
    # The variables only steer the start; they must not leak into the rest of the session.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DFP_REDIS_PORT", str(free_port()))
        mp.setenv("DFP_STACK_SERVICES", "lakefs,redis")
        stack = LocalStack(home)
        stack.redis.start()
    password = settings.read_env_file(stack.env_file)["DFP_REDIS_PASSWORD"]
    try:
        yield redis_url(stack.redis_port, password)
    finally:
        stack.redis.stop()
        shutil.rmtree(home, ignore_errors=True)


def missing_service(reason: str) -> None:
    """A service binary the test needs is not installed: skip on a developer's machine, fail
    under CI=true (where `.ci/run` installs everything, so a skip would hide a broken setup)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class SparkCluster:
    """A running standalone cluster: where drivers connect, its status API, executor dirs."""

    master_url: str
    webui_port: int
    work_dir: Path


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory) -> Iterator[SparkCluster]:
    """A real Spark standalone cluster (the pyspark distribution's master and two workers of
    1 core / 1 GiB, via the stack manager) on 127.0.0.1; every JVM stopped at teardown.
    Without Java or pyspark it skips, and fails under CI=true."""
    from dfp.stack.services import StackError, spark_class_bin

    try:
        spark_class_bin()
    except StackError as exc:
        missing_service(f"Spark standalone cluster unavailable: {exc}")
    home = tmp_path_factory.mktemp("dfp_spark_home")
    # The variables only steer the start; they must not leak into the rest of the session.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DFP_SPARK_MASTER_PORT", str(free_port()))
        mp.setenv("DFP_SPARK_WEBUI_PORT", str(free_port()))
        stack = LocalStack(home)
    try:
        stack.start_spark()
        yield SparkCluster(stack.spark_master_url, stack.spark_webui_port, stack.spark_dir / "work")
    finally:
        stack.stop_spark()

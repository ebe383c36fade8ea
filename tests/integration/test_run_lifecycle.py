"""Killed runs publish nothing; branch partitions follow lakeFS through a real daemon."""

import os
import signal
import subprocess
import sys
import time

import lakefs_sdk
import pyarrow as pa
import pytest

from dfp.lake import wap
from dfp.lake.iceberg import BranchTables
from dfp.settings import PROJECT_ROOT
from tests.integration.jobs import materialize_raw, run_cleanup_sensor

pytestmark = pytest.mark.integration

RUN_FULL_SIZE = """
import dagster as dg
from tests.integration.jobs import materialize_raw, run_cleanup_sensor
materialize_raw(dg.DagsterInstance.get(), "main", {"source": "synthetic", "synthetic_scale": 1.0})
"""


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_killed_run_publishes_nothing_and_rerun_succeeds(lakefs, instance):
    assert materialize_raw(
        instance, "main", {"source": "synthetic", "synthetic_scale": 0.02}
    ).success
    head = lakefs.head("main")
    objects = {o.path: o.checksum for o in lakefs.list_objects("main")}

    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_FULL_SIZE],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": instance.root_directory},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def writing_run_branch():
        for branch in lakefs.list_branches(show_hidden=True):
            if wap.is_run_branch(branch) and lakefs.has_uncommitted_changes(branch):
                return branch
        assert proc.poll() is None, "run finished before it could be killed mid-write"
        return None

    try:
        run_branch = wait_for(writing_run_branch, timeout=120, what="the run to start writing")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    # Killed mid-write: the partition branch is exactly as before; only the hidden run
    # branch holds the half-written state.
    assert lakefs.head("main") == head
    assert {o.path: o.checksum for o in lakefs.list_objects("main")} == objects
    assert run_branch in lakefs.list_branches(show_hidden=True)
    assert run_branch not in lakefs.list_branches()

    rerun = materialize_raw(instance, "main", {"source": "synthetic", "synthetic_scale": 0.03})
    assert rerun.success
    assert lakefs.head("main") != head

    # A killed dbt run would also leave catalog rows under the run branch's namespace.
    tables = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])
    tables.write(
        pa.table({"x": [1]}), schema="staging", table="t", target_branch="main", io_ref=run_branch
    )
    assert tables.catalog(run_branch).table_exists((run_branch, "staging", "t"))

    # What run monitoring does for a dead run worker; then the cleanup sensor removes the
    # orphaned branch and its catalog rows.
    [killed] = [r for r in instance.get_runs() if r.run_id == wap.run_id_of(run_branch)]
    instance.report_run_failed(killed)
    run_cleanup_sensor(instance)  # with this test's catalog
    assert run_branch not in lakefs.list_branches(show_hidden=True)
    assert not tables.catalog(run_branch).table_exists((run_branch, "staging", "t"))


def test_branch_partitions_follow_lakefs_through_the_daemon(lakefs, instance, tmp_path):
    # A plain lakefs-sdk client, not dfp's.
    configuration = lakefs_sdk.Configuration(
        host=lakefs.settings.endpoint + "/api/v1",
        username=lakefs.settings.access_key_id,
        password=lakefs.settings.secret_access_key,
    )
    branches_api = lakefs_sdk.BranchesApi(lakefs_sdk.ApiClient(configuration))
    repo = lakefs.repository
    branches_api.create_branch(repo, lakefs_sdk.BranchCreation(name="from-sdk", source="main"))
    # Run branches never become partitions, hidden or not.
    branches_api.create_branch(
        repo, lakefs_sdk.BranchCreation(name="dfp-run-abc", source="main", hidden=True)
    )
    branches_api.create_branch(repo, lakefs_sdk.BranchCreation(name="dfp-run-def", source="main"))

    daemon = subprocess.Popen(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "dagster-daemon")
            if (PROJECT_ROOT / ".venv" / "bin" / "dagster-daemon").exists()
            else "dagster-daemon",
            "run",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": instance.root_directory},
        stdout=open(tmp_path / "daemon.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def partitions():
            return set(instance.get_dynamic_partitions("lakefs_branch"))

        wait_for(
            lambda: {"main", "from-sdk"} <= partitions(),
            timeout=120,
            interval=0.5,
            what="the sensor to add partitions",
        )
        assert not {p for p in partitions() if wap.is_run_branch(p)}

        branches_api.delete_branch(repo, "from-sdk")
        wait_for(
            lambda: "from-sdk" not in partitions(),
            timeout=60,
            interval=0.5,
            what="the sensor to remove the partition",
        )
        assert "main" in partitions()
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(30)

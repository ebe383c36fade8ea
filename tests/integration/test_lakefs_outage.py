"""lakeFS killed during a run, on the real server: the run's lakeFS calls retry their
connection for a bounded time, then fail with an error naming lakeFS, its endpoint and the
operation; nothing is published and the branch head is unchanged; a rerun succeeds. A
restart within the retry window is ridden out."""

import os
import signal
import threading

import dagster as dg
import psutil
import pytest

from dfp.lake import wap
from dfp.lake.lakefs_client import CONNECT_RETRIES
from dfp.stack.services import LocalStack
from dfp_assets.platform.partitions import blocking_check, branch_asset
from dfp_assets.platform.wap_executor import lakefs_wap_executor
from dfp_resources.lakefs import LakeFSResource

PATH = "outage/marker.txt"
#: The session's stack, for the asset below to kill its lakeFS (set by the `stack` fixture).
_STACK: list[LocalStack] = []


def _kill_lakefs() -> int:
    """SIGKILL the lakeFS server (no shutdown of its own) and wait until it is gone."""
    service = _STACK[0].lakefs
    pid = service.pid()
    assert pid is not None, "lakeFS is not running"
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(30)
    return pid


class OutageConfig(dg.Config):
    value: str
    outage: str = "none"  # none | down (killed, stays down) | restart (killed, started again)


@branch_asset(group="test", check_specs=[blocking_check("ok", "outage_marker", "test gate")])
def outage_marker(context: dg.AssetExecutionContext, config: OutageConfig, lakefs: LakeFSResource):
    with lakefs.client() as client:
        branch = lakefs.run_branch(context)
        client.upload(branch, PATH, config.value.encode())
        if config.outage != "none":
            _kill_lakefs()
            if config.outage == "restart":
                threading.Thread(target=_STACK[0].lakefs.start, daemon=True).start()
        client.commit(branch, "marker", {"dagster_run_id": context.run_id})
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="ok", passed=True)


def outage_job():
    lakefs = LakeFSResource.from_env_vars()
    defs = dg.Definitions(
        assets=[outage_marker],
        jobs=[dg.define_asset_job("outage_job", selection=[outage_marker])],
        resources={"lakefs": lakefs},
        executor=lakefs_wap_executor(lakefs, default_mode="in_process"),
    )
    return defs.resolve_job_def("outage_job")


@pytest.fixture
def stack(lakefs_stack, lakefs):
    _STACK[:] = [lakefs_stack]
    yield lakefs
    lakefs_stack.lakefs.start()  # whatever a failed test left: the session's lakeFS is shared
    _STACK.clear()


def _run(instance, value: str, outage: str = "none"):
    if "main" not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", ["main"])
    with dg.execute_job(
        dg.reconstructable(outage_job),
        instance=instance,
        run_config={"ops": {"outage_marker": {"config": {"value": value, "outage": outage}}}},
        tags={"dagster/partition": "main"},
        raise_on_error=False,
    ) as result:
        return result.success, result.run_id


def _step_errors(instance, run_id: str) -> str:
    return "\n".join(
        e.dagster_event.step_failure_data.error.to_string()
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_step_failure
    )


def test_lakefs_down_mid_run_fails_naming_lakefs_and_publishes_nothing(stack, instance):
    lakefs = stack
    assert _run(instance, "good")[0]
    head = lakefs.head("main")

    ok, run_id = _run(instance, "lost", outage="down")
    assert not ok
    errors = _step_errors(instance, run_id)
    endpoint = os.environ["LAKEFS_ENDPOINT"]
    assert f"lakeFS at {endpoint} is unreachable: commit(" in errors, errors
    assert f"after {CONNECT_RETRIES} connection retries" in errors, errors

    _STACK[0].lakefs.start()
    assert lakefs.head("main") == head
    assert lakefs.read("main", PATH) == b"good"
    # The run could not delete its hidden branch with lakeFS down; the cleanup sensor's rule
    # finds it as an orphan once the run is over.
    assert wap.run_branch_name(run_id) in wap.orphaned_run_branches(lakefs, live_run_ids=[])

    ok, rerun = _run(instance, "after")
    assert ok, _step_errors(instance, rerun)
    assert lakefs.read("main", PATH) == b"after"
    assert lakefs.get_commit("main").metadata["dagster_run_id"] == rerun


def test_lakefs_restarted_within_the_retry_window_is_ridden_out(stack, instance):
    lakefs = stack
    ok, run_id = _run(instance, "survived", outage="restart")
    assert ok, _step_errors(instance, run_id)
    assert lakefs.read("main", PATH) == b"survived"
    assert lakefs.get_commit("main").metadata["dagster_run_id"] == run_id

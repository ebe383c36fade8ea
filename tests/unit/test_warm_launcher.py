"""The warm run launcher: runs fork from a server that imported their code location, are
monitored and terminated by pid, and the server reloads when a source file changes."""

import json
import os
import signal
import sys
from pathlib import Path

import dagster as dg
import pytest

from dfp_assets.platform.dagster_private import WorkerStatus
from dfp_assets.platform.warm_launcher import (
    LATER_THREADS_EXIT,
    RUN_WORKER_TAG,
    WarmRunLauncher,
    process_start_ticks,
)
from tests.integration.dagster_processes import wait_for
from tests.unit import warm_launcher_jobs
from tests.unit.warm_launcher_jobs import pid_job

LAUNCHER = {"module": "dfp_assets.platform.warm_launcher", "class": "WarmRunLauncher"}
# A busy 2-core machine: the server imports Dagster and the job module first.
BOUND_S = 180


def _origin():
    return dg.reconstructable(pid_job).get_python_origin()


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    launcher = {**LAUNCHER, "config": {"watch": [str(tmp_path / "*.json")]}}
    with dg.instance_for_test(overrides={"run_launcher": launcher}, temp_dir=str(tmp_path)) as inst:
        launcher = inst.run_launcher
        assert isinstance(launcher, WarmRunLauncher)
        server = launcher.warm_up(_origin())
        wait_for("the warm server to import the job's code location", server.ready, BOUND_S)
        yield inst


@pytest.fixture
def cold_instance(tmp_path, request):
    """An instance whose launcher has started no server yet (its config by parameter)."""
    config = {"ready_wait_s": BOUND_S, **getattr(request, "param", {})}
    with dg.instance_for_test(
        overrides={"run_launcher": {**LAUNCHER, "config": config}}, temp_dir=str(tmp_path)
    ) as inst:
        yield inst


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1])


def _finish(instance, run, marker, release) -> int:
    """Let the run's op finish; the pid of the process its worker forked from."""
    wait_for("the op to start", marker.exists, BOUND_S)
    worker_pid = int(marker.read_text())
    parent = _parent(worker_pid)
    release.touch()
    wait_for(
        "success", lambda: _status(instance, run.run_id) == dg.DagsterRunStatus.SUCCESS, BOUND_S
    )
    return parent


def _launch(instance, tmp_path, name: str) -> tuple[dg.DagsterRun, Path, Path]:
    marker, release = tmp_path / f"{name}.pid", tmp_path / f"{name}.release"
    config = {
        "ops": {
            "report_pid_then_wait": {"config": {"marker": str(marker), "release": str(release)}}
        }
    }
    run = instance.create_run_for_job(pid_job, run_config=config, job_code_origin=_origin())
    instance.launch_run(run.run_id, workspace=None)  # the warm path needs no workspace
    return run, marker, release


def _status(instance, run_id):
    return instance.get_run_by_id(run_id).status


def test_a_run_forks_from_the_server_succeeds_and_is_monitored_by_pid(instance, tmp_path):
    run, marker, release = _launch(instance, tmp_path, "ok")
    wait_for("the op to start", marker.exists, BOUND_S)
    worker_pid = int(marker.read_text())
    tagged = instance.get_run_by_id(run.run_id)
    worker = json.loads(tagged.tags[RUN_WORKER_TAG])
    # The op runs in the forked worker: a child of the server, neither this process nor a
    # fresh interpreter of the code server.
    assert worker["pid"] == worker_pid != os.getpid()
    assert worker["started"] == process_start_ticks(worker_pid)
    server = instance.run_launcher.warm_up(_origin())
    assert _parent(worker_pid) == server.process.pid
    health = instance.run_launcher.check_run_worker_health(tagged)
    assert health.status == WorkerStatus.RUNNING
    release.touch()
    wait_for(
        "success", lambda: _status(instance, run.run_id) == dg.DagsterRunStatus.SUCCESS, BOUND_S
    )
    messages = [e.message for e in instance.all_logs(run.run_id)]
    assert any(f"Forked the run worker (pid {worker_pid})" in (m or "") for m in messages)
    assert any(f"Started process for run (pid: {worker_pid})" in (m or "") for m in messages)


def test_a_killed_worker_is_reported_failed_and_termination_interrupts(instance, tmp_path):
    killed, marker, _ = _launch(instance, tmp_path, "killed")
    wait_for("the first op to start", marker.exists, BOUND_S)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    wait_for(
        "the worker to exit", lambda: process_start_ticks(int(marker.read_text())) is None, BOUND_S
    )
    health = instance.run_launcher.check_run_worker_health(instance.get_run_by_id(killed.run_id))
    assert health.status == WorkerStatus.FAILED
    assert f"pid {marker.read_text()}" in health.msg

    stopped, marker2, _ = _launch(instance, tmp_path, "terminated")
    wait_for("the second op to start", marker2.exists, BOUND_S)
    assert instance.run_launcher.terminate(stopped.run_id)
    wait_for(
        "the terminated run to be canceled",
        lambda: _status(instance, stopped.run_id) == dg.DagsterRunStatus.CANCELED,
        BOUND_S,
    )
    assert not instance.run_launcher.terminate(stopped.run_id)  # finished: nothing to do


def test_the_server_reloads_when_a_source_file_it_imported_changes(instance, tmp_path):
    launcher = instance.run_launcher
    server = launcher.warm_up(_origin())
    jobs_file = Path(warm_launcher_jobs.__file__)
    stat = jobs_file.stat()
    os.utime(jobs_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        reply = server.fork({"run_id": "none", "instance_ref": "", "working_directory": None})
        assert reply == {"stale": str(jobs_file)}
        wait_for("the stale server to exit", lambda: server.process.poll() is not None, 30)
        fresh = launcher.warm_up(_origin())
        assert fresh is not server and fresh.process.poll() is None
    finally:
        os.utime(jobs_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_server_reloads_when_a_watched_file_changes(instance, tmp_path):
    launcher = instance.run_launcher
    server = launcher.warm_up(_origin())
    (tmp_path / "manifest.json").write_text('{"changed": true}')
    reply = server.fork({"run_id": "none", "instance_ref": "", "working_directory": None})
    assert reply == {"stale": str(tmp_path / "manifest.json")}
    wait_for("the stale server to exit", lambda: server.process.poll() is not None, 30)


def test_other_interpreters_and_the_switch_go_through_the_code_server(instance, monkeypatch):
    origin = _origin()
    other = origin._replace(
        repository_origin=origin.repository_origin._replace(executable_path="/usr/bin/python3")
    )
    assert instance.run_launcher.warm_up(other) is None
    monkeypatch.setenv("DFP_WARM_LAUNCHER", "0")
    assert not WarmRunLauncher.enabled()
    monkeypatch.setenv("DFP_WARM_LAUNCHER", "1")
    assert WarmRunLauncher.enabled()
    assert sys.executable == origin.repository_origin.executable_path


def test_the_first_run_waits_for_the_starting_server_and_forks_from_it(cold_instance, tmp_path):
    # No server yet: the launch starts it and waits for its imports instead of paying them a
    # second time in a code-server run.
    run, marker, release = _launch(cold_instance, tmp_path, "first")
    server = cold_instance.run_launcher.warm_up(_origin())
    assert _finish(cold_instance, run, marker, release) == server.process.pid
    messages = [e.message or "" for e in cold_instance.all_logs(run.run_id)]
    assert any("waiting for it to load" in m for m in messages), messages


def test_a_stale_server_is_replaced_and_serves_the_run(instance, tmp_path):
    old = instance.run_launcher.warm_up(_origin())
    jobs_file = Path(warm_launcher_jobs.__file__)
    stat = jobs_file.stat()
    os.utime(jobs_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        run, marker, release = _launch(instance, tmp_path, "after-edit")
    finally:
        os.utime(jobs_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fresh = instance.run_launcher.warm_up(_origin())
    assert old.process.poll() is not None and fresh is not old
    assert _finish(instance, run, marker, release) == fresh.process.pid


@pytest.mark.parametrize("cold_instance", [{"ready_wait_s": 0.0}], indirect=True)
def test_a_server_not_ready_in_time_leaves_the_run_to_the_code_server(
    cold_instance, tmp_path, monkeypatch
):
    launched = []
    monkeypatch.setattr(
        dg.DefaultRunLauncher, "launch_run", lambda self, context: launched.append(context)
    )
    run, _, _ = _launch(cold_instance, tmp_path, "impatient")
    assert [c.dagster_run.run_id for c in launched] == [run.run_id]
    messages = [e.message or "" for e in cold_instance.all_logs(run.run_id)]
    assert any(
        "its server was not ready after 0s: launching through the code server" in m
        for m in messages
    ), messages
    assert RUN_WORKER_TAG not in cold_instance.get_run_by_id(run.run_id).tags


def _modules(marker: Path) -> list[str]:
    return json.loads(marker.with_name(marker.name + ".modules").read_text())


LATER = "tests.unit.warm_launcher_later"


def _server_importing_later(instance, tmp_path, monkeypatch):
    """(server, go, done): a started server whose LATER import waits for `go` to exist, then
    writes `done`."""
    go, done = tmp_path / "go", tmp_path / "done"
    monkeypatch.setenv("DFP_TEST_LATER_GO", str(go))
    monkeypatch.setenv("DFP_TEST_LATER_DONE", str(done))
    return instance.run_launcher.warm_up(_origin()), go, done


@pytest.mark.parametrize(
    "cold_instance", [{"preload_after_ready": [LATER], "preload_quiet_s": 0.5}], indirect=True
)
def test_later_modules_load_after_the_server_is_ready_and_runs_forked_after_have_them(
    cold_instance, tmp_path, monkeypatch
):
    server, go, done = _server_importing_later(cold_instance, tmp_path, monkeypatch)
    wait_for("the warm server to be ready", server.ready, BOUND_S)
    # Ready (accepting) before the later module is imported: its import waits for `go`.
    assert not done.exists()
    go.touch()
    wait_for("the server to import the later module", done.exists, BOUND_S)
    assert int(done.read_text()) == server.process.pid
    run, marker, release = _launch(cold_instance, tmp_path, "after-later")
    assert _finish(cold_instance, run, marker, release) == server.process.pid
    assert LATER in _modules(marker)


@pytest.mark.parametrize(
    "cold_instance",
    [{"preload_after_ready": ["tests.unit.warm_launcher_later_thread"]}],
    indirect=True,
)
def test_a_later_module_that_starts_a_thread_stops_the_server_and_its_successor_skips_them(
    cold_instance, tmp_path
):
    launcher = cold_instance.run_launcher
    server = launcher.warm_up(_origin())
    wait_for("the server to exit", lambda: server.process.poll() is not None, BOUND_S)
    assert server.process.returncode == LATER_THREADS_EXIT
    run, marker, release = _launch(cold_instance, tmp_path, "without-later")
    fresh = launcher.warm_up(_origin())
    assert fresh is not server
    assert _finish(cold_instance, run, marker, release) == fresh.process.pid
    assert "tests.unit.warm_launcher_later_thread" not in _modules(marker)


@pytest.mark.parametrize(
    "cold_instance", [{"preload_after_ready": [LATER], "preload_quiet_s": 120.0}], indirect=True
)
def test_launches_close_together_fork_before_the_later_imports_start(
    cold_instance, tmp_path, monkeypatch
):
    # The later module's import would block the server until `go` exists (never, here):
    # runs launched within the quiet time after the last launch are forked first.
    server, go, done = _server_importing_later(cold_instance, tmp_path, monkeypatch)
    for name in ("first", "second"):
        run, marker, release = _launch(cold_instance, tmp_path, name)
        assert _finish(cold_instance, run, marker, release) == server.process.pid
        assert LATER not in _modules(marker)
    assert not done.exists()

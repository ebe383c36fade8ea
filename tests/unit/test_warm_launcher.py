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
    assert Path(f"/proc/{worker_pid}/stat").read_text().split(") ")[1].split()[1] == str(
        server.process.pid
    )
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

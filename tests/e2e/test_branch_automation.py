"""The whole graph with a real Dagster daemon: new raw files pushed to a new lakeFS branch
with a plain client rebuild that branch's partition by themselves, and main stays as it was."""

import time
from pathlib import Path

import dagster as dg
import lakefs_sdk
import pytest

from dfp.kronodroid.sources import LANDING_PREFIX
from dfp.kronodroid.synthetic import write_release_files
from dfp.lake import wap
from dfp.lake.lakefs_client import LakeFSClient
from dfp_assets.kronodroid.automation import COMMIT_TAG, TRIGGER_TAG
from dfp_assets.kronodroid.jobs import build_all
from tests.integration import dagster_processes as procs

pytestmark = pytest.mark.e2e

BRANCH = "exp-2"


def _plain_client(client: LakeFSClient) -> lakefs_sdk.ApiClient:
    settings = client.settings
    return lakefs_sdk.ApiClient(
        lakefs_sdk.Configuration(
            host=settings.endpoint.rstrip("/") + "/api/v1",
            username=settings.access_key_id,
            password=settings.secret_access_key,
        )
    )


def _push_landing_files(client: LakeFSClient, tmp: Path) -> str:
    """What a user does with lakectl: branch, upload CSVs, commit. Returns the commit id."""
    files = write_release_files(tmp / "landing", scale=0.05, seed=7, fmt="csv")
    with _plain_client(client) as api:
        repo = client.repository
        lakefs_sdk.BranchesApi(api).create_branch(
            repo, lakefs_sdk.BranchCreation(name=BRANCH, source="main")
        )
        for paths in files.values():
            for path in paths:
                lakefs_sdk.ObjectsApi(api).upload_object(
                    repo, BRANCH, f"{LANDING_PREFIX}{path.name}", content=str(path)
                )
        commit = lakefs_sdk.CommitsApi(api).commit(
            repo, BRANCH, lakefs_sdk.CommitCreation(message="new Kronodroid files")
        )
    return commit.id


def _failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Why a run failed: failed steps' errors and failed checks' descriptions."""
    out = []
    for record in instance.get_records_for_run(run_id).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            out.append(f"{event.step_key}: {event.step_failure_data.error.message[:500]}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.asset_check_evaluation_data
            if not check.passed:
                out.append(f"check {check.check_name} failed: {check.description}")
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE:
            out.append(f"run: {record.event_log_entry.message[:500]}")
    return out


def _runs_for(instance: dg.DagsterInstance, commit: str):
    return instance.get_runs(dg.RunsFilter(tags={COMMIT_TAG: commit}))


def test_pushed_files_rebuild_their_branch_through_the_daemon(
    lakefs, instance, tmp_path, monkeypatch
):
    # Automated runs use the deployment's quality floor; 5 % of the synthetic data set does
    # not reach the default 0.8 (full size: 0.84).
    monkeypatch.setenv("DFP_F1_FLOOR", "0.5")
    main_head = lakefs.head("main")
    instance.add_dynamic_partitions("lakefs_branch", ["main"])
    home = instance.root_directory
    daemon_log = lambda: (tmp_path / "daemon.log").read_text()[-4000:]  # noqa: E731
    with procs.daemon(home, tmp_path):
        # The commit sensor's first evaluation records the heads it starts from.
        procs.wait_for(
            "the commit sensor's first tick",
            lambda: procs.sensor_ticks(instance, "lakefs_commit_sensor"),
            detail=daemon_log,
        )
        commit = _push_landing_files(lakefs, tmp_path)
        pushed = time.monotonic()
        runs = procs.wait_for(
            f"a run for commit {commit}",
            lambda: _runs_for(instance, commit),
            timeout=120,
            detail=daemon_log,
        )
        requested = time.monotonic() - pushed
        print(f"commit -> run requested: {requested:.1f} s")
        (run,) = runs
        assert run.job_name == build_all.name and run.tags[TRIGGER_TAG] == "lakefs_commit_sensor"
        assert run.tags["dagster/partition"] == BRANCH

        run_id = run.run_id
        run = procs.wait_for(
            f"run {run_id} to finish",
            lambda: (r := instance.get_run_by_id(run_id)).is_finished and r,
            timeout=900,
            detail=daemon_log,
        )
        assert run.status == dg.DagsterRunStatus.SUCCESS, (
            f"{_failures(instance, run_id)}\n{daemon_log()}"
        )
        print(f"commit -> build_all finished: {time.monotonic() - pushed:.1f} s")

    # Every asset of build_all was materialized on exp-2 and every check passed.
    records = instance.get_records_for_run(run.run_id).records
    events = [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]
    materialized = {
        e.step_materialization_data.materialization.asset_key.to_user_string()
        for e in events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    }
    assert {
        "kronodroid_raw",
        "marts/mart_app_features",
        "feast_online",
        "training_set",
        "malware_model",
        "model_executorch",
        "model_tflite",
        "model_onnx",
    } <= materialized
    checks = [
        e.asset_check_evaluation_data
        for e in events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert checks and all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
    assert any(o.path.endswith("model.pte") for o in lakefs.list_objects(BRANCH, "models/"))

    # main is untouched and no run branch is left behind.
    assert lakefs.head("main") == main_head
    assert not list(lakefs.list_objects("main", "raw/"))
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]

    # A daemon restart does not run the same commit again: after two full evaluations of the
    # commit sensor by the new daemon there is still the one run.
    restarted = time.time()
    with procs.daemon(home, tmp_path):
        procs.wait_for(
            "two commit-sensor ticks after the restart",
            lambda: procs.sensor_ticks(instance, "lakefs_commit_sensor", since=restarted) >= 2,
            detail=daemon_log,
        )
    assert len(_runs_for(instance, commit)) == 1

"""Concurrent runs through a real daemon and the deployment's run queue (dagster.yaml):
two runs on one branch run one after the other (tag concurrency on `dagster/partition`),
a run on another branch runs beside them, and each branch gets exactly its own runs."""

import json
import os
import shutil
import subprocess
import uuid

import dagster as dg

from dfp.settings import PROJECT_ROOT, load_settings
from dfp_resources.environment import resource_run_config
from tests.integration import dagster_processes as procs

SCALE = 0.05


def _launch(home: str, partition: str, seed: int) -> str:
    """Queue `ingest_kronodroid` as the UI does (`dagster job launch`); returns the run id."""
    run_id = str(uuid.uuid4())
    config = {
        "resources": resource_run_config(load_settings()),
        "ops": {
            "kronodroid_raw": {
                "config": {"source": "synthetic", "synthetic_scale": SCALE, "synthetic_seed": seed}
            }
        },
    }
    done = subprocess.run(
        [
            str(procs.BIN / "dagster"),
            *("job", "launch", "-w", str(PROJECT_ROOT / "workspace.yaml")),
            *("-j", "ingest_kronodroid", "--run-id", run_id),
            *("--tags", json.dumps({"dagster/partition": partition})),
            *("--config-json", json.dumps(config)),
        ],
        env={**os.environ, "DAGSTER_HOME": home},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"dagster job launch failed: {done.stderr[-3000:]}"
    return run_id


def _overlap(a, b) -> bool:
    return a.start_time < b.end_time and b.start_time < a.end_time


def test_one_run_per_branch_at_a_time_and_branches_side_by_side(lakefs, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The deployment's own instance file: its run queue is what is under test.
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    lakefs.create_branch("exp", "main")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("lakefs_branch", ["main", "exp"])
        # Queued before the daemon starts, so its first dequeue sees all three at once.
        first, second = _launch(str(home), "main", 1), _launch(str(home), "main", 2)
        other = _launch(str(home), "exp", 3)
        ids = [first, second, other]
        assert all(instance.get_run_by_id(i).status == dg.DagsterRunStatus.QUEUED for i in ids)

        def finished():
            records = [instance.get_run_record_by_id(i) for i in ids]
            return records if all(r.dagster_run.is_finished for r in records) else None

        daemon_log = lambda: (tmp_path / "daemon.log").read_text()[-4000:]  # noqa: E731
        with procs.daemon(str(home), tmp_path):
            a, b, c = procs.wait_for(
                "the three queued runs to finish", finished, timeout=1500, detail=daemon_log
            )
    for record in (a, b, c):
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, (
            f"run {record.dagster_run.run_id} ended {record.dagster_run.status}: {daemon_log()}"
        )
    # One branch: one after the other. Two branches: side by side.
    assert not _overlap(a, b), (a.start_time, a.end_time, b.start_time, b.end_time)
    earlier, later = sorted((a, b), key=lambda r: r.start_time)
    assert _overlap(c, earlier), (c.start_time, c.end_time, earlier.start_time, earlier.end_time)

    # Each branch holds its own publishes only, the later main run's on top.
    def published_runs(branch: str) -> list[str]:
        runs = []
        for commit in lakefs.log(branch, amount=200):
            run_id = (commit.metadata or {}).get("dagster_partition") and commit.metadata.get(
                "dagster_run_id"
            )
            if run_id:
                runs.append(run_id)
        return runs

    main_runs, exp_runs = published_runs("main"), published_runs("exp")
    assert main_runs == [later.dagster_run.run_id, earlier.dagster_run.run_id]
    assert exp_runs == [c.dagster_run.run_id]
    assert lakefs.get_commit("exp").metadata["dagster_partition"] == "exp"

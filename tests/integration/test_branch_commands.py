"""Creating and deleting branch partitions: `dfp branch` and the Dagster jobs."""

import os
import subprocess
import sys

import dagster as dg
import pytest

from dfp_assets.definitions import defs

pytestmark = pytest.mark.integration


def dfp(*args: str, dagster_home) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    return subprocess.run(
        [sys.executable, "-m", "dfp.cli", *args], env=env, capture_output=True, text=True
    )


def partitions(dagster_home) -> list[str]:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return instance.get_dynamic_partitions("lakefs_branch")


def test_dfp_branch_cli(lakefs, tmp_path):
    home = tmp_path / "dagster_home"
    created = dfp("branch", "create", "exp-cli", "--from", "main", dagster_home=home)
    assert created.returncode == 0, created.stderr
    assert lakefs.head("exp-cli") == lakefs.head("main")
    assert partitions(home) == ["exp-cli"]

    listed = dfp("branch", "list", dagster_home=home).stdout
    assert "exp-cli" in listed and "partition" in listed

    again = dfp("branch", "create", "exp-cli", dagster_home=home)
    assert again.returncode != 0 and "exp-cli" in again.stderr  # lakeFS says it exists

    reserved = dfp("branch", "create", "dfp-run-1", dagster_home=home)
    assert reserved.returncode != 0 and "reserved" in reserved.stderr
    assert "dfp-run-1" not in lakefs.list_branches(show_hidden=True)

    assert dfp("branch", "delete", "exp-cli", dagster_home=home).returncode == 0
    assert "exp-cli" not in lakefs.list_branches()
    assert partitions(home) == []
    assert dfp("branch", "delete", "main", dagster_home=home).returncode != 0
    assert "main" in lakefs.list_branches()


def test_branch_jobs(lakefs, instance):
    create = defs.resolve_job_def("create_lakefs_branch")
    result = create.execute_in_process(
        run_config={"ops": {"create_lakefs_branch_op": {"config": {"name": "exp-job"}}}},
        instance=instance,
    )
    assert result.success
    assert "exp-job" in lakefs.list_branches()
    assert instance.get_dynamic_partitions("lakefs_branch") == ["exp-job"]

    delete = defs.resolve_job_def("delete_lakefs_branch")
    result = delete.execute_in_process(
        run_config={"ops": {"delete_lakefs_branch_op": {"config": {"name": "exp-job"}}}},
        instance=instance,
    )
    assert result.success
    assert "exp-job" not in lakefs.list_branches()
    assert instance.get_dynamic_partitions("lakefs_branch") == []

    refused = delete.execute_in_process(
        run_config={"ops": {"delete_lakefs_branch_op": {"config": {"name": "main"}}}},
        instance=instance,
        raise_on_error=False,
    )
    assert not refused.success
    assert "main" in lakefs.list_branches()

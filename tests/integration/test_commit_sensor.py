"""lakefs_commit_sensor on a real lakeFS: which commits request a run, for which partition,
and that a commit is never requested twice."""

import json

import dagster as dg
import pytest

from dfp.kronodroid.sources import LANDING_PREFIX
from dfp_assets.kronodroid.automation import COMMIT_TAG, RAW_FROM_LANDING, lakefs_commit_sensor
from dfp_resources.environment import build_resources

pytestmark = pytest.mark.integration


@pytest.fixture
def evaluate(lakefs, instance):
    resources = {"lakefs": build_resources()["lakefs"]}

    def run(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
            return lakefs_commit_sensor(ctx)

    return run


def test_landing_commits_request_build_all_once(lakefs, instance, evaluate):
    instance.add_dynamic_partitions("lakefs_branch", ["main"])
    lakefs.upload("main", "README.txt", b"hello")
    lakefs.commit("main", "a first commit")
    first = evaluate(None)
    assert not first.run_requests  # main at first sight: only later commits count

    # A branch made and given new raw files before the sensor ever saw it.
    lakefs.create_branch("exp-2", "main")
    lakefs.upload("exp-2", f"{LANDING_PREFIX}kronodroid_real_device.csv", b"sha256,Malware\n")
    commit = lakefs.commit("exp-2", "new files, pushed by hand")
    assert not evaluate(first.cursor).run_requests  # no partition yet: wait for it
    instance.add_dynamic_partitions("lakefs_branch", ["exp-2"])
    second = evaluate(first.cursor)
    (request,) = second.run_requests
    assert request.run_key == f"exp-2:{commit}"
    assert request.partition_key == "exp-2" and request.job_name == "build_all"
    assert request.run_config == RAW_FROM_LANDING and request.tags[COMMIT_TAG] == commit
    assert json.loads(second.cursor)["exp-2"] == commit

    # Nothing new: nothing requested. Commits outside landing/ (dfp's own publishes, benchmark
    # uploads) request nothing either.
    assert not evaluate(second.cursor).run_requests
    lakefs.upload("exp-2", "benchmarks/pixel-8/x.json", b"{}")
    lakefs.upload("exp-2", "raw/kronodroid/real_device/part.parquet", b"x")
    lakefs.commit("exp-2", "not landing", {"dagster_run_id": "abc"})
    third = evaluate(second.cursor)
    assert not third.run_requests

    # New landing files on main (after the first look) do request a main run.
    lakefs.upload("main", f"{LANDING_PREFIX}kronodroid_emulator.csv", b"sha256,Malware\n")
    main_commit = lakefs.commit("main", "emulator release")
    (main_request,) = evaluate(third.cursor).run_requests
    assert main_request.run_key == f"main:{main_commit}" and main_request.partition_key == "main"

"""kronodroid_raw on a real lakeFS: branch isolation, write-audit-publish, the real sample."""

import urllib.parse

import dagster as dg
import pyarrow.parquet as pq
import pytest
import s3fs

from dfp.kronodroid.load import release_prefix
from dfp.kronodroid.schema import Release
from dfp.lake import wap
from tests.integration.jobs import materialize_raw

pytestmark = pytest.mark.integration

SMALL = {"source": "synthetic", "synthetic_scale": 0.03}


def listing(lakefs, ref: str) -> dict[str, str]:
    return {o.path: o.checksum for o in lakefs.list_objects(ref)}


def raw_rows(lakefs, ref: str, release: Release) -> int:
    fs = s3fs.S3FileSystem(**lakefs.s3fs_storage_options())
    paths = [o.path for o in lakefs.list_objects(ref, release_prefix(release))]
    return sum(
        pq.read_metadata(f"{lakefs.repository}/{ref}/{p}", filesystem=fs).num_rows for p in paths
    )


def test_materialize_writes_only_its_own_branch(lakefs, instance):
    result = materialize_raw(instance, "main", {**SMALL, "synthetic_seed": 1})
    assert result.success
    main_head = lakefs.head("main")
    main_objects = listing(lakefs, "main")
    assert any(p.startswith("raw/kronodroid/real_device/") for p in main_objects)
    assert raw_rows(lakefs, "main", Release.REAL_DEVICE) == round(78_137 * 0.03)

    # The publish is one merge commit carrying the run's metadata.
    commit = lakefs.get_commit(main_head)
    assert commit.metadata["dagster_run_id"] == result.run_id
    assert commit.metadata["dagster_assets"] == "kronodroid_raw"
    assert commit.metadata[wap.LAKEFS_UI_LINK_KEY].endswith(f"/runs/{result.run_id}")
    assert len(commit.parents) == 2

    lakefs.create_branch("exp-1", "main")
    result = materialize_raw(
        instance, "exp-1", {**SMALL, "synthetic_seed": 2, "synthetic_scale": 0.02}
    )
    assert result.success
    assert lakefs.head("main") == main_head
    assert listing(lakefs, "main") == main_objects
    exp_objects = listing(lakefs, "exp-1")
    assert exp_objects != main_objects
    assert raw_rows(lakefs, "exp-1", Release.REAL_DEVICE) == round(78_137 * 0.02)
    # No run branch survives a finished run.
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]


def test_materialization_metadata(lakefs, instance):
    result = materialize_raw(instance, "main", {**SMALL, "synthetic_seed": 3})
    assert result.success
    [mat] = result.asset_materializations_for_node("kronodroid_raw")
    meta = mat.metadata
    assert meta["rows_real_device"].value == round(78_137 * 0.03)
    assert meta["rows_emulator"].value == round(63_991 * 0.03)
    assert 0.4 < meta["malware_share_real_device"].value < 0.65
    assert meta["source"].value == "synthetic"
    columns = [c.name for c in meta["dagster/column_schema"].schema.columns]
    assert columns[:3] == ["Package", "Malware", "execve"]
    # The materialization names the run-branch commit, which the published merge contains.
    run_commit = meta["lakefs_commit"].value
    assert run_commit in {c.id for c in lakefs.log("main", 10)}
    # ... and links to it and to what it wrote in lakeFS's UI (the session's lakeFS serves it).
    ui = f"{lakefs.settings.endpoint.rstrip('/')}/repositories/{lakefs.repository}"
    commit_url = meta["lakefs_commit_url"]
    assert isinstance(commit_url, dg.UrlMetadataValue)
    assert commit_url.value == f"{ui}/commits/{run_commit}"
    linked = lakefs.get_commit(commit_url.value.rsplit("/", 1)[1])  # through the lakeFS API
    assert linked.id == run_commit and linked.metadata["dagster_run_id"] == result.run_id
    objects = urllib.parse.urlsplit(meta["lakefs_objects_url"].value)
    assert f"{objects.scheme}://{objects.netloc}{objects.path}" == f"{ui}/objects"
    query = urllib.parse.parse_qs(objects.query)
    assert query == {"ref": [run_commit], "path": ["raw/kronodroid/"]}
    assert list(lakefs.list_objects(query["ref"][0], query["path"][0]))
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "raw_schema": True,
        "sha256_label_conflicts": True,
        "row_count_floor": True,
        "label_balance": True,
    }


def test_real_sample_passes_the_same_path(lakefs, instance, shared_sample_dir):
    result = materialize_raw(
        instance, "main", {"source": "local", "local_dir": str(shared_sample_dir)}
    )
    assert result.success
    assert raw_rows(lakefs, "main", Release.REAL_DEVICE) == 1622
    assert not list(lakefs.list_objects("main", release_prefix(Release.EMULATOR)))
    # The parquet on the branch keeps the source's column names exactly (no snake_casing).
    header = (shared_sample_dir / "real_device_subset_2019.csv").open().readline().strip()
    fs = s3fs.S3FileSystem(**lakefs.s3fs_storage_options())
    [path] = [o.path for o in lakefs.list_objects("main", release_prefix(Release.REAL_DEVICE))]
    written = pq.read_schema(f"{lakefs.repository}/main/{path}", filesystem=fs).names
    assert written == [*header.split(","), "_source_file"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert all(checks.values()) and len(checks) == 4


def test_keep_tag_keeps_failed_run_branch(lakefs, instance):
    head = lakefs.head("main")
    result = materialize_raw(
        instance,
        "main",
        {**SMALL, "synthetic_seed": 4},
        check_config={"min_rows_per_release": 10**9},
        tags={"dfp/keep_run_branch": "true"},
    )
    assert not result.success
    assert lakefs.head("main") == head
    kept = wap.run_branch_name(result.run_id)
    assert kept in lakefs.list_branches(show_hidden=True)
    # The kept branch holds the audited data for debugging.
    assert list(lakefs.list_objects(kept, "raw/kronodroid/real_device/"))


def test_dirty_partition_branch_is_refused_before_any_work(lakefs, instance):
    lakefs.upload("main", "notes/scratch.txt", b"written outside dfp, not committed")
    head = lakefs.head("main")
    result = materialize_raw(instance, "main", {**SMALL, "synthetic_seed": 6})
    assert not result.success
    # The run failed before any step ran, saying why.
    failure = result.get_run_failure_event()
    assert "has uncommitted changes" in str(failure.event_specific_data.error)
    assert not result.get_step_success_events() and not result.get_step_failure_events()
    assert lakefs.head("main") == head
    assert lakefs.has_uncommitted_changes("main")  # the user's change is left alone
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]


def test_multiprocess_executor_publishes_like_the_ui(lakefs, instance):
    """The executor real runs use (a process per step) under write-audit-publish."""
    result = materialize_raw(instance, "main", {**SMALL, "synthetic_seed": 7}, in_process=False)
    assert result.success
    steps = {e.step_key for e in result.get_step_success_events()}
    assert steps == {"kronodroid_raw", "kronodroid_raw_checks"}
    commit = lakefs.get_commit(lakefs.head("main"))
    assert commit.metadata["dagster_run_id"] == result.run_id
    assert commit.metadata["dagster_checks_passed"] == "4"
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]

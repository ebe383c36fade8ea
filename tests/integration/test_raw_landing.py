"""kronodroid_raw with source "lakefs": the files users push under landing/kronodroid/ on the
partition's branch, loaded and audited like any other source; bad ones publish nothing."""

import pytest

from dfp.kronodroid.load import read_releases
from dfp.kronodroid.sources import LANDING_PREFIX
from dfp.kronodroid.synthetic import write_release_files
from dfp.lake import wap
from tests.integration.jobs import materialize_raw
from tests.integration.test_raw_bad_inputs import REAL, good_table, write_csv

pytestmark = pytest.mark.integration

FROM_LANDING = {"source": "lakefs"}


def _error(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return str(failure.step_failure_data.error.message)


def test_raw_loads_the_branchs_landing_files(lakefs, instance, tmp_path):
    files = write_release_files(tmp_path, scale=0.02, seed=3, fmt="csv")
    for paths in files.values():
        for path in paths:
            lakefs.upload("main", f"{LANDING_PREFIX}{path.name}", path.read_bytes())
    lakefs.commit("main", "pushed by hand")
    result = materialize_raw(instance, "main", FROM_LANDING)
    assert result.success
    (mat,) = [
        e.event_specific_data.materialization for e in result.get_asset_materialization_events()
    ]
    assert mat.metadata["source"].value == "lakefs"
    releases = read_releases(lakefs, "main")
    assert len(releases) == 2
    assert sum(t.num_rows for t in releases.values()) == mat.metadata["dagster/row_count"].value


def test_empty_landing_area_fails_clearly(lakefs, instance):
    head = lakefs.head("main")
    result = materialize_raw(instance, "main", FROM_LANDING)
    assert not result.success
    message = _error(result)
    assert LANDING_PREFIX in message and "no files to load" in message
    assert lakefs.head("main") == head


def test_bad_landing_file_publishes_nothing(lakefs, instance, tmp_path):
    bad = write_csv(good_table().drop_columns(["Malware"]), tmp_path / f"{REAL}.csv")
    lakefs.upload("main", f"{LANDING_PREFIX}{bad.name}", bad.read_bytes())
    head = lakefs.commit("main", "a file without labels")
    result = materialize_raw(instance, "main", FROM_LANDING)
    assert not result.success
    message = _error(result)
    assert f"{REAL}.csv" in message and "Malware" in message
    assert lakefs.head("main") == head
    assert not list(lakefs.list_objects("main", "raw/"))
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]

"""kronodroid_raw with source "lakefs": the files users push under landing/kronodroid/ on the
partition's branch, loaded and audited like any other source; bad ones publish nothing."""

import pytest

from dfp.kronodroid.load import read_releases
from dfp.kronodroid.sources import LANDING_PREFIX
from dfp.kronodroid.synthetic import write_release_files
from dfp.lake import wap
from tests.integration.jobs import materialize_raw
from tests.integration.test_raw_bad_inputs import REAL, ROWS, good_table, write_csv

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


def _rows(lakefs, ref: str) -> dict:
    return {release: table.num_rows for release, table in read_releases(lakefs, ref).items()}


def test_zip_and_csv_gz_landing_files_load_the_rows_of_the_plain_csv(lakefs, instance, tmp_path):
    """The forms users have: Kaggle's zip (files in a folder inside) and gzip-compressed
    CSV load the same rows as the plain CSV files, each on its own branch."""
    import gzip
    import zipfile

    files = write_release_files(tmp_path, scale=0.02, seed=5, fmt="csv")
    paths = [p for group in files.values() for p in group]
    archive = tmp_path / "kronodroid-2021.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as packed:
        for path in paths:
            packed.writestr(f"kronodroid-2021/{path.name}", path.read_bytes())
    forms = {
        "main": [(p.name, p.read_bytes()) for p in paths],
        "zipped": [(archive.name, archive.read_bytes())],
        "gzipped": [(f"{p.name}.gz", gzip.compress(p.read_bytes())) for p in paths],
    }
    for branch in forms:  # all from main before any upload: each holds its own form only
        if branch != "main":
            lakefs.create_branch(branch, "main")
    for branch, uploads in forms.items():
        for name, data in uploads:
            lakefs.upload(branch, f"{LANDING_PREFIX}{name}", data)
        lakefs.commit(branch, f"landing files as {branch}")
        assert materialize_raw(instance, branch, FROM_LANDING).success, branch
    plain = _rows(lakefs, "main")
    assert len(plain) == 2 and all(plain.values())
    assert _rows(lakefs, "zipped") == plain
    assert _rows(lakefs, "gzipped") == plain


@pytest.mark.parametrize(
    ("name", "mangle", "expected"),
    [
        ("semicolons-real.csv", lambda b: b.replace(b",", b";"), "looks semicolon-delimited"),
        ("tabs-real.csv.gz", lambda b: b.replace(b",", b"\t"), "looks tab-delimited"),
        ("ragged-real.csv", lambda b: b + b'"com.x",1\n', f"row {ROWS + 1}: row has 2 fields"),
    ],
)
def test_oddly_shaped_landing_files_publish_nothing(
    lakefs, instance, tmp_path, name, mangle, expected
):
    import gzip

    good = write_csv(good_table(), tmp_path / f"{REAL}.csv").read_bytes()
    data = mangle(good)
    if name.endswith(".gz"):
        data = gzip.compress(data)
    lakefs.upload("main", f"{LANDING_PREFIX}{name}", data)
    head = lakefs.commit("main", f"pushed {name}")
    result = materialize_raw(instance, "main", FROM_LANDING)
    assert not result.success
    message = _error(result)
    assert name in message and expected in message, message
    assert len(message) < 2000
    assert lakefs.head("main") == head
    assert not list(lakefs.list_objects("main", "raw/"))

"""Bad Kronodroid inputs: each fails clearly and publishes nothing to the partition branch."""

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dfp.kronodroid.schema import Release
from dfp.kronodroid.synthetic import generate_release
from dfp.lake import wap
from tests.integration.jobs import materialize_raw

pytestmark = pytest.mark.integration

ROWS = 1500
REAL = "kronodroid-2021-real-v1"


def good_table(seed: int = 7) -> pa.Table:
    return generate_release(Release.REAL_DEVICE, ROWS, seed)


def write_csv(table: pa.Table, path: Path) -> Path:
    pacsv.write_csv(table, path)
    return path


def replace_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def with_value(table: pa.Table, name: str, row: int, value, type_=None) -> pa.Table:
    values = table.column(name).to_pylist()
    if type_ == pa.string():
        values = [None if v is None else str(v) for v in values]
    values[row] = value
    return replace_column(
        table, name, pa.array(values, type=type_ or table.schema.field(name).type)
    )


# Each case writes a bad input directory and says how the failure must show.
def case_missing_label(d: Path):
    write_csv(good_table().drop_columns(["Malware"]), d / f"{REAL}.csv")
    return "error", [f"{REAL}.csv", "Malware"]


def case_unknown_column(d: Path):
    t = good_table()
    write_csv(t.append_column("Surprise", pa.array([1] * t.num_rows)), d / f"{REAL}.csv")
    return "error", [f"{REAL}.csv", "Surprise"]


def case_text_in_count(d: Path):
    t = with_value(good_table(), "execve", 41, "lots", pa.string())
    write_csv(t, d / f"{REAL}.csv")
    return "error", [f"{REAL}.csv", "'execve'", "row 42", "'lots'"]


def case_empty_file(d: Path):
    (d / f"{REAL}.csv").write_bytes(b"")
    return "error", [f"{REAL}.csv", "empty"]


def case_truncated_parquet(d: Path):
    path = d / f"{REAL}.parquet"
    pq.write_table(good_table(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "error", [f"{REAL}.parquet", "parquet"]


def case_non_utf8(d: Path):
    t = with_value(good_table(), "MalFamily", 10, "FAMILY_MARK")
    path = write_csv(t, d / f"{REAL}.csv")
    path.write_bytes(path.read_bytes().replace(b"FAMILY_MARK", b"Fam\xff\xfeily"))
    return "error", [f"{REAL}.csv", "'MalFamily'", "row 11", "UTF-8"]


def case_conflicting_duplicates(d: Path):
    t = good_table()
    sha = t.column("sha256").to_pylist()
    label = t.column("Malware").to_pylist()
    for i in range(0, 40, 2):  # 20 sha256 values listed twice with opposite labels
        sha[i + 1] = sha[i]
        label[i + 1] = 1 - label[i]
    t = replace_column(t, "sha256", pa.array(sha))
    t = replace_column(t, "Malware", pa.array(label, pa.int64()))
    write_csv(t, d / f"{REAL}.csv")
    return "check", ["sha256_label_conflicts"]


def case_negative_counts(d: Path):
    t = with_value(good_table(), "nr_syscalls", 5, -12)
    write_csv(t, d / f"{REAL}.csv")
    return "check", ["raw_schema", f"{REAL}.csv", "nr_syscalls", "-12"]


def case_label_out_of_set(d: Path):
    t = replace_column(good_table(), "Malware", pc.add(good_table().column("Malware"), 1))
    write_csv(t, d / f"{REAL}.csv")
    return "check", ["raw_schema", "Malware"]


def case_header_only(d: Path):
    write_csv(good_table().slice(0, 0), d / f"{REAL}.csv")
    return "error", [f"{REAL}.csv", "no data rows"]


CASES = [
    case_missing_label,
    case_unknown_column,
    case_text_in_count,
    case_empty_file,
    case_truncated_parquet,
    case_non_utf8,
    case_conflicting_duplicates,
    case_negative_counts,
    case_label_out_of_set,
    case_header_only,
]


@pytest.fixture
def published_main(lakefs, instance):
    """main already holds good raw data, so 'unchanged' is about real content."""
    result = materialize_raw(instance, "main", {"source": "synthetic", "synthetic_scale": 0.02})
    assert result.success
    return lakefs.head("main")


@pytest.mark.parametrize("make_case", CASES, ids=lambda f: f.__name__.removeprefix("case_"))
def test_bad_input_fails_clearly_and_publishes_nothing(
    make_case, tmp_path, lakefs, instance, published_main
):
    kind, must_mention = make_case(tmp_path)
    objects_before = {o.path: o.checksum for o in lakefs.list_objects("main")}

    result = materialize_raw(instance, "main", {"source": "local", "local_dir": str(tmp_path)})

    assert not result.success
    if kind == "error":
        [failure] = result.get_step_failure_events()
        assert failure.step_key == "kronodroid_raw"
        message = failure.step_failure_data.user_failure_data.description
        for text in must_mention:
            assert text in message, f"{text!r} not in {message!r}"
        assert not result.get_asset_check_evaluations()  # checks never ran
    else:
        check_name, *details = must_mention
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert evaluations[check_name].passed is False
        shown = str(evaluations[check_name].metadata)
        for text in details:
            assert text in shown, f"{text!r} not in check metadata"

    assert lakefs.head("main") == published_main
    assert {o.path: o.checksum for o in lakefs.list_objects("main")} == objects_before
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]

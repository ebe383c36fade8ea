"""comments_raw on a real lakeFS: the shared sample on main, a branch with changed rows (main
untouched, Delta read back per branch with deltalake), bad inputs refused with nothing
published, and a batch of changes applied by id."""

import csv
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from dfp.lake import wap
from dfp.settings import load_settings
from dfp.toxic.load import (
    CDC_SOURCE,
    TABLE_PREFIX,
    apply_changes,
    delta_storage_options,
    read_comments,
    table_uri,
)
from dfp.toxic.records import CommentChange, comment_id
from dfp_assets.definitions import ingest_comments_job
from dfp_assets.toxic.raw import SHARED_SAMPLE
from dfp_resources.environment import resource_run_config

pytestmark = pytest.mark.integration

SAMPLE_FILE = SHARED_SAMPLE / "text_comment_1.csv"
SMALL = {"source": "synthetic", "synthetic_scale": 0.01}  # 1,600 comments


@pytest.fixture
def toxic_sample_dir() -> Path:
    """The real 10,000-comment sample in ../shared (absent in a user's clone: skip then)."""
    if not SAMPLE_FILE.is_file():
        pytest.skip("../shared/data/toxic_comments is not present")
    return SHARED_SAMPLE


def ingest(instance, partition: str, raw_config: dict, *, check_config: dict | None = None):
    """Run `ingest_comments` for one branch partition through the Definitions' executor."""
    if partition not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", [partition])
    ops: dict = {"comments_raw": {"config": raw_config}}
    if check_config:
        ops["comments_raw_checks"] = {"config": check_config}
    run_config = {
        "ops": ops,
        "resources": resource_run_config(load_settings()),
        "execution": {"config": {"in_process": {}}},
    }
    with dg.execute_job(
        dg.reconstructable(ingest_comments_job),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": partition},
        raise_on_error=False,
    ) as result:
        return result


def listing(lakefs, ref: str) -> dict[str, str]:
    return {o.path: o.checksum for o in lakefs.list_objects(ref)}


def no_run_branches(lakefs) -> bool:
    return not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]


def sample_rows() -> list[tuple[str, int]]:
    csv.field_size_limit(sys.maxsize)
    with SAMPLE_FILE.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [(text, int(label)) for text, label in reader]


def write_rows(path: Path, rows: list[tuple[str, int]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["comment_text", "labels"])
        writer.writerows(rows)
    return path


def test_shared_sample_on_main_then_changed_rows_on_a_branch(
    lakefs, instance, toxic_sample_dir, tmp_path
):
    result = ingest(instance, "main", {"source": "shared"})
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "raw_schema": True,
        "labels_binary": True,
        "non_empty_text": True,
        "unique_ids": True,
        "duplicate_text": True,
        "row_count_floor": True,
    }
    [mat] = result.asset_materializations_for_node("comments_raw")
    print(
        f"\nshared sample raw load: {mat.metadata['dagster/row_count'].value} rows, "
        f"{mat.metadata['rows_per_second'].value} rows/s (dlt → Delta on lakeFS)"
    )
    main_head = lakefs.head("main")
    # One publish merge; the Delta log is part of what it published (nothing left uncommitted).
    assert lakefs.get_commit(main_head).metadata["dagster_run_id"] == result.run_id
    assert f"{TABLE_PREFIX}_delta_log/00000000000000000000.json" in listing(lakefs, "main")
    assert not lakefs.has_uncommitted_changes("main")
    assert no_run_branches(lakefs)

    main_table = read_comments(lakefs, "main")
    rows = sample_rows()
    assert main_table.num_rows == 10_000
    assert sum(main_table.column("labels").to_pylist()) == 971
    by_id = dict(
        zip(main_table["id"].to_pylist(), main_table["comment_text"].to_pylist(), strict=True)
    )
    assert by_id[comment_id(rows[0][0])] == rows[0][0]  # embedded newlines survive
    assert set(main_table["source"].to_pylist()) == {"shared:text_comment_1.csv"}
    main_objects = listing(lakefs, "main")

    # A branch whose file has changed rows: 5 relabelled, 10 dropped, 3 new.
    changed = [(t, 1 - label) if i < 5 else (t, label) for i, (t, label) in enumerate(rows)]
    changed = changed[:100] + changed[110:] + [(f"a brand new comment {i}", 0) for i in range(3)]
    local = tmp_path / "changed"
    local.mkdir()
    write_rows(local / "text_comment_1.csv", changed)
    lakefs.create_branch("exp-1", "main")
    result = ingest(instance, "exp-1", {"source": "local", "local_dir": str(local)})
    assert result.success

    assert lakefs.head("main") == main_head
    assert listing(lakefs, "main") == main_objects
    exp_table = read_comments(lakefs, "exp-1")
    assert exp_table.num_rows == 10_000 - 10 + 3
    exp_labels = dict(
        zip(exp_table["id"].to_pylist(), exp_table["labels"].to_pylist(), strict=True)
    )
    for text, label in rows[:5]:
        assert exp_labels[comment_id(text)] == 1 - label
    assert comment_id(rows[105][0]) not in exp_labels
    assert comment_id("a brand new comment 2") in exp_labels
    # main read again (by branch and by its commit id) is still exactly the sample.
    assert read_comments(lakefs, "main").equals(main_table)
    assert read_comments(lakefs, main_head).equals(main_table)


def test_same_files_again_reuse_the_published_table(lakefs, instance):
    first = ingest(instance, "main", SMALL)
    assert first.success
    objects = listing(lakefs, "main")
    again = ingest(instance, "main", SMALL)
    assert again.success
    [mat] = again.asset_materializations_for_node("comments_raw")
    assert mat.metadata["reused_from_run"].value == first.run_id
    assert {p: c for p, c in listing(lakefs, "main").items() if p.startswith("raw/")} == {
        p: c for p, c in objects.items() if p.startswith("raw/")
    }


def test_failing_check_publishes_nothing(lakefs, instance):
    assert ingest(instance, "main", SMALL).success
    head = lakefs.head("main")
    result = ingest(
        instance, "main", {**SMALL, "synthetic_seed": 1}, check_config={"min_rows": 10**6}
    )
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["row_count_floor"] is False
    assert lakefs.head("main") == head
    assert no_run_branches(lakefs)


def bad_empty_text(d: Path):
    (d / "c.csv").write_text('comment_text,labels\nfine,0\n"   ",1\n')
    return ["c.csv", "'comment_text'", "row 2", "empty comment text"]


def bad_label_two(d: Path):
    (d / "c.csv").write_text("comment_text,labels\nfine,0\nfine too,1\nwhat,2\n")
    return ["c.csv", "'labels'", "row 3", "'2'"]


def bad_non_utf8(d: Path):
    (d / "c.csv").write_bytes(b'comment_text,labels\nfine,0\n"caf\xe9\nau lait",0\n')
    return ["c.csv", "'comment_text'", "row 2", "not UTF-8", "byte offset 31"]


def bad_ten_megabytes(d: Path):
    (d / "c.csv").write_text("comment_text,labels\nfine,0\n" + "z" * 10_485_760 + ",1\n")
    return ["c.csv", "'comment_text'", "row 2", "10,485,760 bytes exceeds the limit"]


def bad_missing_column(d: Path):
    (d / "c.csv").write_text("comment_text\nno label here\n")
    return ["c.csv", "'labels'", "missing required column"]


def bad_conflicting_ids(d: Path):
    uid = "6f1d8a52-3c1e-4f0e-9a57-2b7d5e0c9a00"
    (d / "c.csv").write_text(f"id,comment_text,labels\n{uid},same,0\n{uid},same,1\n")
    return ["c.csv", "'labels'", "row 2", f"id {uid} has label 0 at c.csv row 1"]


BAD = [
    bad_empty_text,
    bad_label_two,
    bad_non_utf8,
    bad_ten_megabytes,
    bad_missing_column,
    bad_conflicting_ids,
]


@pytest.mark.parametrize("make_bad", BAD, ids=lambda f: f.__name__.removeprefix("bad_"))
def test_bad_input_is_refused_and_nothing_published(make_bad, lakefs, instance, tmp_path):
    assert ingest(instance, "main", SMALL).success
    head, objects = lakefs.head("main"), listing(lakefs, "main")
    must_mention = make_bad(tmp_path)

    result = ingest(instance, "main", {"source": "local", "local_dir": str(tmp_path)})

    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "comments_raw"
    user = failure.step_failure_data.user_failure_data
    for text in must_mention:
        assert text in user.description, f"{text!r} not in {user.description!r}"
    assert user.metadata["file"].value == "c.csv"
    assert "column" in user.metadata
    assert not result.get_asset_check_evaluations()  # the audit never ran
    assert lakefs.head("main") == head and listing(lakefs, "main") == objects
    assert no_run_branches(lakefs)


def test_apply_changes_upserts_and_deletes_by_id(lakefs, instance):
    from deltalake import DeltaTable

    assert ingest(instance, "main", SMALL).success
    before = read_comments(lakefs, "main")
    ids = before["id"].to_pylist()
    texts = dict(zip(ids, before["comment_text"].to_pylist(), strict=True))
    lakefs.create_branch("cdc", "main")
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    new_id = comment_id("inserted through CDC")

    def at(i: int) -> datetime:
        return t0 + timedelta(seconds=i)

    batch = [
        CommentChange("upsert", new_id, "inserted through CDC", 0, at(1), "c:0:1"),
        CommentChange("upsert", ids[0], "edited text", 1, at(2), "c:0:2"),
        CommentChange("delete", ids[1], None, None, at(3), "c:0:3"),
        CommentChange("upsert", ids[2], "first edit", 0, at(4), "c:0:4"),
        CommentChange("upsert", ids[2], "second edit", 1, at(5), "c:0:5"),
        CommentChange("delete", ids[3], None, None, at(6), "c:0:6"),
        CommentChange("upsert", ids[3], "back again", 0, at(7), "c:0:7"),
        CommentChange("delete", comment_id("never existed"), None, None, at(8), "c:0:8"),
    ]
    applied = apply_changes(lakefs, "cdc", batch)
    assert (applied.inserted, applied.updated, applied.deleted) == (1, 3, 1)
    lakefs.commit("cdc", "apply changes", {})

    expected = {
        i: (texts[i], label, source)
        for i, label, source in zip(
            ids, before["labels"].to_pylist(), before["source"].to_pylist(), strict=True
        )
    }
    del expected[ids[1]]
    expected[new_id] = ("inserted through CDC", 0, CDC_SOURCE)
    expected[ids[0]] = ("edited text", 1, CDC_SOURCE)
    expected[ids[2]] = ("second edit", 1, CDC_SOURCE)
    expected[ids[3]] = ("back again", 0, CDC_SOURCE)
    after = read_comments(lakefs, "cdc")
    got = {r["id"]: (r["comment_text"], r["labels"], r["source"]) for r in after.to_pylist()}
    assert got == expected
    assert {r["id"]: r["ingested_at"] for r in after.to_pylist()}[ids[2]] == at(5)

    # The same batch again (a redelivery) leaves exactly the same rows.
    apply_changes(lakefs, "cdc", batch)
    lakefs.commit("cdc", "apply again", {})
    assert read_comments(lakefs, "cdc").equals(after)
    # main still holds the table as loaded, at its own Delta version.
    assert read_comments(lakefs, "main").equals(before)
    options = delta_storage_options(lakefs)
    assert DeltaTable(table_uri(lakefs.repository, "main"), storage_options=options).version() == 0
    assert DeltaTable(table_uri(lakefs.repository, "cdc"), storage_options=options).version() == 2


def test_apply_changes_creates_a_missing_table(lakefs):
    lakefs.create_branch("fresh", "main")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    applied = apply_changes(
        lakefs,
        "fresh",
        [
            CommentChange("upsert", comment_id("a"), "a", 0, now, "c:0:1"),
            CommentChange("delete", comment_id("b"), None, None, now, "c:0:2"),
        ],
    )
    assert applied.inserted == 1
    table = read_comments(lakefs, "fresh")
    assert table["comment_text"].to_pylist() == ["a"]
    assert table.schema.field("ingested_at").type == pa.timestamp("us", tz="UTC")

"""Reading toxic-comment files: the shared sample's shape, ids, and every refusal the issue
names (empty text, label 2, non-UTF-8, a 10 MB comment, missing column, conflicting ids)."""

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfp.settings import PROJECT_ROOT
from dfp.toxic.records import RAW_COLUMNS, CommentChange, comment_id
from dfp.toxic.sources import (
    RAW_SCHEMA,
    ToxicInputError,
    collapse_changes,
    discover_files,
    read_source,
)

SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "toxic_comments" / "text_comment_1.csv"


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def refused(path: Path, **kwargs) -> ToxicInputError:
    with pytest.raises(ToxicInputError) as info:
        read_source(path, source="local", **kwargs)
    return info.value


def test_shared_sample_reads_whole():
    if not SAMPLE.is_file():
        pytest.skip("../shared/data/toxic_comments is not present")
    comments = read_source(SAMPLE.parent, source="shared")
    assert comments.rows_read == 10_000 and len(comments.ids) == 10_000
    assert sum(comments.labels) == 971
    assert sum("\n" in t for t in comments.texts) == 5_937
    assert comments.ids[0] == comment_id(comments.texts[0])
    table = comments.to_arrow()
    assert table.schema == RAW_SCHEMA and tuple(table.column_names) == RAW_COLUMNS
    assert set(table.column("source").to_pylist()) == {"shared:text_comment_1.csv"}


def test_embedded_newlines_and_content_ids(tmp_path):
    path = write(tmp_path / "c.csv", 'comment_text,labels\n"line one\nline two",0\nhey,1\n')
    comments = read_source(path, source="local")
    assert comments.texts == ["line one\nline two", "hey"]
    assert comments.labels == [0, 1]
    assert comments.ids == [comment_id("line one\nline two"), comment_id("hey")]


def test_source_ids_parquet_and_gzip(tmp_path):
    ids = ["6f1d8a52-3c1e-4f0e-9a57-2b7d5e0c9a00", "6F1D8A52-3C1E-4F0E-9A57-2B7D5E0C9A01"]
    pq.write_table(
        pa.table({"id": ids, "comment_text": ["a", "b"], "labels": [0, 1]}), tmp_path / "p.parquet"
    )
    write(tmp_path / "z.csv.gz", gzip.compress(b"comment_text,labels\nzipped,1\n"))
    comments = read_source(tmp_path, source="local")
    assert comments.files == ["p.parquet", "z.csv.gz"]
    assert comments.ids == [ids[0], ids[1].lower(), comment_id("zipped")]
    assert comments.labels == [0, 1, 1]


def test_exact_duplicates_are_collapsed_and_counted(tmp_path):
    write(tmp_path / "a.csv", "comment_text,labels\nsame,0\nother,1\nsame,0\n")
    write(tmp_path / "b.csv", "comment_text,labels\nsame,0\n")
    comments = read_source(tmp_path, source="local")
    assert comments.texts == ["same", "other"]
    assert comments.rows_read == 4 and comments.duplicates_collapsed == 2


def test_empty_text_is_refused(tmp_path):
    error = refused(write(tmp_path / "e.csv", 'comment_text,labels\nok,0\n"  \n ",1\n'))
    assert (error.file, error.row, error.column) == ("e.csv", 2, "comment_text")
    assert "empty comment text" in str(error)


def test_label_two_is_refused(tmp_path):
    error = refused(write(tmp_path / "l.csv", "comment_text,labels\nok,0\nbad,2\n"))
    assert (error.file, error.row, error.column, error.value) == ("l.csv", 2, "labels", "2")
    assert "label must be 0 or 1" in str(error)


def test_label_two_in_parquet_is_refused(tmp_path):
    pq.write_table(pa.table({"comment_text": ["a", "b"], "labels": [1, 2]}), tmp_path / "x.parquet")
    error = refused(tmp_path / "x.parquet")
    assert (error.row, error.column, error.value) == (2, "labels", 2)


def test_non_utf8_names_row_and_byte_offset(tmp_path):
    content = b'comment_text,labels\nfine,0\n"multi\nline caf\xe9",1\nlater,0\n'
    error = refused(write(tmp_path / "latin1.csv", content))
    offset = content.index(b"\xe9")
    assert (error.file, error.row, error.column) == ("latin1.csv", 2, "comment_text")
    assert f"byte offset {offset}" in str(error) and "0xe9" in str(error)


def test_ten_megabyte_comment_is_refused(tmp_path):
    huge = "x" * (10 * 1024 * 1024)
    error = refused(write(tmp_path / "big.csv", f'comment_text,labels\nok,0\n"{huge}",1\n'))
    assert (error.file, error.row, error.column) == ("big.csv", 2, "comment_text")
    assert "10,485,760 bytes exceeds the limit of 100,000 bytes" in str(error)
    assert len(str(error)) < 300  # the message shows a preview, not the comment


def test_size_limit_is_configurable(tmp_path):
    path = write(tmp_path / "c.csv", "comment_text,labels\n" + "y" * 50 + ",0\n")
    assert refused(path, max_comment_bytes=49).row == 1
    assert len(read_source(path, source="local", max_comment_bytes=50).ids) == 1


@pytest.mark.parametrize("header", ["comment_text", "labels", "text,labels"])
def test_missing_column_is_refused(tmp_path, header):
    error = refused(write(tmp_path / "m.csv", f"{header}\nabc\n"))
    assert error.file == "m.csv"
    assert error.column in {"labels", "comment_text", "text"}
    assert "missing required column" in str(error) or "unknown column" in str(error)


def test_duplicate_ids_with_different_labels_are_refused(tmp_path):
    write(tmp_path / "a.csv", "comment_text,labels\nsame,0\n")
    write(tmp_path / "b.csv", "comment_text,labels\nother,1\nsame,1\n")
    error = refused(tmp_path)
    assert (error.file, error.row, error.column, error.value) == ("b.csv", 2, "labels", 1)
    assert "a.csv row 1" in str(error)


def test_same_source_id_with_another_text_is_refused(tmp_path):
    uid = "6f1d8a52-3c1e-4f0e-9a57-2b7d5e0c9a00"
    path = write(tmp_path / "i.csv", f"id,comment_text,labels\n{uid},a,0\n{uid},b,0\n")
    error = refused(path)
    assert (error.row, error.column) == (2, "comment_text")


def test_non_uuid_source_id_is_refused(tmp_path):
    error = refused(write(tmp_path / "i.csv", "id,comment_text,labels\n42,a,0\n"))
    assert (error.row, error.column, error.value) == (1, "id", "42")


def test_no_files_and_wrong_width(tmp_path):
    with pytest.raises(ToxicInputError, match="no comment files"):
        discover_files(tmp_path)
    error = refused(write(tmp_path / "w.csv", "comment_text,labels\na,0,extra\n"))
    assert error.row == 1 and "3 fields" in str(error)


def change(op, id_, text=None, label=None, pos="t:0:0"):
    return CommentChange(op, id_, text, label, datetime(2026, 1, 1, tzinfo=UTC), pos)


def test_collapse_changes_keeps_the_last_per_id_in_stream_order():
    batch = [
        change("upsert", "a", "one", 0, "t:0:1"),
        change("upsert", "b", "two", 1, "t:0:2"),
        change("upsert", "a", "uno", 1, "t:0:3"),
        change("delete", "b", pos="t:0:4"),
    ]
    last = collapse_changes(batch)
    assert list(last) == ["a", "b"]
    assert last["a"].comment_text == "uno" and last["b"].op == "delete"


def test_bad_change_names_its_position():
    with pytest.raises(ToxicInputError) as info:
        collapse_changes([change("upsert", "a", "x", 2, "comments:0:17")])
    assert info.value.file == "change comments:0:17" and info.value.column == "labels"


def test_a_bad_value_replaced_later_in_the_batch_is_not_applied_nor_refused():
    batch = [
        change("upsert", "a", "", 1, "t:0:1"),  # refused alone: empty text
        change("upsert", "a", "fixed", 1, "t:0:2"),
    ]
    assert collapse_changes(batch)["a"].comment_text == "fixed"
    with pytest.raises(ToxicInputError) as info:
        collapse_changes(batch[:1])
    assert info.value.file == "change t:0:1" and info.value.column == "comment_text"

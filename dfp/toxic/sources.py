"""Where raw comments come from, and the rules a comment must follow to enter `comments_raw`.

Pure logic (no Dagster). A source is a file or a directory of CSV (`.csv`, `.csv.gz`) or parquet
files with columns `comment_text`, `labels` and optionally `id` (the shared sample has no ids:
then the id is `comment_id(text)`). Every refusal is a `ToxicInputError` naming the file, the row
(1-based data row, header excluded), the column and the offending value.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from dfp.toxic.records import ID, INGESTED_AT, LABEL, SOURCE, TEXT, CommentChange, comment_id

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet")
REQUIRED_COLUMNS = (TEXT, LABEL)
#: A comment longer than this (UTF-8 bytes) is refused: the sample's longest is 5,000 characters,
#: so anything far beyond is a broken file (an unclosed quote swallowing the rest) or abuse.
DEFAULT_MAX_COMMENT_BYTES = 100_000
LABELS = frozenset({0, 1})

#: The Arrow schema of `comments_raw` (the Delta table's columns, in `RAW_COLUMNS` order).
RAW_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(TEXT, pa.string(), nullable=False),
        pa.field(LABEL, pa.int64(), nullable=False),
        pa.field(SOURCE, pa.string(), nullable=False),
        pa.field(INGESTED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


class ToxicInputError(ValueError):
    """Bad input: names the file and, where known, the column, row and offending value."""

    def __init__(
        self,
        file: str,
        problem: str,
        *,
        column: str | None = None,
        row: int | None = None,
        value: object = None,
    ):
        self.file, self.problem, self.column, self.row, self.value = (
            file,
            problem,
            column,
            row,
            value,
        )
        where = f"{file}"
        if column is not None:
            where += f", column '{column}'"
        if row is not None:
            where += f", row {row}"
        detail = f" (value {value!r})" if value is not None else ""
        super().__init__(f"{where}: {problem}{detail}")


def preview(text: str, width: int = 60) -> str:
    """A comment cut short enough for an error message or a check's metadata."""
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class Comments:
    """Comments read from a source, validated and deduplicated (first occurrence kept)."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    rows_read: int = 0
    duplicates_collapsed: int = 0  # rows identical to an earlier one (same id, text, label)
    files: list[str] = field(default_factory=list)

    def to_arrow(self, ingested_at: datetime | None = None) -> pa.Table:
        at = ingested_at or datetime.now(UTC)
        return pa.Table.from_arrays(
            [
                pa.array(self.ids, pa.string()),
                pa.array(self.texts, pa.string()),
                pa.array(self.labels, pa.int64()),
                pa.array(self.sources, pa.string()),
                pa.array([at] * len(self.ids), pa.timestamp("us", tz="UTC")),
            ],
            schema=RAW_SCHEMA,
        )


def discover_files(location: Path) -> list[Path]:
    """The comment files at `location`: the file itself, or every data file under the
    directory (recursively, dot files skipped), in name order."""
    if location.is_file():
        if not location.name.lower().endswith(DATA_SUFFIXES):
            raise ToxicInputError(str(location), f"not a comment file ({', '.join(DATA_SUFFIXES)})")
        return [location]
    if not location.is_dir():
        raise ToxicInputError(str(location), "source does not exist")
    files = sorted(
        p
        for p in location.rglob("*")
        if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES) and not p.name.startswith(".")
    )
    if not files:
        raise ToxicInputError(str(location), f"no comment files ({', '.join(DATA_SUFFIXES)}) found")
    return files


def _decode(name: str, data: bytes) -> str:
    """UTF-8 text of a CSV file; a bad byte is named by its offset and CSV row."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Everything before the bad byte is valid: count the complete records there.
        # A stand-in character where the bad byte was makes the record holding it the last.
        before = data[: exc.start].decode("utf-8") + "x"
        csv.field_size_limit(sys.maxsize)
        records = list(csv.reader(io.StringIO(before, newline="")))
        row = len(records) - 1  # the header is record 1
        # The field the stand-in ended up in is the bad byte's column.
        header, last = records[0], records[-1]
        column = header[len(last) - 1].strip() if row and len(last) <= len(header) else None
        raise ToxicInputError(
            name,
            f"not UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start}"
            + (" (in the header)" if row == 0 else ""),
            row=row or None,
            column=column,
            value=data[max(exc.start - 20, 0) : exc.start + 1],
        ) from None


def _csv_rows(name: str, data: bytes) -> tuple[list[str], Iterator[list[str]]]:
    text = _decode(name, data)
    # Field sizes are checked per comment (with the configured limit and a clear error);
    # csv's own limit (128 kB) would stop a large field with a less helpful message.
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ToxicInputError(name, "empty file: no header") from None
    return [h.strip() for h in header], reader


def _columns_of(name: str, header: list[str]) -> dict[str, int]:
    known = (ID, *REQUIRED_COLUMNS)
    index: dict[str, int] = {}
    for position, column in enumerate(header):
        if column.startswith("__index_level_"):
            continue  # pandas' index in parquet files
        if column not in known:
            raise ToxicInputError(
                name, f"unknown column (expected {', '.join(known)})", column=column
            )
        if column in index:
            raise ToxicInputError(name, "duplicate column", column=column)
        index[column] = position
    for column in REQUIRED_COLUMNS:
        if column not in index:
            raise ToxicInputError(
                name, f"missing required column (columns: {header})", column=column
            )
    return index


def _records(path: Path) -> Iterator[tuple[int, str | None, object, object]]:
    """(row, id or None, text, label) of every data row of one file, as the file holds them."""
    name = path.name
    lower = name.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ToxicInputError(name, f"not a readable parquet file: {exc}") from None
        index = _columns_of(name, table.column_names)
        texts = table.column(TEXT).to_pylist()
        labels = table.column(LABEL).to_pylist()
        ids = table.column(ID).to_pylist() if ID in index else [None] * len(texts)
        for row, (id_, text, label) in enumerate(zip(ids, texts, labels, strict=True), start=1):
            yield row, id_, text, label
        return
    raw = path.read_bytes()
    if lower.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ToxicInputError(name, f"not a readable gzip file: {exc}") from None
    header, reader = _csv_rows(name, raw)
    index = _columns_of(name, header)
    width = len(header)
    try:
        for row, values in enumerate(reader, start=1):
            if not values:
                continue  # a blank line between records
            if len(values) != width:
                raise ToxicInputError(
                    name, f"{len(values)} fields, header has {width}", row=row, value=values[:3]
                )
            id_ = values[index[ID]] if ID in index else None
            yield row, id_, values[index[TEXT]], values[index[LABEL]]
    except csv.Error as exc:
        raise ToxicInputError(name, f"malformed CSV: {exc}", row=reader.line_num) from None


def parse_label(name: str, row: int, value: object) -> int:
    """0 or 1 from a CSV string or a parquet number; anything else is refused."""
    label: int | None = None
    if isinstance(value, bool):
        label = None
    elif isinstance(value, int):
        label = value
    elif isinstance(value, float) and value.is_integer():
        label = int(value)
    elif isinstance(value, str) and value.strip() in ("0", "1"):
        label = int(value.strip())
    if label not in LABELS:
        raise ToxicInputError(name, "label must be 0 or 1", column=LABEL, row=row, value=value)
    return label  # type: ignore[return-value]


def check_text(name: str, row: int, value: object, max_bytes: int) -> str:
    if not isinstance(value, str) or not value.strip():
        shown = value if not isinstance(value, str) else value[:20]
        raise ToxicInputError(name, "empty comment text", column=TEXT, row=row, value=shown)
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        raise ToxicInputError(
            name,
            f"comment of {size:,} bytes exceeds the limit of {max_bytes:,} bytes",
            column=TEXT,
            row=row,
            value=preview(value),
        )
    return value


def check_id(name: str, row: int, value: object) -> str:
    """A source's id, which must be UUID-shaped (the staging checks require it); canonical
    lowercase form."""
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise ToxicInputError(
            name, "id is not a UUID", column=ID, row=row, value=preview(str(value))
        ) from None


def read_comments_files(
    files: Iterable[Path],
    *,
    source: str,
    max_comment_bytes: int = DEFAULT_MAX_COMMENT_BYTES,
) -> Comments:
    """Validate and deduplicate the comments of `files`: each row's `source` is
    `<source>:<file name>`. An exact duplicate (same id, text and label) is collapsed and
    counted; the same id with another label or text is refused, naming both rows."""
    out = Comments()
    first_seen: dict[str, tuple[int, str, int]] = {}  # id -> (index in out, file, row)
    for path in files:
        name = path.name
        out.files.append(name)
        for row, raw_id, raw_text, raw_label in _records(path):
            out.rows_read += 1
            text = check_text(name, row, raw_text, max_comment_bytes)
            label = parse_label(name, row, raw_label)
            id_ = check_id(name, row, raw_id) if raw_id is not None else comment_id(text)
            seen = first_seen.get(id_)
            if seen is not None:
                at, seen_file, seen_row = seen
                if out.labels[at] != label:
                    raise ToxicInputError(
                        name,
                        f"id {id_} has label {out.labels[at]} at {seen_file} row {seen_row} "
                        f"and label {label} here",
                        column=LABEL,
                        row=row,
                        value=label,
                    )
                if out.texts[at] != text:
                    raise ToxicInputError(
                        name,
                        f"id {id_} has another text at {seen_file} row {seen_row}",
                        column=TEXT,
                        row=row,
                        value=preview(text),
                    )
                out.duplicates_collapsed += 1
                continue
            first_seen[id_] = (len(out.ids), name, row)
            out.ids.append(id_)
            out.texts.append(text)
            out.labels.append(label)
            out.sources.append(f"{source}:{name}")
    return out


def read_source(
    location: Path, *, source: str, max_comment_bytes: int = DEFAULT_MAX_COMMENT_BYTES
) -> Comments:
    return read_comments_files(
        discover_files(location), source=source, max_comment_bytes=max_comment_bytes
    )


def collapse_changes(
    changes: Iterable[CommentChange], *, max_comment_bytes: int = DEFAULT_MAX_COMMENT_BYTES
) -> dict[str, CommentChange]:
    """The last change of each id, in stream order (what a batch leaves behind). Each
    surviving upsert is validated like a file's row (the change's position stands in for file
    and row); a bad value that a later change of the batch replaced is never applied, so it
    does not refuse the batch (a fix arriving with the bad row lets the batch through)."""
    last: dict[str, CommentChange] = {}
    for change in changes:
        if change.op not in ("upsert", "delete"):
            raise ToxicInputError(
                f"change {change.position}", "op must be 'upsert' or 'delete'", value=change.op
            )
        last.pop(change.id, None)  # keep stream order of the surviving changes
        last[change.id] = change
    for change in last.values():
        if change.op == "upsert":
            where = f"change {change.position}"
            check_text(where, 1, change.comment_text, max_comment_bytes)
            parse_label(where, 1, change.labels)
    return last

"""Read Kronodroid CSV/parquet files into typed Arrow tables, or fail naming what is wrong.

Structure and types are enforced here (a bad file never reaches lakeFS); value rules (ranges,
label set, duplicates, balance) are the raw asset checks in `quality.py`, which audit what
actually landed on the run branch.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dfp.kronodroid.schema import (
    DERIVED_SUBSET_COLUMNS,
    SOURCE_FILE_COLUMN,
    Kind,
    KronodroidInputError,
    Release,
    SchemaMismatch,
    kind_of,
    original_columns,
    resolve_columns,
)
from dfp.kronodroid.schema import release_for_file as release_for_file

#: Tokens the sources use for "no value" in nullable numeric columns.
MISSING_TOKENS = ("None", "")

_TARGET_TYPE: dict[Kind, pa.DataType] = {
    Kind.TEXT: pa.string(),
    Kind.SHA256: pa.string(),
    Kind.DATE_MDY: pa.string(),
    Kind.DATE_ISO: pa.string(),
    Kind.LABEL: pa.int64(),
    Kind.COUNT: pa.int64(),
    Kind.FLAG: pa.int64(),
    Kind.METRIC: pa.int64(),
    Kind.YEAR: pa.int64(),
    Kind.RATIO: pa.float64(),
}
_NULLABLE = {Kind.TEXT, Kind.DATE_MDY, Kind.DATE_ISO, Kind.METRIC, Kind.RATIO, Kind.YEAR}
_INT_PATTERN = r"^[+-]?\d+(\.0*)?$"
_FLOAT_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


@dataclass(frozen=True)
class ReleaseFile:
    path: Path
    release: Release


def read_release_file(path: Path, release: Release) -> pa.Table:
    """One input file → a typed table in canonical column order, plus `_source_file`."""
    name = path.name
    if not path.is_file():
        raise KronodroidInputError(name, "file does not exist")
    if path.stat().st_size == 0:
        raise KronodroidInputError(name, "file is empty")
    suffix = data_suffix(path)
    if suffix in (".csv", ".csv.gz"):
        raw = _read_csv_as_binary(path)
    elif suffix == ".parquet":
        raw = _read_parquet(path)
    else:
        raise KronodroidInputError(name, f"unsupported file type '{suffix}' (csv, csv.gz, parquet)")
    if raw.num_rows == 0:
        raise KronodroidInputError(name, "file has a header but no data rows")
    try:
        columns = resolve_columns(release, raw.column_names, name)
    except SchemaMismatch as exc:
        raise KronodroidInputError(name, str(exc).removeprefix(f"{name}: ")) from None
    arrays = [_convert(raw.column(c), c, name) for c in columns]
    fields = [pa.field(c, _TARGET_TYPE[kind_of(c)]) for c in columns]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return table.append_column(
        SOURCE_FILE_COLUMN, pa.array([name] * table.num_rows, type=pa.string())
    )


def read_release(files: Iterable[Path], release: Release) -> pa.Table:
    """All files of one release, concatenated (a column absent from one file becomes null)."""
    tables = [read_release_file(Path(f), release) for f in files]
    if not tables:
        raise KronodroidInputError(f"<{release} files>", "no input files for this release")
    table = pa.concat_tables(tables, promote_options="default").combine_chunks()
    # Files may differ in optional columns; keep the canonical order whatever came first.
    return table.select([c for c in canonical_columns(release) if c in table.column_names])


# -- readers --------------------------------------------------------------------------------
def data_suffix(path: Path) -> str:
    """The file's type as its name says: `.csv.gz` counts as one suffix."""
    name = path.name.lower()
    return ".csv.gz" if name.endswith(".csv.gz") else path.suffix.lower()


def _open_binary(path: Path):
    return gzip.open(path, "rb") if data_suffix(path) == ".csv.gz" else open(path, "rb")


#: Delimiters a Kronodroid CSV saved by a spreadsheet in another locale may use.
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab"}


def _delimiter_problem(header: list[str]) -> str | None:
    if len(header) > 1:
        return None
    for delimiter, word in _OTHER_DELIMITERS.items():
        if header[0].count(delimiter) > 1:
            return (
                f"the header looks {word}-delimited ({header[0].count(delimiter) + 1} "
                f"{word}-separated fields, no commas): Kronodroid CSV files are comma-separated"
            )
    return None


def _first_ragged_row(path: Path, expected: int) -> tuple[int, int] | None:
    """(1-based data row, its field count) of the first row whose field count differs from
    the header's; Arrow cannot number rows when values may hold newlines."""
    with _open_binary(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text)
        next(reader, None)
        for number, fields in enumerate(reader, start=1):
            if len(fields) != expected:
                return number, len(fields)
    return None


def _read_csv_as_binary(path: Path) -> pa.Table:
    name = path.name
    try:
        with _open_binary(path) as fh:
            header_bytes = fh.readline()
    except (OSError, EOFError) as exc:
        raise KronodroidInputError(name, f"not a readable gzip file: {exc}") from None
    try:
        header = next(csv.reader(io.StringIO(header_bytes.decode("utf-8-sig"))))
    except UnicodeDecodeError as exc:
        raise KronodroidInputError(name, f"header is not valid UTF-8 ({exc.reason})") from None
    except StopIteration:
        raise KronodroidInputError(name, "file has no header row") from None
    header = [h.strip() for h in header]
    if problem := _delimiter_problem(header):
        raise KronodroidInputError(name, problem)
    try:
        # Read every column as bytes: UTF-8 and numeric validity are checked per column
        # below, so errors can name the column instead of a byte offset.
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=64 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.binary() for h in header},
                null_values=[],
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        ragged = _first_ragged_row(path, len(header))
        if ragged is not None:
            row, fields = ragged
            raise KronodroidInputError(
                name, f"row has {fields} fields, the header has {len(header)}", row=row
            ) from None
        raise KronodroidInputError(name, f"not a readable CSV file: {exc}") from None
    return table


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise KronodroidInputError(path.name, f"not a readable parquet file: {exc}") from None


# -- conversion -----------------------------------------------------------------------------
def _first_false(mask: pa.ChunkedArray | pa.Array) -> int:
    return pc.index(pc.fill_null(mask, False), False).as_py()


def _as_utf8(col: pa.ChunkedArray, column: str, file: str) -> pa.ChunkedArray:
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col
    if not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
        return pc.cast(col, pa.string())
    try:
        return pc.cast(col, pa.string())
    except pa.ArrowInvalid:
        for i, value in enumerate(col.to_pylist()):
            if value is None:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise KronodroidInputError(
                    file,
                    f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                    column=column,
                    row=i + 1,
                    value=value[max(0, exc.start - 10) : exc.end + 10],
                ) from None
        raise


def _convert(col: pa.ChunkedArray, column: str, file: str) -> pa.ChunkedArray:
    kind = kind_of(column)
    target = _TARGET_TYPE[kind]
    nullable = kind in _NULLABLE
    if pa.types.is_string(target):
        out = _as_utf8(col, column, file)
        if kind is Kind.SHA256:
            return out
        # Blank means missing. Text keeps its bytes (the Package newline quirk stays raw).
        stripped = pc.utf8_trim_whitespace(out)
        kept = out if kind is Kind.TEXT else stripped
        return pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), kept)

    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        out = col
    else:
        text = pc.utf8_trim_whitespace(_as_utf8(col, column, file))
        missing = pc.is_in(text, value_set=pa.array(MISSING_TOKENS))
        if not nullable and pc.any(missing).as_py():
            row = _first_false(pc.invert(missing))
            raise KronodroidInputError(
                file,
                "missing value in a required column",
                column=column,
                row=row + 1,
                value=text[row].as_py(),
            )
        text = pc.if_else(missing, pa.scalar(None, pa.string()), text)
        pattern = _FLOAT_PATTERN if target == pa.float64() else _INT_PATTERN
        ok = pc.match_substring_regex(text, pattern)
        bad = pc.and_(pc.invert(pc.fill_null(ok, True)), pc.is_valid(text))
        if pc.any(bad).as_py():
            row = _first_false(pc.invert(bad))
            expected = "a number" if target == pa.float64() else "an integer"
            raise KronodroidInputError(
                file, f"expected {expected}", column=column, row=row + 1, value=text[row].as_py()
            )
        out = pc.cast(text, pa.float64())

    if not nullable and out.null_count:
        row = _first_false(pc.is_valid(out))
        raise KronodroidInputError(
            file, "missing value in a required column", column=column, row=row + 1
        )
    if target == pa.int64() and pa.types.is_floating(out.type):
        frac = pc.not_equal(pc.subtract(out, pc.floor(out)), 0)
        if pc.any(frac).as_py():
            row = _first_false(pc.invert(frac))
            raise KronodroidInputError(
                file, "expected an integer", column=column, row=row + 1, value=out[row].as_py()
            )
    return pc.cast(out, target)


def canonical_columns(release: Release) -> list[str]:
    """Every column a raw table of `release` can have, in canonical order."""
    return [*original_columns(release), *DERIVED_SUBSET_COLUMNS, SOURCE_FILE_COLUMN]


def conform(table: pa.Table, release: Release) -> pa.Table:
    """`table` with every canonical column (absent optional ones as typed nulls), in order.

    Downstream SQL then sees one shape per release whatever layout the files had.
    """
    arrays = []
    for column in canonical_columns(release):
        target = pa.string() if column == SOURCE_FILE_COLUMN else _TARGET_TYPE[kind_of(column)]
        if column in table.column_names:
            arrays.append(table.column(column).cast(target))
        else:
            arrays.append(pa.nulls(table.num_rows, target))
    return pa.Table.from_arrays(arrays, names=canonical_columns(release))


def empty_release_table(release: Release) -> pa.Table:
    return conform(pa.table({}), release)

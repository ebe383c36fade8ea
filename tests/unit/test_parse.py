"""Reading Kronodroid CSV/parquet files into typed tables, and the errors for bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dfp.kronodroid.parse import (
    KronodroidInputError,
    read_release,
    read_release_file,
    release_for_file,
)
from dfp.kronodroid.schema import (
    SOURCE_FILE_COLUMN,
    Kind,
    Release,
    kind_of,
    original_columns,
)
from dfp.kronodroid.synthetic import EMULATOR_TEXT_METRICS, generate_release

N = 300
REAL, EMU = Release.REAL_DEVICE, Release.EMULATOR
FORMATS = ("csv", "parquet")
_EXPECTED_TYPE = {
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


@pytest.fixture(scope="module")
def tables() -> dict[Release, pa.Table]:
    return {release: generate_release(release, N, seed=5) for release in Release}


def _write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
        pacsv.write_csv(table, path, write_options=options)
    else:
        pq.write_table(table, path)
    return path


def _replace(table: pa.Table, column: str, values: list, type_: pa.DataType) -> pa.Table:
    i = table.column_names.index(column)
    return table.set_column(i, pa.field(column, type_), pa.array(values, type_))


def _input_error(path: Path, release: Release = REAL) -> KronodroidInputError:
    with pytest.raises(KronodroidInputError) as exc:
        read_release_file(path, release)
    return exc.value


# -- good input -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("release", list(Release))
def test_types_per_kind_and_source_file(tmp_path, tables, release, fmt):
    path = _write(tables[release], tmp_path / f"kronodroid-2021-{release.value[:4]}-v1.{fmt}")
    table = read_release_file(path, release)
    assert table.num_rows == N
    assert table.column_names == [*original_columns(release), SOURCE_FILE_COLUMN]
    for field in table.schema:
        if field.name == SOURCE_FILE_COLUMN:
            assert field.type == pa.string()
        else:
            assert field.type == _EXPECTED_TYPE[kind_of(field.name)], field.name
    assert table.schema.field("execve").type == pa.int64()  # COUNT
    assert table.schema.field("Detection_Ratio").type == pa.float64()  # RATIO
    assert table.schema.field("Package").type == pa.string()  # TEXT
    assert set(table.column(SOURCE_FILE_COLUMN).to_pylist()) == {path.name}


@pytest.mark.parametrize("fmt", FORMATS)
def test_values_survive_the_round_trip(tmp_path, tables, fmt):
    source = tables[REAL]
    table = read_release_file(_write(source, tmp_path / f"x-real.{fmt}"), REAL)
    for column in ("Package", "sha256", "EarliestModDate", "MalFamily"):
        assert table.column(column).to_pylist() == source.column(column).to_pylist(), column
    for column in ("Malware", "execve", "nr_syscalls", "CFileSize", "Detection_Ratio"):
        assert table.column(column).to_pylist() == source.column(column).to_pylist(), column


def test_csv_and_parquet_give_the_same_table(tmp_path, tables):
    from_csv = read_release_file(_write(tables[EMU], tmp_path / "a-emu.csv"), EMU)
    from_parquet = read_release_file(_write(tables[EMU], tmp_path / "a-emu.parquet"), EMU)
    assert from_csv.drop_columns([SOURCE_FILE_COLUMN]).equals(
        from_parquet.drop_columns([SOURCE_FILE_COLUMN])
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_emulator_none_tokens_become_nulls(tmp_path, tables, fmt):
    source = tables[EMU]
    table = read_release_file(_write(source, tmp_path / f"x-emu.{fmt}"), EMU)
    for column in EMULATOR_TEXT_METRICS:
        assert kind_of(column) is Kind.METRIC
        raw = source.column(column).to_pylist()
        parsed = table.column(column).to_pylist()
        assert "None" in raw, column  # the generator put the quirk in
        assert parsed == [None if v == "None" else int(v) for v in raw], column
        assert table.column(column).null_count == raw.count("None")


@pytest.mark.parametrize("fmt", FORMATS)
def test_package_embedded_newlines_preserved(tmp_path, tables, fmt):
    source = tables[REAL].column("Package").to_pylist()
    assert any("\n" in p[:-1] for p in source)  # embedded newlines present in the input
    table = read_release_file(_write(tables[REAL], tmp_path / f"x-real.{fmt}"), REAL)
    assert table.column("Package").to_pylist() == source
    assert all(p.endswith("\n") for p in table.column("Package").to_pylist())


def test_crlf_csv_reads(tmp_path, tables):
    path = _write(tables[EMU].slice(0, 20), tmp_path / "x-emu.csv")
    lines = path.read_bytes().split(b"\n", 1)
    path.write_bytes(lines[0] + b"\r\n" + lines[1])  # Windows line ending after the header
    table = read_release_file(path, EMU)
    assert table.column_names[0] == "Package"
    assert table.num_rows == 20


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_text_in_count_column(tmp_path, tables, fmt):
    values = [str(v) for v in tables[REAL].column("execve").to_pylist()]
    values[6] = "abc"
    table = _replace(tables[REAL], "execve", values, pa.string())
    err = _input_error(_write(table, tmp_path / f"bad-real.{fmt}"))
    assert (err.file, err.column, err.row, err.value) == (f"bad-real.{fmt}", "execve", 7, "abc")
    assert str(err) == (
        f"bad-real.{fmt}, column 'execve', row 7: expected an integer (value 'abc')"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_integer_float_in_count_column(tmp_path, tables, fmt):
    values = [float(v) for v in tables[REAL].column("nr_syscalls").to_pylist()]
    values[3] = 2.5
    table = _replace(tables[REAL], "nr_syscalls", values, pa.float64())
    err = _input_error(_write(table, tmp_path / f"bad-real.{fmt}"))
    assert (err.file, err.column, err.row) == (f"bad-real.{fmt}", "nr_syscalls", 4)
    assert float(err.value) == 2.5
    assert "column 'nr_syscalls', row 4: expected an integer" in str(err)
    assert "2.5" in str(err)


def test_integral_floats_in_count_column_are_accepted(tmp_path, tables):
    values = [float(v) for v in tables[REAL].column("execve").to_pylist()]
    table = _replace(tables[REAL], "execve", values, pa.float64())
    for fmt in FORMATS:
        parsed = read_release_file(_write(table, tmp_path / f"ok-real.{fmt}"), REAL)
        assert parsed.column("execve").type == pa.int64()
        assert parsed.column("execve").to_pylist() == tables[REAL].column("execve").to_pylist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_none_token_in_required_count_column(tmp_path, tables, fmt):
    values = [str(v) for v in tables[EMU].column("execve").to_pylist()]
    values[9] = "None"
    table = _replace(tables[EMU], "execve", values, pa.string())
    err = _input_error(_write(table, tmp_path / f"bad-emu.{fmt}"), EMU)
    assert (err.file, err.column, err.row, err.value) == (f"bad-emu.{fmt}", "execve", 10, "None")
    assert str(err) == (
        f"bad-emu.{fmt}, column 'execve', row 10: missing value in a required column (value 'None')"
    )


def test_null_in_required_count_column_of_parquet(tmp_path, tables):
    values = tables[REAL].column("nr_permissions").to_pylist()
    values[11] = None
    table = _replace(tables[REAL], "nr_permissions", values, pa.int64())
    err = _input_error(_write(table, tmp_path / "bad-real.parquet"))
    assert (err.file, err.column, err.row, err.value) == (
        "bad-real.parquet",
        "nr_permissions",
        12,
        None,
    )
    assert str(err) == (
        "bad-real.parquet, column 'nr_permissions', row 12: missing value in a required column"
    )


def test_empty_cell_in_required_label_column_of_csv(tmp_path, tables):
    values = [str(v) for v in tables[REAL].column("Malware").to_pylist()]
    values[0] = ""
    table = _replace(tables[REAL], "Malware", values, pa.string())
    err = _input_error(_write(table, tmp_path / "bad-real.csv"))
    assert (err.column, err.row, err.value) == ("Malware", 1, "")
    assert "missing value in a required column" in str(err)


def test_non_utf8_in_text_column(tmp_path, tables):
    packages = tables[REAL].column("Package").to_pylist()
    packages[14] = "com.markerword.app\n"
    table = _replace(tables[REAL], "Package", packages, pa.string())
    path = _write(table, tmp_path / "bad-real.csv")
    data = path.read_bytes()
    assert data.count(b"markerword") == 1
    path.write_bytes(data.replace(b"markerword", b"marker\xffword"))
    err = _input_error(path)
    assert (err.file, err.column, err.row) == ("bad-real.csv", "Package", 15)
    assert isinstance(err.value, bytes) and b"\xff" in err.value
    assert str(err).startswith("bad-real.csv, column 'Package', row 15: not valid UTF-8")


def test_non_utf8_header(tmp_path, tables):
    path = _write(tables[REAL].slice(0, 5), tmp_path / "bad-real.csv")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"Package", b"Pack\xe9age", 1))
    err = _input_error(path)
    assert (err.file, err.column, err.row, err.value) == ("bad-real.csv", None, None, None)
    assert str(err).startswith("bad-real.csv: header is not valid UTF-8")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty-real{suffix}"
    path.write_bytes(b"")
    err = _input_error(path)
    assert err.file == path.name and err.column is None and err.row is None
    assert str(err) == f"{path.name}: file is empty"


def test_header_only_csv(tmp_path):
    path = tmp_path / "header-real.csv"
    path.write_text(",".join(original_columns(REAL)) + "\n", encoding="utf-8")
    err = _input_error(path)
    assert (err.file, err.column, err.row) == ("header-real.csv", None, None)
    assert str(err) == "header-real.csv: file has a header but no data rows"


def test_zero_row_parquet(tmp_path, tables):
    err = _input_error(_write(tables[REAL].slice(0, 0), tmp_path / "none-real.parquet"))
    assert str(err) == "none-real.parquet: file has a header but no data rows"


def test_truncated_parquet(tmp_path, tables):
    path = _write(tables[REAL], tmp_path / "cut-real.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = _input_error(path)
    assert (err.file, err.column, err.row) == ("cut-real.parquet", None, None)
    assert str(err).startswith("cut-real.parquet: not a readable parquet file")


def test_csv_with_a_short_row(tmp_path, tables):
    path = _write(tables[EMU].slice(0, 5), tmp_path / "short-emu.csv")
    path.write_bytes(path.read_bytes() + b'"com.x\n",1,2\n')
    err = _input_error(path, EMU)
    assert (err.file, err.row) == ("short-emu.csv", 6)
    assert str(err) == "short-emu.csv, row 6: row has 3 fields, the header has 484"


def test_csv_gz_reads_like_the_plain_csv(tmp_path, tables):
    import gzip

    plain = _write(tables[REAL], tmp_path / "a-real.csv")
    packed = tmp_path / "a-real.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    from_gz = read_release_file(packed, REAL)
    assert from_gz.column(SOURCE_FILE_COLUMN)[0].as_py() == "a-real.csv.gz"
    assert from_gz.drop_columns([SOURCE_FILE_COLUMN]).equals(
        read_release_file(plain, REAL).drop_columns([SOURCE_FILE_COLUMN])
    )


def test_csv_gz_with_a_short_row_names_the_row(tmp_path, tables):
    import gzip

    plain = _write(tables[REAL].slice(0, 4), tmp_path / "a-real.csv")
    # Rows 1-4 hold quoted newlines (the Package quirk); row 5 is short.
    packed = tmp_path / "b-real.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes() + b'"com.y",1\n'))
    err = _input_error(packed)
    assert str(err) == "b-real.csv.gz, row 5: row has 2 fields, the header has 484"


def test_not_gzip_with_a_gz_name(tmp_path):
    path = tmp_path / "x-real.csv.gz"
    path.write_bytes(b"Package,Malware\nx,1\n")
    assert str(_input_error(path)).startswith("x-real.csv.gz: not a readable gzip file")


@pytest.mark.parametrize(("delimiter", "word"), [(";", "semicolon"), ("\t", "tab")])
def test_other_delimiter_is_named_briefly(tmp_path, tables, delimiter, word):
    path = tmp_path / "semi-real.csv"
    pacsv.write_csv(
        tables[REAL].slice(0, 3),
        path,
        write_options=pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed"),
    )
    err = _input_error(path)
    assert str(err) == (
        f"semi-real.csv: the header looks {word}-delimited (484 {word}-separated fields, "
        f"no commas): Kronodroid CSV files are comma-separated"
    )


def test_unknown_column_listing_is_capped(tmp_path, tables):
    renamed = tables[REAL].rename_columns(
        [f"{'x' * 200}{i}" for i in range(tables[REAL].num_columns)]
    )
    err = _input_error(_write(renamed.slice(0, 2), tmp_path / "odd-real.csv"))
    assert len(str(err)) < 700
    assert "(+474 more)" in str(err)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "data-real.json"
    path.write_text('{"Package": "x"}')
    err = _input_error(path)
    assert err.file == "data-real.json"
    assert str(err) == "data-real.json: unsupported file type '.json' (csv, csv.gz, parquet)"


def test_missing_file(tmp_path):
    err = _input_error(tmp_path / "gone-real.csv")
    assert str(err) == "gone-real.csv: file does not exist"


def test_schema_mismatch_is_an_input_error_naming_the_column(tmp_path, tables):
    path = _write(tables[REAL].drop_columns(["Malware"]), tmp_path / "nolabel-real.parquet")
    err = _input_error(path)
    assert err.file == "nolabel-real.parquet"
    assert str(err).startswith("nolabel-real.parquet: missing required column(s)")
    assert "'Malware'" in str(err)
    assert str(err).count("nolabel-real.parquet") == 1  # the file is named once


def test_wrong_release_is_a_schema_error(tmp_path, tables):
    path = _write(tables[EMU], tmp_path / "x-real.parquet")
    err = _input_error(path, REAL)
    assert "unknown column" in str(err) and "FirstModDate" in str(err)


@pytest.mark.parametrize(
    ("name", "release"),
    [
        ("kronodroid-2021-real-v1.csv", REAL),
        ("kronodroid-2021-emu-v1.parquet", EMU),
        ("EMULATOR.CSV", EMU),
        ("Real_Device.parquet", REAL),
    ],
)
def test_release_for_file(name, release):
    assert release_for_file(Path(name)) is release


@pytest.mark.parametrize("name", ["kronodroid-2021.csv", "emu-and-real.csv"])
def test_release_for_file_rejects_ambiguous_names(name):
    with pytest.raises(KronodroidInputError) as exc:
        release_for_file(Path("/some/dir") / name)
    err = exc.value
    assert (err.file, err.column, err.row) == (name, None, None)
    assert str(err).startswith(f"{name}: cannot tell the release from the file name")
    assert "'emu'" in str(err) and "'real'" in str(err)


# -- several files --------------------------------------------------------------------------
def test_read_release_fills_files_inside_apk_with_nulls(tmp_path, tables):
    full = _write(tables[EMU], tmp_path / "a-emu.parquet")
    other = generate_release(EMU, 120, seed=6).drop_columns(["FilesInsideAPK"])
    lacking = _write(other, tmp_path / "b-emu.csv")
    table = read_release([full, lacking], EMU)
    assert table.num_rows == N + 120
    assert "FilesInsideAPK" in table.column_names
    files_inside = table.column("FilesInsideAPK")
    assert files_inside.type == pa.int64()
    assert files_inside.slice(0, N).to_pylist() == tables[EMU].column("FilesInsideAPK").to_pylist()
    assert files_inside.slice(N).null_count == 120
    sources = table.column(SOURCE_FILE_COLUMN).to_pylist()
    assert sources == ["a-emu.parquet"] * N + ["b-emu.csv"] * 120
    assert set(table.column_names) == {*original_columns(EMU), SOURCE_FILE_COLUMN}
    assert table.column("execve").num_chunks == 1  # combined


def test_read_release_without_files():
    with pytest.raises(KronodroidInputError, match="no input files for this release"):
        read_release([], EMU)


def test_read_release_fails_on_the_bad_file(tmp_path, tables):
    good = _write(tables[REAL], tmp_path / "a-real.parquet")
    bad = tmp_path / "b-real.csv"
    bad.write_bytes(b"")
    with pytest.raises(KronodroidInputError) as exc:
        read_release([good, bad], REAL)
    assert exc.value.file == "b-real.csv"


def test_null_then_invalid_utf8_in_binary_parquet_column(tmp_path, tables):
    """A binary (not UTF8-annotated) parquet text column with nulls before a bad value."""
    values: list[bytes | None] = [None] * N
    values[20] = b"bad\xffname"
    table = _replace(tables[REAL], "MalFamily", values, pa.binary())
    err = _input_error(_write(table, tmp_path / "bin-real.parquet"))
    assert (err.file, err.column, err.row) == ("bin-real.parquet", "MalFamily", 21)
    assert "not valid UTF-8" in str(err)


def test_invalid_utf8_in_binary_parquet_column(tmp_path, tables):
    values = [b"Fam"] * N
    values[20] = b"bad\xffname"
    table = _replace(tables[REAL], "MalFamily", values, pa.binary())
    err = _input_error(_write(table, tmp_path / "bin-real.parquet"))
    assert (err.file, err.column, err.row, err.value) == (
        "bin-real.parquet",
        "MalFamily",
        21,
        b"bad\xffname",
    )
    assert str(err).startswith("bin-real.parquet, column 'MalFamily', row 21: not valid UTF-8")


# -- the real sample ------------------------------------------------------------------------
def test_shared_real_sample(shared_sample_dir):
    path = shared_sample_dir / "real_device_subset_2019.csv"
    assert release_for_file(path) is REAL
    table = read_release_file(path, REAL)
    assert table.num_rows == 1_622
    assert table.num_columns == 487
    assert table.column_names[-5:] == [
        "Categories",
        "Highest-date",
        "year_month",
        "Year",
        "_source_file",
    ]
    assert table.schema.field("Year").type == pa.int64()
    assert pc.sum(table.column("Malware")).as_py() == 169

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    cells = [r[header.index("MalFamily")] for r in body]
    assert cells.count("") > 0
    family = table.column("MalFamily").to_pylist()
    assert [v is None for v in family] == [c.strip() == "" for c in cells]
    assert [v for v in family if v is not None] == [c for c in cells if c.strip()]
    assert table.column("Package").to_pylist() == [r[header.index("Package")] for r in body]

"""The synthetic Kronodroid generator: layout, types, invariants, quirks and learnability."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dfp.kronodroid import synthetic
from dfp.kronodroid.columns import PERMISSION_COLUMNS, SYSCALL_COLUMNS
from dfp.kronodroid.schema import (
    DATE_COLUMNS,
    DATE_SENTINEL,
    Kind,
    Release,
    feature_columns,
    kind_of,
    original_columns,
)
from dfp.kronodroid.synthetic import (
    EMULATOR_TEXT_METRICS,
    FULL_ROWS,
    MALWARE_FAMILIES,
    MALWARE_SHARE,
    generate_release,
    rows_for,
    write_release_files,
)

N = 3_000
RELEASES = list(Release)
_MDY = re.compile(r"^(1[0-2]|[1-9])/(3[01]|[12][0-9]|[1-9])/([0-9]{4})$")
_PACKAGE = re.compile(r"^[a-z]+(\.[a-z]+)+(\n[a-z]+)?\n$")


@pytest.fixture(scope="module")
def tables() -> dict[Release, pa.Table]:
    return {release: generate_release(release, N, seed=0) for release in Release}


def _ints(table: pa.Table, column: str) -> np.ndarray:
    """A numeric column as int64, "None" strings read as -1."""
    col = table.column(column)
    if pa.types.is_string(col.type):
        col = pc.if_else(pc.equal(col, "None"), "-1", col)
    return col.cast(pa.int64()).to_numpy()


def _days(values: list[str]) -> np.ndarray:
    out = []
    for v in values:
        m = _MDY.match(v)
        assert m, f"not M/D/YYYY: {v!r}"
        month, day, year = (int(g) for g in m.groups())
        out.append(date(year, month, day).toordinal())
    return np.array(out)


def test_rows_for():
    assert rows_for(Release.REAL_DEVICE, 1.0) == 78_137
    assert rows_for(Release.EMULATOR, 1.0) == 63_991
    assert rows_for(Release.EMULATOR, 0.5) == round(63_991 * 0.5)
    assert rows_for(Release.REAL_DEVICE, 1e-9) == 1
    assert sum(FULL_ROWS.values()) == 142_128
    with pytest.raises(ValueError):
        rows_for(Release.REAL_DEVICE, 0)


@pytest.mark.parametrize("release", RELEASES)
def test_columns_exactly_the_original_layout(tables, release):
    table = tables[release]
    assert table.num_rows == N
    assert table.column_names == list(original_columns(release))
    assert table.num_columns == 484
    first, second = DATE_COLUMNS[release]
    assert first in table.column_names and second in table.column_names
    other = DATE_COLUMNS[
        Release.EMULATOR if release is Release.REAL_DEVICE else Release.REAL_DEVICE
    ]
    assert not set(other) & set(table.column_names)


@pytest.mark.parametrize("release", RELEASES)
def test_types_as_the_original_files(tables, release):
    for field in tables[release].schema:
        kind = kind_of(field.name)
        if kind in (Kind.TEXT, Kind.SHA256, Kind.DATE_MDY):
            expected = pa.string()
        elif kind is Kind.RATIO:
            expected = pa.float64()
        elif release is Release.EMULATOR and field.name in EMULATOR_TEXT_METRICS:
            expected = pa.string()
        else:
            assert kind in (Kind.COUNT, Kind.FLAG, Kind.LABEL, Kind.METRIC)
            expected = pa.int64()
        assert field.type == expected, field.name


def test_deterministic_per_seed_and_release():
    a = generate_release(Release.REAL_DEVICE, 500, seed=7)
    b = generate_release(Release.REAL_DEVICE, 500, seed=7)
    c = generate_release(Release.REAL_DEVICE, 500, seed=8)
    assert a.equals(b)
    assert not a.equals(c)
    assert a.column("sha256") != c.column("sha256")
    emu = generate_release(Release.EMULATOR, 500, seed=7)
    assert a.column("sha256") != emu.column("sha256")
    assert a.column("execve") != emu.column("execve")


@pytest.mark.parametrize("release", RELEASES)
def test_label_share(tables, release):
    labels = _ints(tables[release], "Malware")
    assert set(np.unique(labels)) == {0, 1}
    assert abs(labels.mean() - MALWARE_SHARE[release]) <= 0.03


@pytest.mark.parametrize("release", RELEASES)
def test_syscall_totals_and_sparsity(tables, release):
    table = tables[release]
    counts = np.column_stack([_ints(table, c) for c in SYSCALL_COLUMNS])
    assert counts.shape[1] == 288
    assert (counts >= 0).all()
    np.testing.assert_array_equal(counts.sum(axis=1), _ints(table, "nr_syscalls"))
    active_share = (counts > 0).mean(axis=0)
    assert np.median(active_share) < 0.05  # most columns zero for most apps
    assert 10 <= (active_share > 0.5).sum() <= 80  # a minority of columns is busy
    nonzero = counts[counts > 0]
    assert np.quantile(nonzero, 0.99) > 20 * np.median(nonzero)  # heavy tail


@pytest.mark.parametrize("release", RELEASES)
def test_permission_flags_and_totals(tables, release):
    table = tables[release]
    flags = np.column_stack([_ints(table, c) for c in PERMISSION_COLUMNS])
    assert flags.shape[1] == 166
    assert set(np.unique(flags)) <= {0, 1}
    assert np.median(flags.mean(axis=0)) < 0.05  # low base rates
    nr_permissions = _ints(table, "nr_permissions")
    np.testing.assert_array_equal(flags.sum(axis=1), nr_permissions)
    parts = sum(_ints(table, c) for c in ("normal", "dangerous", "signature"))
    np.testing.assert_array_equal(parts, nr_permissions)
    assert (_ints(table, "total_perm") >= nr_permissions).all()
    np.testing.assert_array_equal(
        _ints(table, "custom_yes"), (_ints(table, "nr_custom") > 0).astype(int)
    )


@pytest.mark.parametrize("release", RELEASES)
def test_no_negative_numbers_and_static_ranges(tables, release):
    table = tables[release]
    for field in table.schema:
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            assert pc.min(table.column(field.name)).as_py() >= 0, field.name
    c_size, u_size = _ints(table, "CFileSize"), _ints(table, "UFileSize")
    assert (u_size >= c_size).all()
    assert 1e6 < np.median(c_size) < 1e7
    assert 100 < np.median(_ints(table, "FilesInsideAPK")) < 2_000
    assert _ints(table, "TimesSubmitted").min() >= 1
    scanners = _ints(table, "Scanners")
    assert scanners.min() >= 60 and scanners.max() <= 68


@pytest.mark.parametrize("release", RELEASES)
def test_scanner_verdicts_follow_the_label(tables, release):
    table = tables[release]
    labels = _ints(table, "Malware")
    ratio = table.column("Detection_Ratio").to_numpy()
    assert ratio.min() >= 0 and ratio.max() <= 0.8
    assert (ratio[labels == 0] > 0).mean() < 0.1
    assert (ratio[labels == 1] > 0).mean() > 0.95
    family = np.array(table.column("MalFamily").to_pylist(), dtype=object)
    assert all(f in MALWARE_FAMILIES for f in family[labels == 1])
    assert np.mean([f is None for f in family[labels == 0]]) > 0.9


def test_sha256_unique_except_conflicting_pairs(tables):
    for release, table in tables.items():
        sha = table.column("sha256").to_pylist()
        assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in sha)
        labels = _ints(table, "Malware")
        values, counts = np.unique(sha, return_counts=True)
        duplicated = values[counts > 1]
        assert len(duplicated) == 1, release  # 3,000 rows: one injected pair
        assert counts.max() == 2
        rows = [i for i, s in enumerate(sha) if s == duplicated[0]]
        assert sorted(labels[rows]) == [0, 1]


def test_conflict_count_scales_and_needs_2000_rows():
    small = generate_release(Release.REAL_DEVICE, 1_999, seed=1).column("sha256")
    assert pc.count_distinct(small).as_py() == 1_999
    big = generate_release(Release.EMULATOR, 25_000, seed=1)
    sha = big.column("sha256").to_pylist()
    assert len(sha) - len(set(sha)) == round(25_000 * synthetic.CONFLICT_RATE)


@pytest.mark.parametrize("release", RELEASES)
def test_none_quirk_only_in_emulator_nr_columns(tables, release):
    table = tables[release]
    for field in table.schema:
        if not pa.types.is_string(field.type) or field.name == "MalFamily":
            continue
        nones = pc.sum(pc.equal(table.column(field.name), "None")).as_py() or 0
        if release is Release.EMULATOR and field.name in EMULATOR_TEXT_METRICS:
            assert 0.005 * N <= nones <= 0.03 * N, field.name
            rest = pc.filter(
                table.column(field.name), pc.not_equal(table.column(field.name), "None")
            )
            assert pc.all(pc.match_substring_regex(rest, r"^[0-9]+$")).as_py(), field.name
        else:
            assert nones == 0, field.name


@pytest.mark.parametrize("release", RELEASES)
def test_dates(tables, release):
    table = tables[release]
    first_col, second_col = DATE_COLUMNS[release]
    first = table.column(first_col).to_pylist()
    second = table.column(second_col).to_pylist()
    sentinel = np.array([v == DATE_SENTINEL for v in first])
    assert 0.02 <= sentinel.mean() <= 0.04
    assert DATE_SENTINEL not in second
    assert any(re.match(r"^[1-9]/", v) for v in second)  # no zero padding
    d1, d2 = _days(first), _days(second)
    assert (d1[~sentinel] <= d2[~sentinel]).all()
    lo, hi = date(2008, 1, 1).toordinal(), date(2020, 12, 31).toordinal()
    assert (d1[~sentinel] >= lo).all() and (d2 >= lo).all() and (d2 <= hi).all()
    assert (d1[sentinel] == date(1980, 1, 1).toordinal()).all()


@pytest.mark.parametrize("release", RELEASES)
def test_package_names(tables, release):
    packages = tables[release].column("Package").to_pylist()
    assert all(p.endswith("\n") for p in packages)
    assert all(_PACKAGE.match(p) for p in packages)
    embedded = sum("\n" in p[:-1] for p in packages)
    assert 0.005 * N <= embedded <= 0.02 * N


def test_temporal_drift(tables):
    table = tables[Release.REAL_DEVICE]
    years = np.array([int(v.rsplit("/", 1)[1]) for v in table.column("HighestModDate").to_pylist()])
    newer_syscalls = [c for c in SYSCALL_COLUMNS if c.startswith("SYS_3")]
    active = np.column_stack([_ints(table, c) > 0 for c in newer_syscalls]).sum(axis=1)
    assert active[years >= 2018].mean() > 1.5 * active[years <= 2012].mean()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_release_files_round_trip(tmp_path, fmt):
    paths = write_release_files(tmp_path, scale=0.02, seed=3, fmt=fmt)
    assert set(paths) == set(Release)
    assert paths[Release.REAL_DEVICE] == [tmp_path / f"kronodroid-2021-real-v1.{fmt}"]
    assert paths[Release.EMULATOR] == [tmp_path / f"kronodroid-2021-emu-v1.{fmt}"]
    for release, (path,) in paths.items():
        expected = generate_release(release, rows_for(release, 0.02), seed=3)
        if fmt == "csv":
            with open(path, encoding="utf-8") as f:
                header = f.readline().rstrip("\n")
            assert header.replace('"', "").split(",") == list(original_columns(release))
            parse = pacsv.ParseOptions(newlines_in_values=True)
            read = pacsv.read_csv(path, parse_options=parse)
            assert read.column("Package").equals(expected.column("Package"))
            assert read.column("sha256").equals(expected.column("sha256"))
        else:
            read = pq.read_table(path)
            assert read.equals(expected)
        assert read.num_rows == expected.num_rows
        assert read.column_names == list(original_columns(release))


def test_write_release_files_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError):
        write_release_files(tmp_path, scale=0.001, fmt="json")


def _features(table: pa.Table) -> np.ndarray:
    x = np.column_stack([np.maximum(_ints(table, c), 0) for c in feature_columns()])
    x = np.log1p(x.astype(float))
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)


@pytest.mark.parametrize("release", RELEASES)
def test_a_simple_model_learns_it_but_not_perfectly(tables, release):
    table = tables[release]
    x, y = _features(table), _ints(table, "Malware").astype(float)
    order = np.random.default_rng(0).permutation(N)
    train, test = order[:2_000], order[2_000:]
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(200):  # plain logistic regression, L2-regularised gradient descent
        p = 1.0 / (1.0 + np.exp(-(x[train] @ w + b)))
        grad = p - y[train]
        w -= 0.5 * (x[train].T @ grad / train.size + 1e-2 * w)
        b -= 0.5 * grad.mean()
    accuracy = (((x[test] @ w + b) > 0) == (y[test] == 1)).mean()
    assert 0.7 <= accuracy <= 0.99

"""The Kronodroid raw schema: which columns each release has, and what each column holds.

Pure logic (no Dagster). Parsing (`parse.py`), the synthetic generator and the raw quality
checks all read their column rules from here, so there is one definition of "valid raw data".
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from dfp.kronodroid.columns import PERMISSION_COLUMNS, SYSCALL_COLUMNS


class Release(StrEnum):
    REAL_DEVICE = "real_device"
    EMULATOR = "emulator"


class Kind(StrEnum):
    TEXT = "text"  # free text (package name, family)
    SHA256 = "sha256"  # 64 hex characters
    LABEL = "label"  # 0 = benign, 1 = malware
    COUNT = "count"  # integer >= 0, never missing (syscalls, permission totals)
    FLAG = "flag"  # 0/1 permission flag
    METRIC = "metric"  # integer >= 0 that the source may leave missing ("None")
    RATIO = "ratio"  # float >= 0
    DATE_MDY = "date_mdy"  # "M/D/YYYY" string as in the originals (sentinel 1/1/1980 kept)
    DATE_ISO = "date_iso"  # "YYYY-MM-DD" (derived columns of the 2019 subset)
    YEAR = "year"  # integer year


LABEL_COLUMN = "Malware"
SHA256_COLUMN = "sha256"
PACKAGE_COLUMN = "Package"
#: Added by dfp to every raw row: the input file it came from, so errors can name it.
SOURCE_FILE_COLUMN = "_source_file"

PERMISSION_TOTAL_COLUMNS = (
    "nr_permissions",
    "normal",
    "dangerous",
    "signature",
    "custom_yes",
    "nr_custom",
    "total_perm",
)
STATIC_COLUMNS_BEFORE_DATES = ("sha256", "CFileSize", "UFileSize", "FilesInsideAPK")
STATIC_COLUMNS_AFTER_DATES = (
    "TimesSubmitted",
    "NrContactedIps",
    "Activities",
    "NrIntServices",
    "NrIntServicesActions",
    "NrIntActivities",
    "NrIntActivitiesActions",
    "NrIntReceivers",
    "NrIntReceiversActions",
    "TotalIntentFilters",
    "NrServices",
)
#: Columns that reveal the label (scanner verdicts): kept in raw, never used as features.
LABEL_LEAKING_COLUMNS = ("Scanners", "Detection_Ratio", "MalFamily", "Categories")

DATE_COLUMNS: dict[Release, tuple[str, str]] = {
    Release.REAL_DEVICE: ("EarliestModDate", "HighestModDate"),
    Release.EMULATOR: ("FirstModDate", "LastModDate"),
}
#: Appended by the public "Enhanced Subset" re-release of the real-device data, which drops
#: the two original date columns in their favour.
DERIVED_SUBSET_COLUMNS = ("Categories", "Highest-date", "year_month", "Year")

DATE_SENTINEL = "1/1/1980"  # "no date" in the originals

_KIND_BY_COLUMN: dict[str, Kind] = {
    PACKAGE_COLUMN: Kind.TEXT,
    LABEL_COLUMN: Kind.LABEL,
    **{c: Kind.COUNT for c in SYSCALL_COLUMNS},
    "nr_syscalls": Kind.COUNT,
    **{c: Kind.FLAG for c in PERMISSION_COLUMNS},
    **{c: Kind.COUNT for c in PERMISSION_TOTAL_COLUMNS},
    SHA256_COLUMN: Kind.SHA256,
    **{c: Kind.METRIC for c in STATIC_COLUMNS_BEFORE_DATES[1:]},
    **{c: Kind.METRIC for c in STATIC_COLUMNS_AFTER_DATES},
    "Scanners": Kind.METRIC,
    "Detection_Ratio": Kind.RATIO,
    "MalFamily": Kind.TEXT,
    **{c: Kind.DATE_MDY for pair in DATE_COLUMNS.values() for c in pair},
    "Categories": Kind.TEXT,
    "Highest-date": Kind.DATE_ISO,
    "year_month": Kind.DATE_ISO,
    "Year": Kind.YEAR,
}


def kind_of(column: str) -> Kind:
    return _KIND_BY_COLUMN[column]


def original_columns(release: Release) -> tuple[str, ...]:
    """The 484 columns of a release, in the order of the original files."""
    return (
        PACKAGE_COLUMN,
        LABEL_COLUMN,
        *SYSCALL_COLUMNS,
        "nr_syscalls",
        *PERMISSION_COLUMNS,
        *PERMISSION_TOTAL_COLUMNS,
        *STATIC_COLUMNS_BEFORE_DATES,
        *DATE_COLUMNS[release],
        *STATIC_COLUMNS_AFTER_DATES,
        "Scanners",
        "Detection_Ratio",
        "MalFamily",
    )


def feature_columns() -> tuple[str, ...]:
    """Numeric columns a model may use: everything but identifiers, dates and leaky columns."""
    return (
        *SYSCALL_COLUMNS,
        "nr_syscalls",
        *PERMISSION_COLUMNS,
        *PERMISSION_TOTAL_COLUMNS,
        *STATIC_COLUMNS_BEFORE_DATES[1:],
        *STATIC_COLUMNS_AFTER_DATES,
    )


#: Permission flags whose names equal a syscall's but for case (syscall `reboot`, permission
#: `REBOOT`). Case-insensitive engines (DuckDB, Spark SQL) would see one column, so downstream
#: of raw these flags are renamed `<name>_permission`; raw keeps the source's spelling.
CASE_COLLIDING_PERMISSIONS = frozenset(
    p for p in PERMISSION_COLUMNS if p.lower() in {s.lower() for s in SYSCALL_COLUMNS}
)


def sql_name(column: str) -> str:
    """A column's name in SQL engines: unique whatever the engine's case sensitivity."""
    return f"{column}_permission" if column in CASE_COLLIDING_PERMISSIONS else column


def sql_feature_columns() -> tuple[str, ...]:
    """`feature_columns()` as the staging and mart tables name them."""
    return tuple(sql_name(c) for c in feature_columns())


class SchemaMismatch(ValueError):
    """A file's columns do not form a known Kronodroid layout."""


def resolve_columns(release: Release, present: list[str], file: str) -> tuple[str, ...]:
    """Check a file's header against the release's known layouts; return the canonical order.

    Known layouts: the original release; the emulator archive without `FilesInsideAPK`; the
    real-device Enhanced Subset (dates replaced by `DERIVED_SUBSET_COLUMNS`).
    """
    original = original_columns(release)
    present_set = set(present)
    duplicates = sorted({c for c in present if present.count(c) > 1})
    if duplicates:
        raise SchemaMismatch(f"{file}: duplicate column(s) {duplicates}")

    optional: set[str] = set()
    allowed_extra: set[str] = set()
    if release is Release.EMULATOR:
        optional.add("FilesInsideAPK")
    if release is Release.REAL_DEVICE and "Highest-date" in present_set:
        optional.update(DATE_COLUMNS[release])
        allowed_extra.update(DERIVED_SUBSET_COLUMNS)

    unknown = [c for c in present if c not in original and c not in allowed_extra]
    if unknown:
        raise SchemaMismatch(
            f"{file}: unknown column(s) {_shown(unknown)} not in the Kronodroid {release} schema"
        )
    missing = [c for c in original if c not in present_set and c not in optional]
    if missing:
        raise SchemaMismatch(
            f"{file}: missing required column(s) {missing[:10]}"
            + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
        )
    ordered = [c for c in original if c in present_set]
    ordered += [c for c in DERIVED_SUBSET_COLUMNS if c in present_set]
    return tuple(ordered)


def _shown(columns: list[str], count: int = 10, width: int = 40) -> str:
    """A short listing of column names: at most `count`, each cut to `width` characters."""
    names = [c if len(c) <= width else c[: width - 3] + "..." for c in columns[:count]]
    more = f" (+{len(columns) - count} more)" if len(columns) > count else ""
    return f"{names}{more}"


def dbt_columns_macro() -> str:
    """The dbt macro file `dbt/kronodroid/macros/kronodroid_columns.sql`, generated from
    this module."""

    def listing(columns: tuple[str, ...]) -> str:
        return "[" + ", ".join(f'"{c}"' for c in columns) + "]"

    return (
        "{# Generated from dfp.kronodroid.schema by `python -m dfp.kronodroid.schema`;"
        " do not edit. #}\n"
        "{% macro kronodroid_feature_columns() %}"
        f"{{{{ return({listing(sql_feature_columns())}) }}}}"
        "{% endmacro %}\n"
        "{% macro kronodroid_label_leaking_columns() %}"
        f"{{{{ return({listing(LABEL_LEAKING_COLUMNS)}) }}}}"
        "{% endmacro %}\n"
        "{% macro kronodroid_source_columns() %}"
        f"{{{{ return({json.dumps(source_columns())}) }}}}"
        "{% endmacro %}\n"
    )


def source_columns() -> list[list[str]]:
    """[raw name, SQL name, SQL type] of every column the dbt source `releases` has (both
    releases' canonical columns): what dbt-duckdb's plugin gets from `parse.conform`, spelled
    out for engines that read the raw parquet themselves (Spark)."""
    import pyarrow as pa

    from dfp.kronodroid.parse import _TARGET_TYPE, canonical_columns

    sql_types = {pa.string(): "string", pa.int64(): "bigint", pa.float64(): "double"}
    seen: dict[str, list[str]] = {}
    for release in Release:
        for column in canonical_columns(release):
            kind_type = (
                pa.string() if column == SOURCE_FILE_COLUMN else _TARGET_TYPE[kind_of(column)]
            )
            seen.setdefault(column, [column, sql_name(column), sql_types[kind_type]])
    return list(seen.values())


if __name__ == "__main__":
    import sys

    from dfp.settings import PROJECT_ROOT

    target = PROJECT_ROOT / "dbt" / "kronodroid" / "macros" / "kronodroid_columns.sql"
    target.write_text(dbt_columns_macro())
    sys.stdout.write(f"wrote {target}\n")


class KronodroidInputError(ValueError):
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


def release_for_file(path: Path) -> Release:
    """Kronodroid files are named `*-emu-*` (emulator) or `*-real-*` (real device)."""
    name = path.name.lower()
    is_emu, is_real = "emu" in name, "real" in name
    if is_emu == is_real:
        raise KronodroidInputError(
            path.name,
            "cannot tell the release from the file name: expected 'emu' (emulator) or "
            "'real' (real device) in it",
        )
    return Release.EMULATOR if is_emu else Release.REAL_DEVICE

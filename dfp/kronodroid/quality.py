"""Quality rules for raw Kronodroid data: pandera schemas and dataset-level checks.

Pure logic: takes pandas frames (as read back from the run branch), returns outcomes that the
Dagster layer turns into blocking asset-check results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pyarrow
from pydantic import BaseModel, Field

from dfp.kronodroid.schema import (
    DATE_COLUMNS,
    DERIVED_SUBSET_COLUMNS,
    LABEL_COLUMN,
    SHA256_COLUMN,
    SOURCE_FILE_COLUMN,
    Kind,
    Release,
    kind_of,
    original_columns,
)

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors


class RawQualityThresholds(BaseModel):
    """Dataset-level limits; defaults suit the real releases and the synthetic generator."""

    min_rows_per_release: int = Field(1000, ge=0)
    malware_share_min: float = Field(0.02, ge=0, le=1)
    malware_share_max: float = Field(0.98, ge=0, le=1)
    # The real data has a few sha256 values listed twice with different labels; staging
    # resolves them. Many of them means a broken export, so the raw gate fails.
    max_conflicting_sha256_share: float = Field(0.001, ge=0, le=1)


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


CHECK_DESCRIPTIONS = {
    "raw_schema": "pandera schema per release: columns, types, label in {0,1}, counts >= 0",
    "sha256_label_conflicts": "share of sha256 values listed with conflicting labels",
    "row_count_floor": "every release has at least the minimum number of rows",
    "label_balance": "malware share per release within the configured band",
}

_MDY = r"^\d{1,2}/\d{1,2}/\d{4}$"
_ISO = r"^\d{4}-\d{2}-\d{2}$"


def _column_schema(column: str) -> pa.Column:
    import pandera.pandas as pa

    kind = kind_of(column)
    if kind is Kind.LABEL:
        return pa.Column("Int64", pa.Check.isin([0, 1]), nullable=False)
    if kind is Kind.FLAG:
        return pa.Column("Int64", pa.Check.isin([0, 1]), nullable=False)
    if kind is Kind.COUNT:
        return pa.Column("Int64", pa.Check.ge(0), nullable=False)
    if kind is Kind.METRIC:
        return pa.Column("Int64", pa.Check.ge(0), nullable=True)
    if kind is Kind.YEAR:
        return pa.Column("Int64", pa.Check.in_range(1990, 2100), nullable=True)
    if kind is Kind.RATIO:
        return pa.Column(float, pa.Check.ge(0), nullable=True)
    if kind is Kind.SHA256:
        return pa.Column(str, pa.Check.str_matches(r"^[0-9a-fA-F]{64}$"), nullable=False)
    if kind is Kind.DATE_MDY:
        return pa.Column(str, pa.Check.str_matches(_MDY), nullable=True)
    if kind is Kind.DATE_ISO:
        return pa.Column(str, pa.Check.str_matches(_ISO), nullable=True)
    return pa.Column(str, nullable=True)


def raw_schema(release: Release, present: list[str]) -> pa.DataFrameSchema:
    """The release's pandera schema; optional layout columns are validated when present."""
    import pandera.pandas as pa

    optional = {*DATE_COLUMNS[release], *DERIVED_SUBSET_COLUMNS, "FilesInsideAPK"}
    columns = {c: _column_schema(c) for c in original_columns(release) if c not in optional}
    for c in optional:
        if c in present:
            columns[c] = _column_schema(c)
    columns[SOURCE_FILE_COLUMN] = pa.Column(str, nullable=False)
    return pa.DataFrameSchema(columns, strict=True, name=f"kronodroid_raw_{release}")


def to_pandas(table: pyarrow.Table) -> pd.DataFrame:
    """Arrow → pandas with nullable integers (so a missing metric stays an integer column)."""
    import pandas as pd

    return table.to_pandas(types_mapper={pyarrow.int64(): pd.Int64Dtype()}.get)


def _failures(df: pd.DataFrame, errors: SchemaErrors, limit: int = 25) -> list[dict[str, Any]]:
    import pandas as pd

    cases = errors.failure_cases
    row_in_file = df.groupby(SOURCE_FILE_COLUMN).cumcount() + 1
    out = []
    for rec in cases.head(limit).to_dict("records"):
        idx = rec.get("index")
        has_row = idx is not None and not pd.isna(idx) and idx in df.index
        out.append(
            {
                "file": df.at[idx, SOURCE_FILE_COLUMN] if has_row else "",
                "row": int(row_in_file.at[idx]) if has_row else None,
                "column": rec.get("column"),
                "check": str(rec.get("check")),
                "value": str(rec.get("failure_case"))[:80],
            }
        )
    return out


def audit(frames: dict[Release, pd.DataFrame], limits: RawQualityThresholds) -> list[CheckOutcome]:
    """Evaluate every raw check on the given releases (as read back from the run branch)."""
    import pandas as pd
    from pandera.errors import SchemaErrors

    outcomes: list[CheckOutcome] = []

    schema_meta: dict[str, Any] = {}
    failures: list[dict[str, Any]] = []
    for release, df in frames.items():
        try:
            raw_schema(release, list(df.columns)).validate(df, lazy=True)
            schema_meta[f"{release}_schema_errors"] = 0
        except SchemaErrors as exc:
            schema_meta[f"{release}_schema_errors"] = len(exc.failure_cases)
            failures.extend({"release": str(release), **f} for f in _failures(df, exc))
    outcomes.append(
        CheckOutcome(
            "raw_schema",
            not failures,
            CHECK_DESCRIPTIONS["raw_schema"],
            {**schema_meta, "failures": failures},
        )
    )

    conflict_meta: dict[str, Any] = {}
    conflict_ok = True
    for release, df in frames.items():
        labels = df.groupby(SHA256_COLUMN)[LABEL_COLUMN].nunique()
        conflicting = labels[labels > 1]
        share = len(conflicting) / max(len(labels), 1)
        conflict_ok &= share <= limits.max_conflicting_sha256_share
        conflict_meta[f"{release}_conflicting_sha256"] = len(conflicting)
        conflict_meta[f"{release}_conflicting_share"] = round(share, 6)
        conflict_meta[f"{release}_examples"] = list(conflicting.index[:5])
    conflict_meta["max_share"] = limits.max_conflicting_sha256_share
    outcomes.append(
        CheckOutcome(
            "sha256_label_conflicts",
            conflict_ok,
            CHECK_DESCRIPTIONS["sha256_label_conflicts"],
            conflict_meta,
        )
    )

    rows = {str(r): len(df) for r, df in frames.items()}
    outcomes.append(
        CheckOutcome(
            "row_count_floor",
            bool(rows) and all(n >= limits.min_rows_per_release for n in rows.values()),
            CHECK_DESCRIPTIONS["row_count_floor"],
            {**{f"{r}_rows": n for r, n in rows.items()}, "floor": limits.min_rows_per_release},
        )
    )

    shares = {
        str(r): float(pd.to_numeric(df[LABEL_COLUMN], errors="coerce").fillna(0).eq(1).mean())
        for r, df in frames.items()
    }
    outcomes.append(
        CheckOutcome(
            "label_balance",
            bool(shares)
            and all(
                limits.malware_share_min <= s <= limits.malware_share_max for s in shares.values()
            ),
            CHECK_DESCRIPTIONS["label_balance"],
            {
                **{f"{r}_malware_share": round(s, 4) for r, s in shares.items()},
                "band": f"[{limits.malware_share_min}, {limits.malware_share_max}]",
            },
        )
    )
    return outcomes

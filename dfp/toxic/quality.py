"""The blocking checks of `comments_raw`, on the Delta table as read back from the branch.

Pure logic (no Dagster): each check turns the table into a `CheckOutcome`; failing rows are
listed (id, column, value) so the UI can show what broke.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from dfp.toxic.records import ID, LABEL, TEXT
from dfp.toxic.sources import RAW_SCHEMA, preview

CHECK_DESCRIPTIONS = {
    "raw_schema": "the Delta table has exactly the columns and types of comments_raw",
    "labels_binary": "every label is 0 or 1",
    "non_empty_text": "no comment text is null or blank",
    "unique_ids": "ids are UUIDs, none null, none repeated",
    "duplicate_text": "one text never carries two labels, and duplicated texts stay under "
    "the configured share",
    "row_count_floor": "at least the minimum number of comments",
}


class RawQualityThresholds(BaseModel):
    min_rows: int = Field(1000, ge=0)
    #: Texts appearing under more than one id (only possible with source-given ids).
    max_duplicate_text_share: float = Field(0.01, ge=0, le=1)


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _outcome(name: str, failures: list[dict[str, Any]], **metadata: Any) -> CheckOutcome:
    passed = metadata.pop("_passed", True)
    return CheckOutcome(
        name,
        not failures and passed,
        CHECK_DESCRIPTIONS[name],
        {"failures": failures[:25], "failing_rows": len(failures), **metadata},
    )


def audit(table: pa.Table, limits: RawQualityThresholds) -> list[CheckOutcome]:
    rows = table.num_rows
    outcomes = []
    present = [(f.name, str(f.type)) for f in table.schema]
    expected = [(f.name, str(f.type)) for f in RAW_SCHEMA]
    schema_ok = present == expected
    outcomes.append(
        _outcome(
            "raw_schema",
            [] if schema_ok else [{"id": "", "column": "*", "value": str(present)}],
            columns=[list(c) for c in present],
        )
    )
    if not schema_ok and not {ID, TEXT, LABEL} <= set(table.column_names):
        # Nothing else can be judged on a table without the core columns.
        for name in ("labels_binary", "non_empty_text", "unique_ids", "duplicate_text"):
            outcomes.append(_outcome(name, [{"id": "", "column": "*", "value": "no columns"}]))
        outcomes.append(_outcome("row_count_floor", [], rows=rows, _passed=False))
        return outcomes

    ids = table.column(ID).to_pylist()
    labels = table.column(LABEL)
    bad_label = pc.invert(pc.fill_null(pc.is_in(labels, pa.array([0, 1], labels.type)), False))
    outcomes.append(
        _outcome(
            "labels_binary",
            _rows(ids, table.column(LABEL).to_pylist(), bad_label, LABEL),
            toxic_share=round(float(pc.mean(labels).as_py() or 0.0), 4) if rows else 0.0,
        )
    )

    texts = table.column(TEXT)
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0), True)
    outcomes.append(
        _outcome("non_empty_text", _rows(ids, texts.to_pylist(), blank, TEXT, shorten=True))
    )

    id_failures = []
    seen: set[str] = set()
    for value in ids:
        if value is None or not _is_uuid(value) or value in seen:
            problem = "null" if value is None else "repeated" if value in seen else "not a UUID"
            id_failures.append({"id": value, "column": ID, "value": problem})
        seen.add(value)
    outcomes.append(_outcome("unique_ids", id_failures, distinct_ids=len(seen)))

    grouped = (
        pa.table({TEXT: texts, LABEL: labels})
        .group_by(TEXT)
        .aggregate([(LABEL, "count"), (LABEL, "count_distinct")])
    )
    repeated = grouped.filter(pc.greater(grouped.column(f"{LABEL}_count"), 1))
    conflicting = repeated.filter(pc.greater(repeated.column(f"{LABEL}_count_distinct"), 1))
    share = repeated.num_rows / rows if rows else 0.0
    outcomes.append(
        _outcome(
            "duplicate_text",
            [
                {"id": "", "column": TEXT, "value": f"two labels: {preview(t or '')}"}
                for t in conflicting.column(TEXT).to_pylist()
            ],
            duplicated_texts=repeated.num_rows,
            duplicated_text_share=round(share, 6),
            _passed=share <= limits.max_duplicate_text_share,
        )
    )
    outcomes.append(_outcome("row_count_floor", [], rows=rows, _passed=rows >= limits.min_rows))
    return outcomes


def _rows(
    ids: list, values: list, mask: pa.ChunkedArray, column: str, *, shorten: bool = False
) -> list[dict[str, Any]]:
    out = []
    for i in pc.indices_nonzero(mask).to_pylist():
        value = values[i]
        out.append(
            {
                "id": ids[i],
                "column": column,
                "value": preview(value) if shorten and value else value,
            }
        )
    return out


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False

"""Compare two lakeFS refs (pure logic, no Dagster, no domain).

* **Objects**: lakeFS's diff of the two refs (two-dot: the trees as they are, not only what
  one side changed since the merge base), counted per path prefix a caller names.
* **Rows**: a keyed table read on both refs, compared by key: a key on one side only is rows
  added or removed; rows of a key on both sides are matched by content, and the unmatched
  ones pair up as changed (the rest are added or removed). Keys need not be unique (raw data
  can repeat a key), and with unique keys this is the usual added/removed/changed.
* **Metrics**: `side_b − side_a` for every metric both sides have.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dfp.lake.lakefs_client import LakeFSClient

if TYPE_CHECKING:
    import pyarrow as pa


class DiffError(ValueError):
    """Two refs cannot be compared; the message names the table, column or ref."""


# -- objects --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectCounts:
    prefix: str
    added: int = 0
    removed: int = 0
    changed: int = 0

    @property
    def total(self) -> int:
        return self.added + self.removed + self.changed


def count_objects(entries: Iterable, prefixes: Sequence[str]) -> list[ObjectCounts]:
    """Objects added/removed/changed under each prefix (a path counts for the longest prefix
    it starts with; directory markers are left out)."""
    counts = {p: Counter() for p in prefixes}
    by_length = sorted(prefixes, key=len, reverse=True)
    for entry in entries:
        if entry.path.endswith("/") or entry.type not in ("added", "removed", "changed"):
            continue
        prefix = next((p for p in by_length if entry.path.startswith(p)), None)
        if prefix is not None:
            counts[prefix][entry.type] += 1
    return [ObjectCounts(p, c["added"], c["removed"], c["changed"]) for p, c in counts.items()]


def object_diff(
    client: LakeFSClient, left_ref: str, right_ref: str, prefixes: Sequence[str]
) -> list[ObjectCounts]:
    """lakeFS's two-dot diff of the refs, counted per prefix."""
    entries = []
    for prefix in prefixes:
        entries.extend(client.diff(left_ref, right_ref, prefix=prefix, diff_type="two_dot"))
    return count_objects(entries, prefixes)


# -- rows -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowCounts:
    name: str
    rows_a: int
    rows_b: int
    added: int
    removed: int
    changed: int
    #: column -> rows changed in it, for keys with one row on each side
    changed_columns: dict[str, int] = field(default_factory=dict)
    columns_added: tuple[str, ...] = ()
    columns_removed: tuple[str, ...] = ()


def _fingerprints(table: pa.Table, key: Sequence[str], columns: Sequence[str]):
    """(key tuple per row, content hash per row) of `table`."""
    import pandas as pd

    frame = table.select(list(columns)).to_pandas()
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    keys = list(zip(*(table.column(k).to_pylist() for k in key), strict=True))
    return keys, hashes


def _check_key(table: pa.Table, key: Sequence[str], name: str, side: str) -> None:
    missing = [k for k in key if k not in table.column_names]
    if missing:
        raise DiffError(f"{name} on {side} has no key column(s) {missing}")
    for k in key:
        nulls = table.column(k).null_count
        if nulls:
            raise DiffError(f"{name} on {side}: key column {k!r} has {nulls} null value(s)")


def row_diff(table_a: pa.Table, table_b: pa.Table, key: Sequence[str], name: str) -> RowCounts:
    """Rows added/removed/changed from `table_a` to `table_b` by `key` (see the module doc).
    Content is compared on the columns both tables have."""
    if not key:
        raise DiffError(f"{name}: no key columns given")
    _check_key(table_a, key, name, "side a")
    _check_key(table_b, key, name, "side b")
    columns_a, columns_b = list(table_a.column_names), list(table_b.column_names)
    common = [c for c in columns_a if c in set(columns_b)]
    table_b = table_b.select(common).cast(table_a.select(common).schema, safe=False)
    table_a = table_a.select(common)
    keys_a, hashes_a = _fingerprints(table_a, key, common)
    keys_b, hashes_b = _fingerprints(table_b, key, common)
    rows_a: dict[tuple, list[int]] = {}
    rows_b: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys_a):
        rows_a.setdefault(k, []).append(i)
    for i, k in enumerate(keys_b):
        rows_b.setdefault(k, []).append(i)
    added = removed = changed = 0
    pairs: list[tuple[int, int]] = []
    for k, a_rows in rows_a.items():
        b_rows = rows_b.get(k)
        if b_rows is None:
            removed += len(a_rows)
            continue
        a_left = Counter(hashes_a[i] for i in a_rows)
        b_left = Counter(hashes_b[i] for i in b_rows)
        a_left, b_left = a_left - b_left, b_left - a_left
        n_a, n_b = sum(a_left.values()), sum(b_left.values())
        changed += min(n_a, n_b)
        removed += n_a - min(n_a, n_b)
        added += n_b - min(n_a, n_b)
        if n_a and n_b and len(a_rows) == len(b_rows) == 1:
            pairs.append((a_rows[0], b_rows[0]))
    added += sum(len(b_rows) for k, b_rows in rows_b.items() if k not in rows_a)
    return RowCounts(
        name=name,
        rows_a=len(keys_a),
        rows_b=len(keys_b),
        added=added,
        removed=removed,
        changed=changed,
        changed_columns=_changed_columns(table_a, table_b, pairs, key),
        columns_added=tuple(c for c in columns_b if c not in common),
        columns_removed=tuple(c for c in columns_a if c not in common),
    )


def _changed_columns(
    table_a: pa.Table, table_b: pa.Table, pairs: list[tuple[int, int]], key: Sequence[str]
) -> dict[str, int]:
    if not pairs:
        return {}
    import pyarrow as pa

    a = table_a.take(pa.array([p[0] for p in pairs])).to_pandas()
    b = table_b.take(pa.array([p[1] for p in pairs])).to_pandas()
    out = {}
    for column in a.columns:
        if column in key:
            continue
        left, right = a[column], b[column]
        differs = ~((left == right) | (left.isna() & right.isna()))
        if int(differs.sum()):
            out[column] = int(differs.sum())
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class KeyedTable:
    """A table to compare: its name in the report, how to read it on a ref (None when the ref
    does not have it), and its key columns."""

    name: str
    read: Callable[[str], pa.Table | None]
    key: tuple[str, ...]


def table_diff(table: KeyedTable, ref_a: str, ref_b: str) -> RowCounts | None:
    """`row_diff` of the table as each ref has it (a ref without it: no rows); None when
    neither ref has it."""
    import pyarrow as pa

    data_a, data_b = table.read(ref_a), table.read(ref_b)
    if data_a is None and data_b is None:
        return None
    empty = (data_b if data_a is None else data_a).schema.empty_table()
    data_a = data_a if data_a is not None else empty
    data_b = data_b if data_b is not None else empty
    if not isinstance(data_a, pa.Table) or not isinstance(data_b, pa.Table):
        raise DiffError(f"{table.name}: the reader did not return Arrow tables")
    return row_diff(data_a, data_b, table.key, table.name)


# -- metrics --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricDelta:
    group: str  # e.g. a model and a split: "model temporal"
    metric: str
    a: float
    b: float

    @property
    def delta(self) -> float:
        if math.isnan(self.a) or math.isnan(self.b):
            return math.nan
        return self.b - self.a


def metric_deltas(
    metrics_a: Mapping[str, float], metrics_b: Mapping[str, float], groups: Sequence[str]
) -> list[MetricDelta]:
    """Deltas of the metrics both sides have, named `<something><group>_<metric>`: `groups`
    (split names, say) are looked for in each name; the part before becomes the model name
    (`model` when empty), e.g. `baseline_temporal_f1` → ("baseline temporal", "f1")."""
    out = []
    for name in sorted(set(metrics_a) & set(metrics_b)):
        for group in groups:
            head, sep, metric = name.partition(f"{group}_")
            if sep and (not head or head.endswith("_")) and metric:
                model = head.rstrip("_") or "model"
                out.append(
                    MetricDelta(
                        f"{model} {group}", metric, float(metrics_a[name]), float(metrics_b[name])
                    )
                )
                break
    order = {g: i for i, g in enumerate(groups)}
    return sorted(
        out,
        key=lambda d: (d.group.split()[0] != "model", order[d.group.split()[-1]], d.group),
    )


# -- markdown -------------------------------------------------------------------------------
def fmt(value: float | int | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return f"{value:+,.0f}" if signed else f"{value:,.0f}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def rows_markdown(counts: Sequence[RowCounts], a: str, b: str) -> str:
    return markdown_table(
        ["table", f"rows {a}", f"rows {b}", "added", "removed", "changed", "most changed columns"],
        [
            [
                c.name,
                fmt(c.rows_a),
                fmt(c.rows_b),
                fmt(c.added),
                fmt(c.removed),
                fmt(c.changed),
                ", ".join(f"{k} ({v})" for k, v in list(c.changed_columns.items())[:3]) or "-",
            ]
            for c in counts
        ],
    )


def objects_markdown(counts: Sequence[ObjectCounts]) -> str:
    return markdown_table(
        ["objects under", "added", "removed", "changed"],
        [[f"`{c.prefix}`", c.added, c.removed, c.changed] for c in counts],
    )


def metrics_markdown(deltas: Sequence[MetricDelta], a: str, b: str) -> str:
    return markdown_table(
        ["model, split", "metric", a, b, "delta"],
        [[d.group, d.metric, fmt(d.a), fmt(d.b), fmt(d.delta, signed=True)] for d in deltas],
    )

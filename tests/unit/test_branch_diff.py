"""The platform's branch diff logic (dfp.lake.diff) on small tables."""

import math

import pyarrow as pa
import pytest

from dfp.lake.diff import (
    DiffError,
    KeyedTable,
    count_objects,
    metric_deltas,
    row_diff,
    table_diff,
)
from dfp.lake.lakefs_client import DiffEntry


def _table(rows):
    return pa.table(
        {
            "id": [r[0] for r in rows],
            "x": pa.array([r[1] for r in rows], pa.int64()),
            "y": [r[2] for r in rows],
        }
    )


A = _table([("a", 1, "p"), ("b", 2, "q"), ("c", 3, "r"), ("d", 4, None)])


def test_unique_keys_added_removed_changed():
    # b removed; c's x changed; d's y changed from null; e, f added; a unchanged
    b = _table([("a", 1, "p"), ("c", 30, "r"), ("d", 4, "s"), ("e", 5, "t"), ("f", 6, "u")])
    counts = row_diff(A, b, ["id"], "t")
    assert (counts.added, counts.removed, counts.changed) == (2, 1, 2)
    assert (counts.rows_a, counts.rows_b) == (4, 5)
    assert counts.changed_columns == {"x": 1, "y": 1}


def test_same_rows_in_another_order_are_no_change():
    reordered = A.take(pa.array([3, 1, 0, 2]))
    counts = row_diff(A, reordered, ["id"], "t")
    assert (counts.added, counts.removed, counts.changed) == (0, 0, 0)


def test_repeated_keys_match_by_content():
    a = _table([("k", 1, "p"), ("k", 2, "q"), ("m", 1, "p")])
    # one k row kept, one changed, one more k row added; m repeated once more (added)
    b = _table([("k", 1, "p"), ("k", 20, "q"), ("k", 3, "z"), ("m", 1, "p"), ("m", 1, "p")])
    counts = row_diff(a, b, ["id"], "t")
    assert (counts.added, counts.removed, counts.changed) == (2, 0, 1)
    assert counts.changed_columns == {}  # only keys with one row per side are attributed


def test_composite_key_and_column_changes():
    a = pa.table({"k1": [1, 1], "k2": ["x", "y"], "v": [1.0, 2.0], "old": [0, 0]})
    b = pa.table({"k1": [1, 1], "k2": ["x", "y"], "v": [1.0, 2.5], "new": [1, 1]})
    counts = row_diff(a, b, ["k1", "k2"], "t")
    assert (counts.added, counts.removed, counts.changed) == (0, 0, 1)
    assert counts.columns_added == ("new",) and counts.columns_removed == ("old",)


def test_bad_keys_are_named():
    with pytest.raises(DiffError, match="t on side b has no key column"):
        row_diff(A, A.drop_columns(["id"]), ["id"], "t")
    nulls = pa.table({"id": ["a", None], "x": [1, 2], "y": ["p", "q"]})
    with pytest.raises(DiffError, match="key column 'id' has 1 null"):
        row_diff(A, nulls, ["id"], "t")


def test_a_table_on_one_side_only():
    only_b = KeyedTable("t", lambda ref: A if ref == "b" else None, ("id",))
    counts = table_diff(only_b, "a", "b")
    assert (counts.added, counts.removed, counts.changed) == (4, 0, 0)
    assert table_diff(KeyedTable("t", lambda ref: None, ("id",)), "a", "b") is None


def test_objects_counted_per_longest_prefix():
    entries = [
        DiffEntry("added", "raw/x/1.parquet", 1),
        DiffEntry("removed", "raw/x/2.parquet", 1),
        DiffEntry("changed", "raw/x/sub/3.parquet", 1),
        DiffEntry("prefix_changed", "raw/x/dir/", None),
        DiffEntry("added", "models/m.pt", 1),
        DiffEntry("added", "elsewhere/z", 1),
    ]
    counts = {c.prefix: c for c in count_objects(entries, ["raw/", "raw/x/sub/", "models/"])}
    assert (counts["raw/"].added, counts["raw/"].removed, counts["raw/"].changed) == (1, 1, 0)
    assert counts["raw/x/sub/"].changed == 1
    assert counts["models/"].added == 1


def test_metric_deltas_per_model_and_split():
    a = {"temporal_f1": 0.5, "random_f1": 0.8, "baseline_temporal_f1": 0.4, "only_a": 1.0}
    b = {"temporal_f1": 0.75, "random_f1": 0.7, "baseline_temporal_f1": math.nan}
    deltas = metric_deltas(a, b, ("temporal", "random"))
    got = [(d.group, d.metric, d.delta) for d in deltas]
    assert got[0] == ("model temporal", "f1", 0.25)
    assert got[1][:2] == ("model random", "f1") and got[1][2] == pytest.approx(-0.1)
    assert got[2][:2] == ("baseline temporal", "f1") and math.isnan(got[2][2])
    assert len(got) == 3

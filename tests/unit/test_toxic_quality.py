"""The blocking checks of comments_raw on hand-made tables."""

from datetime import UTC, datetime

import pyarrow as pa

from dfp.toxic.quality import RawQualityThresholds, audit
from dfp.toxic.records import comment_id


def table(texts, labels, ids=None):
    n = len(texts)
    return pa.table(
        {
            "id": ids or [comment_id(t or str(i)) for i, t in enumerate(texts)],
            "comment_text": texts,
            "labels": pa.array(labels, pa.int64()),
            "source": ["t"] * n,
            "ingested_at": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def results(tbl, **limits):
    return {o.name: o for o in audit(tbl, RawQualityThresholds(min_rows=2, **limits))}


def test_good_table_passes():
    tbl = table(["a", "b", "c"], [0, 1, 0])
    assert all(o.passed for o in results(tbl).values())


def test_each_rule_fails_on_its_own_problem():
    out = results(table(["a", " ", "c"], [0, 2, 0]))
    assert not out["labels_binary"].passed and out["labels_binary"].metadata["failing_rows"] == 1
    assert not out["non_empty_text"].passed
    assert out["raw_schema"].passed and out["unique_ids"].passed

    uid = "6f1d8a52-3c1e-4f0e-9a57-2b7d5e0c9a00"
    out = results(table(["a", "a", "b"], [0, 1, 0], ids=[uid, uid, "not-a-uuid"]))
    assert not out["unique_ids"].passed and out["unique_ids"].metadata["failing_rows"] == 2
    assert not out["duplicate_text"].passed  # "a" carries two labels

    assert not results(table(["a"], [0]))["row_count_floor"].passed


def test_schema_drift_fails():
    out = results(table(["a", "b"], [0, 1]).append_column("_deleted", pa.array([None, None])))
    assert not out["raw_schema"].passed

"""The staging Great Expectations suite: passes on good rows; each kind of bad row fails exactly
the expectation meant for it, naming that row's id and value."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from dfp.toxic.expectations import EXPECTATION_NAMES, pg_array_text, validate_staging

IDS = [str(uuid.uuid4()) for _ in range(3)]
BAD = str(uuid.uuid4())


def good_rows() -> list[dict]:
    return [
        {"id": IDS[0], "labels": 0, "input_ids": [101, 7592, 102], "attention_mask": [1, 1, 1]},
        {"id": IDS[1], "labels": 1, "input_ids": [101, 102, 0], "attention_mask": [1, 1, 0]},
        # as read from Postgres with ::text
        {"id": IDS[2], "labels": 0, "input_ids": "{101,2088,102}", "attention_mask": "{1,1,1}"},
    ]


def frame_with(bad: dict) -> pd.DataFrame:
    row = {"id": BAD, "labels": 1, "input_ids": [101, 102], "attention_mask": [1, 1], **bad}
    return pd.DataFrame([*good_rows(), row])


def test_good_rows_pass_every_expectation():
    suite = validate_staging(pd.DataFrame(good_rows()))

    assert suite.success
    assert [r.name for r in suite.results] == list(EXPECTATION_NAMES)
    assert all(r.unexpected_count == 0 and r.element_count == 3 for r in suite.results)


def test_uuid_objects_and_a_null_free_int_frame_pass():
    rows = good_rows()
    for row in rows:
        row["id"] = uuid.UUID(row["id"])
    assert validate_staging(pd.DataFrame(rows)).success


BAD_CASES = {
    "null label": ({"labels": None}, "labels_not_null", None),
    "null input_ids": ({"input_ids": None}, "input_ids_not_null", None),
    "null attention_mask": ({"attention_mask": None}, "attention_mask_not_null", None),
    "label 2": ({"labels": 2}, "labels_in_0_1", 2),
    "label -1": ({"labels": -1}, "labels_in_0_1", -1),
    "label as text": ({"labels": "1"}, "labels_in_0_1", "1"),
    "id not a uuid": ({"id": "comment-17"}, "id_uuid_shaped", "comment-17"),
    "id uuid without dashes": (
        {"id": "0" * 32},
        "id_uuid_shaped",
        "0" * 32,
    ),
    "fractional token id": ({"input_ids": [101, 1.5]}, "input_ids_integer_array", "{101,1.5}"),
    "empty input_ids": ({"input_ids": []}, "input_ids_integer_array", "{}"),
    "null token id": ({"input_ids": [101, None]}, "input_ids_integer_array", "{101,NULL}"),
    "nested input_ids": ({"input_ids": [[101, 102]]}, "input_ids_integer_array", "{[101, 102]}"),
    "input_ids text": ({"input_ids": "101 102"}, "input_ids_integer_array", "101 102"),
    "input_ids a number": ({"input_ids": 101}, "input_ids_integer_array", "101"),
    "mask 2": ({"attention_mask": [1, 2]}, "attention_mask_0_1_array", "{1,2}"),
    "empty mask": ({"attention_mask": []}, "attention_mask_0_1_array", "{}"),
    "boolean mask": ({"attention_mask": [True, False]}, "attention_mask_0_1_array", "{True,False}"),
    "negative mask": ({"attention_mask": "{1,-1}"}, "attention_mask_0_1_array", "{1,-1}"),
}


@pytest.mark.parametrize("bad,expectation,value", BAD_CASES.values(), ids=BAD_CASES.keys())
def test_each_bad_row_fails_its_expectation(bad, expectation, value):
    suite = validate_staging(frame_with(bad))

    assert [r.name for r in suite.failures()] == [expectation]
    failed = suite.by_name()[expectation]
    assert failed.unexpected_count == 1
    assert failed.unexpected_ids == [bad.get("id", BAD)]
    assert failed.unexpected_values == [value]
    assert failed.element_count == 4


def test_null_id_fails_not_null_only():
    suite = validate_staging(frame_with({"id": None}))

    assert [r.name for r in suite.failures()] == ["id_not_null"]
    assert suite.by_name()["id_not_null"].unexpected_ids == [None]


def test_duplicate_ids_fail_uniqueness_naming_both_rows():
    suite = validate_staging(frame_with({"id": IDS[1]}))

    assert [r.name for r in suite.failures()] == ["id_unique"]
    failed = suite.by_name()["id_unique"]
    assert failed.unexpected_count == 2
    assert failed.unexpected_ids == [IDS[1], IDS[1]]


def test_a_missing_column_fails_its_expectations_with_the_error():
    suite = validate_staging(pd.DataFrame(good_rows()).drop(columns=["attention_mask"]))

    failures = {r.name: r for r in suite.failures()}
    assert set(failures) == {"attention_mask_not_null", "attention_mask_0_1_array"}
    assert all("attention_mask" in (r.error or "") for r in failures.values())


def test_only_a_few_unexpected_values_are_kept():
    rows = [
        {"id": str(uuid.uuid4()), "labels": 5, "input_ids": [101], "attention_mask": [1]}
        for _ in range(50)
    ]
    failed = validate_staging(pd.DataFrame(rows)).by_name()["labels_in_0_1"]
    assert failed.unexpected_count == 50
    assert failed.unexpected_values == [5] * 5
    assert failed.unexpected_ids == [r["id"] for r in rows[:5]]


def test_pg_array_text():
    assert pg_array_text([101, 102]) == "{101,102}"
    assert pg_array_text((1,)) == "{1}"
    assert pg_array_text("{1,2}") == "{1,2}"
    assert pg_array_text(None) is None
    assert pg_array_text(float("nan")) is None

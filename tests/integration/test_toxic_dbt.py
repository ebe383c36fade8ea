"""dbt/toxic_comments on a real Postgres: table_clean keeps exactly the well-formed staging rows
(arrays as jsonb, labels index), a failing dbt test fails the build, and the Great Expectations
staging suite runs on the real table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from dfp.toxic.dbt_build import postgres_env, run_dbt
from dfp.toxic.expectations import validate_staging_table

pytestmark = pytest.mark.integration

STAGING_DDL = (
    "create table {schema}.text_comments "
    "(id uuid, labels smallint, input_ids integer[], attention_mask smallint[])"
)


@dataclass
class Schemas:
    engine: sa.Engine
    url: str
    staging: str
    production: str

    def execute(self, sql: str, params: dict | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params or {})

    def fetch(self, sql: str, params: dict | None = None) -> list[sa.Row]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params or {}))

    def staging_table(self, rows: list[tuple], ddl: str = STAGING_DDL) -> None:
        self.execute(ddl.format(schema=self.staging))
        insert = (
            f"insert into {self.staging}.text_comments (id, labels, input_ids, attention_mask) "
            "values (:id, :labels, :input_ids, :attention_mask)"
        )
        with self.engine.begin() as conn:
            for id_, labels, input_ids, mask in rows:
                conn.execute(
                    sa.text(insert),
                    {"id": id_, "labels": labels, "input_ids": input_ids, "attention_mask": mask},
                )

    def build(self):
        return run_dbt(self.staging, self.production, env=postgres_env(self.url))


@pytest.fixture
def schemas(postgres_url) -> Iterator[Schemas]:
    """A fresh staging and production schema pair, dropped afterwards."""
    engine = sa.create_engine(postgres_url)
    suffix = uuid.uuid4().hex[:10]
    s = Schemas(engine, postgres_url, f"staging__t{suffix}", f"production__t{suffix}")
    s.execute(f"create schema {s.staging}")
    try:
        yield s
    finally:
        s.execute(f"drop schema if exists {s.staging} cascade")
        s.execute(f"drop schema if exists {s.production} cascade")
        engine.dispose()


def _id() -> str:
    return str(uuid.uuid4())


GOOD = [
    (_id(), 0, [101, 7592, 1010, 2088, 999, 102], [1, 1, 1, 1, 1, 1]),
    (_id(), 1, [101, 4067, 102, 0, 0], [1, 1, 1, 0, 0]),
    (_id(), 0, [101, 102], [1, 1]),
]
MALFORMED = {
    "null label": (_id(), None, [101, 102], [1, 1]),
    "label 2": (_id(), 2, [101, 102], [1, 1]),
    "label -1": (_id(), -1, [101, 102], [1, 1]),
    "null input_ids": (_id(), 1, None, [1, 1]),
    "null attention_mask": (_id(), 1, [101, 102], None),
    "empty arrays": (_id(), 0, [], []),
    "empty input_ids": (_id(), 0, [], [1]),
    "length mismatch": (_id(), 1, [101, 2088, 102], [1, 1]),
    "mask 2": (_id(), 0, [101, 102], [1, 2]),
    "null in mask": (_id(), 0, [101, 102], [1, None]),
    "null in input_ids": (_id(), 0, [101, None], [1, 1]),
    "null id": (None, 0, [101, 102], [1, 1]),
}


def test_table_clean_keeps_exactly_the_good_rows_as_jsonb_with_a_labels_index(schemas):
    schemas.staging_table(GOOD + list(MALFORMED.values()))

    result = schemas.build()

    assert result.success, result
    assert {n.status for n in result.nodes if n.resource_type == "test"} == {"pass"}
    rows = schemas.fetch(
        f"select id::text, labels, input_ids, attention_mask, jsonb_typeof(input_ids), "
        f"jsonb_typeof(attention_mask), dbt_loaded_at from {schemas.production}.table_clean"
    )
    got = {row[0]: row[1:] for row in rows}
    assert set(got) == {g[0] for g in GOOD}
    for id_, labels, input_ids, mask in GOOD:
        # psycopg2 decodes jsonb: equal lists mean jsonb arrays of the same numbers
        assert got[id_][:5] == (labels, input_ids, mask, "array", "array")
        assert got[id_][5] is not None

    def labels_indexes() -> list[str]:
        return [
            row[0]
            for row in schemas.fetch(
                "select indexname from pg_indexes where schemaname = :s "
                "and tablename = 'table_clean' and indexdef like '%(labels)'",
                {"s": schemas.production},
            )
        ]

    assert labels_indexes() == ["table_clean_labels_idx"]
    # A rebuild replaces the table; the index comes with it, under the same name.
    assert schemas.build().success
    assert labels_indexes() == ["table_clean_labels_idx"]
    assert len(schemas.fetch(f"select 1 from {schemas.production}.table_clean")) == len(GOOD)


def test_staging_of_other_array_types_fails_the_array_test(schemas):
    """numeric[] token ids pass table_clean's filters (which rely on staging's declared types)
    but not the valid-arrays test: the build fails, as a blocking check would."""
    ddl = STAGING_DDL.replace("input_ids integer[]", "input_ids numeric[]")
    fractional = _id()
    schemas.staging_table([*GOOD, (fractional, 1, [101, 1.5, 102], [1, 1, 1])], ddl=ddl)

    result = schemas.build()

    assert not result.success
    failed = result.failed()
    assert [(n.name, n.status, n.failures) for n in failed] == [
        ("valid_token_arrays_table_clean_input_ids__attention_mask", "fail", 1)
    ]
    assert all(
        n.status == "pass" for n in result.nodes if n.resource_type == "test" and n not in failed
    )


def test_duplicate_ids_fail_the_unique_test(schemas):
    schemas.staging_table([*GOOD, (GOOD[0][0], 1, [101, 102], [1, 1])])

    result = schemas.build()

    assert not result.success
    assert [(n.name, n.status, n.failures) for n in result.failed()] == [
        ("unique_table_clean_id", "fail", 1)
    ]


def test_a_missing_staging_table_is_an_error_naming_it(schemas):
    result = schemas.build()

    assert not result.success
    model = result.node("table_clean")
    assert model.status == "error"
    assert f"{schemas.staging}.text_comments" in (model.message or "").replace('"', "")


def test_great_expectations_suite_on_the_real_staging_table(schemas):
    bad_label = _id()
    not_a_mask = _id()
    schemas.staging_table(
        [*GOOD, (bad_label, 2, [101, 102], [1, 1]), (not_a_mask, 0, [101, 102], [1, 3])]
    )

    suite = validate_staging_table(schemas.url, schemas.staging)

    assert suite.row_count == len(GOOD) + 2
    failures = {r.name: r for r in suite.failures()}
    assert set(failures) == {"labels_in_0_1", "attention_mask_0_1_array"}
    assert failures["labels_in_0_1"].unexpected_ids == [bad_label]
    assert failures["labels_in_0_1"].unexpected_values == [2]
    assert failures["attention_mask_0_1_array"].unexpected_ids == [not_a_mask]
    assert failures["attention_mask_0_1_array"].unexpected_values == ["{1,3}"]


def test_great_expectations_suite_passes_on_good_staging(schemas):
    schemas.staging_table(GOOD)

    suite = validate_staging_table(schemas.url, schemas.staging)

    assert suite.success, suite.failures()

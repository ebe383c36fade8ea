"""Postgres branch-schema names: sanitised, injective, within Postgres's 63-byte limit."""

import pytest

from dfp.lake.pg_branches import (
    MAX_IDENTIFIER,
    SchemaError,
    Swap,
    branch_schema,
    old_schema,
    parse_run_schema,
    run_schema,
    sanitise,
)

RUN_ID = "1a2b3c4d-5e6f-4a1b-9c8d-7e6f5a4b3c2d"


def test_plain_branch_names_are_kept():
    assert branch_schema("staging", "main") == "staging__main"
    assert branch_schema("production", "exp_2") == "production__exp_2"


def test_other_names_get_a_hash_suffix_and_never_collide():
    names = ["feat-x", "feat_x", "Feat_x", "FEAT-X", "feat--x", "main", "Main"]
    schemas = [branch_schema("staging", n) for n in names]
    assert len(set(schemas)) == len(names)
    assert branch_schema("staging", "feat-x").startswith("staging__feat_x_")
    for schema in schemas:
        assert schema.islower() and set(schema) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")


def test_long_branch_names_fit_postgres_identifiers():
    long_a, long_b = "a" * 200 + "1", "a" * 200 + "2"
    a, b = branch_schema("staging", long_a), branch_schema("staging", long_b)
    assert len(a) <= MAX_IDENTIFIER and len(b) <= MAX_IDENTIFIER and a != b
    assert branch_schema("staging", long_a) == a  # stable


def test_branch_names_cannot_pose_as_run_or_old_schemas():
    run = run_schema("staging", RUN_ID)
    assert run == "staging__run_1a2b3c4d"
    assert old_schema("staging", RUN_ID) == "staging__old_1a2b3c4d"
    assert branch_schema("staging", "run_1a2b3c4d") != run
    assert branch_schema("staging", "old_1a2b3c4d") != old_schema("staging", RUN_ID)
    assert parse_run_schema(branch_schema("staging", "run_1a2b3c4d")) is None
    assert "__" not in sanitise("a__b")


def test_run_schema_round_trip():
    assert parse_run_schema(run_schema("staging", RUN_ID)) == ("staging", "1a2b3c4d")
    assert parse_run_schema("staging__main") is None


@pytest.mark.parametrize("family", ["", "Staging", "a__b", "1abc", "x" * 21, "a-b"])
def test_bad_families_are_refused(family):
    with pytest.raises(SchemaError, match="schema family"):
        branch_schema(family, "main")


def test_bad_run_ids_and_mismatched_swaps_are_refused():
    with pytest.raises(SchemaError, match="8 hex"):
        run_schema("staging", "not-a-run")
    with pytest.raises(SchemaError, match="not a branch schema of family 'staging'"):
        Swap("postgresql://unused", (run_schema("staging", RUN_ID), "production__main"))
    with pytest.raises(SchemaError, match="not a run schema"):
        Swap("postgresql://unused", ("staging__main", "staging__main"))

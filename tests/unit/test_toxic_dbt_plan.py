"""The toxic-comment dbt project as Dagster specs: table_clean after the staging asset, every
dbt test a blocking check of it; its vars validated."""

import dagster as dg
import pytest

from dfp.toxic.dbt_build import dbt_vars, postgres_env
from dfp_assets.platform.partitions import lakefs_branch_partitions
from dfp_assets.toxic.dbt_project import GROUP, STAGING_ASSET_KEY, asset_plan


def test_plan_has_table_clean_after_staging_with_blocking_tests():
    plan = asset_plan(lakefs_branch_partitions)

    (spec,) = plan.specs
    assert spec.key == dg.AssetKey("table_clean")
    assert {d.asset_key for d in spec.deps} == {STAGING_ASSET_KEY}
    assert spec.group_name == GROUP and spec.partitions_def == lakefs_branch_partitions
    names = {c.name for c in plan.check_specs}
    assert {
        "not_null_table_clean_labels",
        "accepted_values_table_clean_labels__False__0__1",
        "not_null_table_clean_input_ids",
        "not_null_table_clean_attention_mask",
        "valid_token_arrays_table_clean_input_ids__attention_mask",
    } <= names
    assert all(c.blocking and c.asset_key == spec.key for c in plan.check_specs)


def test_schema_vars_must_be_plain_identifiers():
    assert dbt_vars("staging__main", "production__main") == {
        "staging_schema": "staging__main",
        "staging_table": "text_comments",
        "production_schema": "production__main",
    }
    with pytest.raises(ValueError, match="production schema 'prod; drop'"):
        dbt_vars("staging__main", "prod; drop")


def test_postgres_env_from_a_url():
    assert postgres_env("postgresql+psycopg2://dfp:s3cret@db:5433/dagster") == {
        "DFP_TOXIC_PG_HOST": "db",
        "DFP_TOXIC_PG_PORT": "5433",
        "DFP_TOXIC_PG_USER": "dfp",
        "DFP_TOXIC_PG_PASSWORD": "s3cret",
        "DFP_TOXIC_PG_DBNAME": "dagster",
    }
    with pytest.raises(ValueError, match="not a Postgres URL"):
        postgres_env("sqlite:///x.db")

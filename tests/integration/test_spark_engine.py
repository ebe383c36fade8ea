"""The Spark engine (dbt-spark, method: session) builds the same Iceberg tables as DuckDB,
under write-audit-publish, on the run branch only."""

import math
import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dfp.lake import wap
from dfp.lake.iceberg import BranchTables
from dfp_resources.spark import SparkResource
from tests.integration.jobs import build_staging
from tests.integration.test_staging import DBT_ASSETS, MART, SMALL

pytestmark = pytest.mark.integration

MODELS = [tuple(key.path) for key in DBT_ASSETS]


def _profile(table: pa.Table) -> dict[str, tuple]:
    """Per column: type, null count and (numeric/boolean) sum: what two engines must share."""
    out = {}
    for name in table.column_names:
        column = table[name]
        total = None
        if pa.types.is_integer(column.type):
            total = pc.sum(column).as_py()
        elif pa.types.is_floating(column.type):
            # fsum is exactly rounded, so the engines' summation order cannot matter.
            total = math.fsum(column.drop_null().to_pylist())
        elif pa.types.is_boolean(column.type):
            total = pc.sum(column.cast(pa.int64())).as_py()
        out[name] = (str(column.type), column.null_count, total)
    return out


def assert_spark_built_what_duckdb_did(tables: BranchTables, duck_branch: str, branch: str):
    """Every dbt model on `branch` (Spark) has the rows and column profile of `duck_branch`'s
    (DuckDB), in its own snapshot, with files at `branch`'s logical paths."""
    repository = tables.client.repository
    for model in MODELS:
        duck = tables.load(duck_branch, *model)
        spark = tables.load(branch, *model)
        assert spark.current_snapshot().snapshot_id != duck.current_snapshot().snapshot_id
        duck_rows, spark_rows = duck.scan().to_arrow(), spark.scan().to_arrow()
        assert spark_rows.num_rows == duck_rows.num_rows > 0, model
        assert _profile(spark_rows) == _profile(duck_rows), model
        # Written for `branch`: logical paths name it, never the (deleted) run branch.
        files = [task.file.file_path for task in spark.scan().plan_files()]
        prefix = f"s3://{repository}/{branch}/iceberg/{model[0]}/{model[1]}/"
        assert files and all(f.startswith(prefix) for f in files), files[:2]
        assert spark.metadata_location.startswith(prefix)


def test_spark_and_duckdb_build_identical_tables(lakefs, instance, monkeypatch):
    tables = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])
    assert build_staging(instance, "main", {**SMALL, "synthetic_seed": 7}).success  # DuckDB
    main_snapshot = tables.load("main", *MART).current_snapshot().snapshot_id
    lakefs.create_branch("exp-spark", "main")

    monkeypatch.setenv("DFP_DBT_TARGET", "spark")
    result = build_staging(instance, "exp-spark", asset_selection=DBT_ASSETS)
    assert result.success
    engines = {
        m.metadata["staging_engine"].value
        for e in result.get_asset_materialization_events()
        for m in [e.event_specific_data.materialization]
    }
    assert engines == {"spark"}

    assert_spark_built_what_duckdb_did(tables, "main", "exp-spark")

    # main kept its DuckDB-built tables; the run branch and its catalog rows are gone.
    assert tables.load("main", *MART).current_snapshot().snapshot_id == main_snapshot
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]
    assert not [ns for ns in tables.catalog("main").list_namespaces() if wap.is_run_branch(ns[0])]


def test_spark_resource_reads_each_branch_from_its_own_objects(lakefs, instance):
    tables = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])
    # Built by DuckDB: what is under test is the Spark resource's reads (the test above
    # builds with Spark; test_spark_read reads pyiceberg-written tables too).
    assert build_staging(instance, "main", {**SMALL, "synthetic_seed": 8}).success
    expected = tables.load("main", *MART).scan().to_arrow()
    lakefs.create_branch("exp-read", "main")
    # Remove main's mart data files (as a vacuum would): exp-read must not need them.
    assert lakefs.delete_prefix("main", "iceberg/marts/mart_app_features/data/") > 0
    lakefs.commit("main", "drop mart data files")
    tables.sync("exp-read")  # the catalog index of the new branch

    spark = SparkResource(catalog_uri=tables.catalog_uri).session(lakefs, "exp-read")
    try:
        row = spark.sql(
            "select count(*) as n, sum(nr_syscalls) as s "
            f"from `{lakefs.repository}`.`exp-read`.marts.mart_app_features"
        ).collect()[0]
    finally:
        spark.stop()
    assert row["n"] == expected.num_rows
    assert row["s"] == pc.sum(expected["nr_syscalls"]).as_py()

"""Spark reads dfp's Iceberg tables on lakeFS branches and agrees with pyiceberg."""

import os

import pyarrow.compute as pc
import pytest

from dfp.lake.iceberg import BranchTables
from dfp.lake.spark import spark_session, table_name
from tests.integration.jobs import build_staging

pytestmark = pytest.mark.integration

MART = ("marts", "mart_app_features")


def test_spark_reads_branch_tables_like_pyiceberg(lakefs, instance):
    assert build_staging(instance, "main", {"source": "synthetic", "synthetic_scale": 0.02}).success
    tables = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])
    lakefs.create_branch("exp-spark", "main")
    for branch in ("main", "exp-spark"):
        expected = tables.load(branch, *MART).scan().to_arrow()  # also syncs the catalog index
        spark = spark_session(lakefs, tables.catalog_uri, io_ref=branch, log=lambda m: None)
        try:
            row = spark.sql(
                "select count(*) as n, sum(nr_syscalls) as s, sum(label) as malware "
                f"from {table_name(lakefs.repository, branch, *MART)}"
            ).collect()[0]
            files = spark.sql(
                f"select file_path from {table_name(lakefs.repository, branch, *MART)}.files"
            ).collect()
        finally:
            spark.stop()
        # Logical paths name the branch the version was written for (main), on both branches.
        assert files and all(
            f["file_path"].startswith(f"s3://{lakefs.repository}/main/") for f in files
        )
        assert row["n"] == expected.num_rows
        assert row["s"] == pc.sum(expected["nr_syscalls"]).as_py()
        assert row["malware"] == pc.sum(expected["label"]).as_py()

"""The scale-out path: dbt's Spark engine on a real standalone cluster (a master and two
workers on 127.0.0.1) builds the same Iceberg tables as DuckDB, and the work runs on the
cluster's executors (jars, branch FileIO and S3A settings shipped to them)."""

import json
import os
import time
import urllib.request

import pyarrow.compute as pc
import pytest

from dfp.lake.iceberg import BranchTables
from dfp.lake.spark import spark_jars
from dfp_resources.spark import SparkResource
from tests.integration.jobs import build_staging
from tests.integration.test_spark_engine import assert_spark_built_what_duckdb_did
from tests.integration.test_staging import DBT_ASSETS, MART, SMALL
from tests.stack_fixtures import SparkCluster

pytestmark = pytest.mark.integration


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _apps_since(cluster: SparkCluster, started_ms: int) -> list[dict]:
    status = _json(f"http://127.0.0.1:{cluster.webui_port}/json")
    apps = status["activeapps"] + status["completedapps"]
    return [a for a in apps if a["name"] == "dfp" and a["starttime"] >= started_ms]


def _executors_of(cluster: SparkCluster, app_id: str) -> list[tuple[str, dict]]:
    """(worker id, executor) for each executor the app had on a worker, running or finished."""
    status = _json(f"http://127.0.0.1:{cluster.webui_port}/json")
    found = []
    for worker in status["workers"]:
        state = _json(f"{worker['webuiaddress']}/json")
        for executor in state["executors"] + state["finishedexecutors"]:
            if executor["appid"] == app_id:
                found.append((worker["id"], executor))
    return found


def _until(predicate, timeout_s: float = 60.0):
    """The first truthy value of `predicate()` (polled), or its last value at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_staging_on_the_standalone_cluster_matches_duckdb(
    lakefs, instance, monkeypatch, spark_cluster
):
    tables = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])
    assert build_staging(instance, "main", {**SMALL, "synthetic_seed": 11}).success  # DuckDB
    lakefs.create_branch("exp-cluster", "main")

    started_ms = int(time.time() * 1000)
    monkeypatch.setenv("DFP_DBT_TARGET", "spark")
    monkeypatch.setenv("DFP_SPARK_MASTER", spark_cluster.master_url)
    result = build_staging(instance, "exp-cluster", asset_selection=DBT_ASSETS)
    assert result.success
    assert_spark_built_what_duckdb_did(tables, "main", "exp-cluster")

    # dbt's driver ran one application on the cluster, with an executor on each worker ...
    apps = _until(lambda: _apps_since(spark_cluster, started_ms))
    assert len(apps) == 1, apps
    app_id = apps[0]["id"]
    executors = _executors_of(spark_cluster, app_id)
    assert len({worker for worker, _ in executors}) == 2, executors
    # ... which fetched dfp's FileIO jar from the driver and ran the tasks.
    fileio_jar = spark_jars(log=lambda m: None)[-1].name
    assert fileio_jar.startswith("dfp-branch-fileio-")
    logs = [
        (spark_cluster.work_dir / app_id / str(executor["id"]) / "stderr").read_text()
        for _, executor in executors
    ]
    assert all(f"jars/{fileio_jar}" in log for log in logs), "executors lack the FileIO jar"
    assert sum(log.count("Finished task") for log in logs) > 0


def test_spark_resource_session_runs_on_the_cluster(lakefs, instance, spark_cluster):
    tables = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])
    assert build_staging(instance, "main", {**SMALL, "synthetic_seed": 12}).success  # DuckDB
    expected = tables.load("main", *MART).scan().to_arrow()

    resource = SparkResource(catalog_uri=tables.catalog_uri, master=spark_cluster.master_url)
    spark = resource.session(lakefs, "main")
    try:
        assert spark.sparkContext.master == spark_cluster.master_url
        tracker = spark.sparkContext._jsc.sc().statusTracker()
        # The driver and one executor per worker (registration is asynchronous).
        assert _until(lambda: len(tracker.getExecutorInfos()) >= 3)
        row = spark.sql(
            "select count(*) as n, sum(nr_syscalls) as s "
            f"from `{lakefs.repository}`.main.marts.mart_app_features"
        ).collect()[0]
    finally:
        spark.stop()
    assert row["n"] == expected.num_rows
    assert row["s"] == pc.sum(expected["nr_syscalls"]).as_py()

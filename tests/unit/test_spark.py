"""Spark session conf, the compiled branch FileIO, and the raw columns Spark's view exposes."""

import pyarrow as pa
import pytest

from dfp.kronodroid.parse import canonical_columns, empty_release_table
from dfp.kronodroid.schema import Release, source_columns, sql_name
from dfp.lake import spark
from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import LakeFSSettings, reload_settings
from dfp.stack.jars import JarError, MavenJar
from dfp_resources.environment import dbt_target


@pytest.fixture
def client():
    settings = LakeFSSettings("http://127.0.0.1:8000", "AKIAEXAMPLE", "secret", "kronodroid")
    with LakeFSClient(settings) as c:
        yield c


def test_session_conf_binds_the_catalog_to_one_ref(client):
    conf = spark.spark_conf(client, "sqlite:////tmp/c.db", ["/j/a.jar", "/j/b.jar"], "dfp-run-1")
    catalog = "spark.sql.catalog.kronodroid"
    assert conf[catalog] == "org.apache.iceberg.spark.SparkCatalog"
    assert conf[f"{catalog}.io-impl"] == "dfp.iceberg.BranchFileIO"
    assert conf[f"{catalog}.dfp.lakefs.io-ref"] == "dfp-run-1"
    assert conf[f"{catalog}.dfp.lakefs.repository"] == "kronodroid"
    assert conf[f"{catalog}.uri"] == "jdbc:sqlite:/tmp/c.db"
    assert conf["spark.sql.defaultCatalog"] == "kronodroid"
    assert conf["spark.jars"] == "/j/a.jar,/j/b.jar"
    # reboot (syscall) and REBOOT (permission) are both raw columns.
    assert conf["spark.sql.caseSensitive"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.access.key"] == "AKIAEXAMPLE"


def test_s3a_jars_match_pysparks_hadoop():
    hadoop = sorted(spark.pyspark_jar_dir().glob("hadoop-client-api-*.jar"))
    assert hadoop, "pyspark ships its Hadoop client"
    version = hadoop[0].name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    aws = [MavenJar.parse(c) for c in spark.S3A_JARS if "hadoop-aws" in c]
    assert [j.version for j in aws] == [version]
    assert not [c for c in spark.SPARK_JARS if c.startswith("software.amazon.awssdk:bundle:")]


def test_branch_fileio_compiles_and_is_cached(tmp_path, monkeypatch):
    runtime = spark.jar_dir() / MavenJar.parse(spark.ICEBERG_RUNTIME).file_name
    if not runtime.exists():
        pytest.skip("Iceberg runtime jar not fetched (dfp stack jars)")
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path))
    jar = spark.ensure_branch_fileio_jar(runtime, log=lambda m: None)
    import zipfile

    names = zipfile.ZipFile(jar).namelist()
    assert "dfp/iceberg/BranchFileIO.class" in names
    assert "dfp/iceberg/BranchFileIO$LogicalOutputFile.class" in names
    mtime = jar.stat().st_mtime_ns
    assert spark.ensure_branch_fileio_jar(runtime, log=lambda m: None) == jar
    assert jar.stat().st_mtime_ns == mtime


def test_branch_fileio_compile_error_is_reported(tmp_path, monkeypatch):
    runtime = spark.jar_dir() / MavenJar.parse(spark.ICEBERG_RUNTIME).file_name
    if not runtime.exists():
        pytest.skip("Iceberg runtime jar not fetched (dfp stack jars)")
    broken = tmp_path / "BranchFileIO.java"
    broken.write_text("package dfp.iceberg; public class BranchFileIO { int x = ; }")
    monkeypatch.setattr(spark, "BRANCH_FILEIO_SOURCE", broken)
    monkeypatch.setenv("DFP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(JarError, match="javac failed"):
        spark.ensure_branch_fileio_jar(runtime, log=lambda m: None)
    assert not list((tmp_path / "cache" / "jars").glob("*.jar"))


def test_source_columns_are_what_the_duckdb_plugin_sees():
    columns = {raw: (name, sql_type) for raw, name, sql_type in source_columns()}
    sql_types = {pa.string(): "string", pa.int64(): "bigint", pa.float64(): "double"}
    for release in Release:
        table = empty_release_table(release)
        assert set(canonical_columns(release)) <= columns.keys()
        for field in table.schema:
            assert columns[field.name] == (sql_name(field.name), sql_types[field.type])
    assert columns["REBOOT"][0] == "REBOOT_permission"
    assert columns["reboot"][0] == "reboot"


def test_dbt_target_setting(monkeypatch):
    monkeypatch.delenv("DFP_DBT_TARGET", raising=False)
    reload_settings()
    assert dbt_target() == "duckdb"
    monkeypatch.setenv("DFP_DBT_TARGET", "spark")
    reload_settings()
    assert dbt_target() == "spark"
    monkeypatch.setenv("DFP_DBT_TARGET", "snowflake")
    with pytest.raises(ValueError, match="DFP_DBT_TARGET='snowflake'"):
        reload_settings()
        dbt_target()


def test_session_conf_on_a_standalone_cluster(client):
    conf = spark.spark_conf(
        client, "sqlite:////tmp/c.db", ["/j/a.jar"], "main", "spark://127.0.0.1:7077"
    )
    assert conf["spark.master"] == "spark://127.0.0.1:7077"
    # Executors on this machine reach the driver on loopback; they fetch the jars from it.
    assert conf["spark.driver.host"] == conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert conf["spark.jars"] == "/j/a.jar"
    remote = spark.spark_conf(client, "sqlite:////tmp/c.db", [], "main", "spark://spark-0:7077")
    assert "spark.driver.host" not in remote


def test_spark_master_setting(monkeypatch):
    monkeypatch.delenv("DFP_SPARK_MASTER", raising=False)
    assert reload_settings().dfp_spark_master == "local[2]"
    monkeypatch.setenv("DFP_SPARK_MASTER", "spark://127.0.0.1:7077")
    assert reload_settings().dfp_spark_master == "spark://127.0.0.1:7077"
    monkeypatch.setenv("DFP_SPARK_MASTER", "yarn")
    with pytest.raises(ValueError, match="DFP_SPARK_MASTER='yarn'"):
        reload_settings()

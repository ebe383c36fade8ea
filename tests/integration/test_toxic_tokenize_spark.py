"""The Spark engine (mapInPandas) gives exactly the Arrow engine's rows."""

import pyarrow as pa
import pytest

from dfp.toxic.tokenize import tokenize_batch, tokenize_spark
from tests.unit.test_toxic_tokenize import crafted_table, sample_table


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    from dfp.lake.spark import spark_jars

    session = (
        SparkSession.builder.master("local[2]")
        # The JVM this session may launch serves every later Spark test in this process:
        # its class path (fixed at launch) must hold the Iceberg runtime and dfp's FileIO.
        .config("spark.jars", ",".join(str(p) for p in spark_jars(log=lambda msg: None)))
        .appName("dfp-tokenize-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()


def spark_rows(spark, table: pa.Table, **kwargs) -> list[dict]:
    df = spark.createDataFrame(table.to_pandas()).repartition(3)
    out = tokenize_spark(df, **kwargs)
    assert out.schema.simpleString() == (
        "struct<id:string,labels:tinyint,input_ids:array<int>,attention_mask:array<tinyint>>"
    )
    rows = [r.asDict() for r in out.collect()]
    return sorted(rows, key=lambda r: r["id"])


def arrow_rows(table: pa.Table, **kwargs) -> list[dict]:
    return sorted(tokenize_batch(table, **kwargs).to_pylist(), key=lambda r: r["id"])


@pytest.mark.parametrize("kwargs", [{}, {"max_length": 16, "padding": True}])
def test_crafted_texts_identical_on_spark(spark, kwargs):
    table = crafted_table()
    assert spark_rows(spark, table, **kwargs) == arrow_rows(table, **kwargs)


def test_sample_identical_on_spark(spark):
    table = sample_table()
    # The sample repeats some texts: ids (content hashes) are not unique, so compare whole rows.
    key = lambda r: (r["id"], r["input_ids"], r["labels"])  # noqa: E731
    ours = sorted(arrow_rows(table), key=key)
    theirs = sorted(spark_rows(spark, table), key=key)
    assert len(theirs) == table.num_rows
    assert theirs == ours

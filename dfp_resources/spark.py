"""Spark on the repository's Iceberg catalog, one lakeFS ref per session (dagster-pyspark)."""

from typing import Any

import dagster as dg

from dfp.lake.lakefs_client import LakeFSClient
from dfp.lake.spark import spark_conf, spark_jars, stop_session_on_other_ref
from dfp.settings import DEFAULT_SPARK_MASTER


class SparkResource(dg.ConfigurableResource):
    """Spark with Iceberg, S3A to lakeFS and dfp's branch FileIO, on `master`: `local[2]`
    (default) or a standalone cluster's `spark://host:port` (DFP_SPARK_MASTER).

    The session conf depends on the ref a run reads and writes (its write-audit-publish run
    branch), so sessions are made per ref rather than once per resource.
    """

    catalog_uri: str
    master: str = DEFAULT_SPARK_MASTER

    def conf(self, client: LakeFSClient, io_ref: str) -> dict[str, str]:
        """The session conf for `io_ref` (jars fetched/compiled once into the cache)."""
        jars = [str(p) for p in spark_jars(log=dg.get_dagster_logger().info)]
        return spark_conf(client, self.catalog_uri, jars, io_ref, self.master)

    def session(self, client: LakeFSClient, io_ref: str) -> Any:
        """A SparkSession reading and writing `io_ref` (dagster-pyspark builds it)."""
        from dagster_pyspark.resources import spark_session_from_config  # loads pyspark

        conf = self.conf(client, io_ref)
        stop_session_on_other_ref(client, io_ref, self.master)
        return spark_session_from_config(conf)

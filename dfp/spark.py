"""Spark (local) on dfp's Iceberg tables: JDBC catalog + Iceberg's S3FileIO to lakeFS.

Reads every branch's tables through the same SQL catalog pyiceberg uses (Iceberg's
JdbcCatalog shares its schema). Spark resolves file paths literally: a branch's table version
written for that branch reads that branch's files; versions inherited unchanged from a parent
read the parent's (identical) files. No Dagster imports.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dfp.jars import ensure_jars
from dfp.lakefs_client import LakeFSClient

# pyspark 4.1.x: the newest Spark line that Iceberg publishes a runtime for (4.2+/4.3 fail).
SPARK_JARS = (
    "org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.12.0",
    "org.apache.iceberg:iceberg-aws-bundle:1.12.0",
    "org.xerial:sqlite-jdbc:3.54.1.0",
    "org.postgresql:postgresql:42.7.4",
)


def jdbc_catalog_properties(sqlalchemy_uri: str) -> dict[str, str]:
    """pyiceberg's SQLAlchemy catalog URI → JdbcCatalog `uri` (+ credentials)."""
    parts = urlsplit(sqlalchemy_uri)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db: one slash separates the path.
        return {"uri": f"jdbc:sqlite:{parts.path[1:]}"}
    if scheme == "postgresql":
        props = {"uri": f"jdbc:postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"}
        if parts.username:
            props["jdbc.user"] = parts.username
        if parts.password:
            props["jdbc.password"] = parts.password
        return props
    raise ValueError(f"no JDBC mapping for catalog URI scheme {parts.scheme!r}")


def spark_conf(client: LakeFSClient, catalog_uri: str, jars: list[str]) -> dict[str, Any]:
    """Spark conf with catalog `<repository>` (JdbcCatalog filters rows by catalog name)."""
    settings = client.settings
    catalog = f"spark.sql.catalog.{client.repository}"
    conf: dict[str, Any] = {
        "spark.master": "local[2]",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        catalog: "org.apache.iceberg.spark.SparkCatalog",
        f"{catalog}.type": "jdbc",
        # Required by JdbcCatalog even to read; nothing is written through this session.
        f"{catalog}.warehouse": client.s3_uri("main", "iceberg"),
        f"{catalog}.jdbc.init-catalog-tables": "false",
        f"{catalog}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{catalog}.s3.endpoint": settings.endpoint,
        f"{catalog}.s3.path-style-access": "true",
        f"{catalog}.client.region": "us-east-1",
        f"{catalog}.s3.access-key-id": settings.access_key_id,
        f"{catalog}.s3.secret-access-key": settings.secret_access_key,
        # lakeFS rejects the SDK's aws-chunked uploads with trailing checksums.
        f"{catalog}.s3.chunked-encoding-enabled": "false",
    }
    for key, value in jdbc_catalog_properties(catalog_uri).items():
        conf[f"{catalog}.{key}"] = value
    return conf


def spark_session(client: LakeFSClient, catalog_uri: str, log=print):
    """A local SparkSession on the repository's Iceberg catalog (jars fetched and cached)."""
    from pyspark.sql import SparkSession

    jars = [str(p) for p in ensure_jars(list(SPARK_JARS), log=log)]
    builder = SparkSession.builder.appName("dfp")
    for key, value in spark_conf(client, catalog_uri, jars).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def table_name(repository: str, branch: str, schema: str, table: str) -> str:
    """Spark SQL name of a branch's table (identifiers quoted: branches contain '-')."""
    return ".".join(f"`{part}`" for part in (repository, branch, schema, table))

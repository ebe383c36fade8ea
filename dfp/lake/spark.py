"""Spark on dfp's Iceberg tables in lakeFS: JDBC catalog, S3A, branch-isolated IO.

- Master: `local[2]` in the driver, or a standalone cluster (`spark://host:port`, e.g. the one
  `dfp stack up` starts with DFP_STACK_SERVICES=...,spark); DFP_SPARK_MASTER chooses. On a
  cluster the executors are other JVMs: they get every jar through `spark.jars` (served by the
  driver), the S3A settings as `spark.hadoop.*` (part of the conf each executor receives), and
  reach the driver on 127.0.0.1 when the master listens there.

- Catalog `<repository>`: Iceberg's JdbcCatalog over the SQL catalog pyiceberg uses (same
  schema), namespaces `(<branch>, <schema>)`.
- IO: Hadoop S3A to lakeFS's S3 gateway (hadoop-aws + the AWS SDK v2 modules it needs, not
  the 640 MB SDK bundle). Raw parquet is read through S3A; Iceberg tables through
  `dfp.iceberg.BranchFileIO` (Java, `dfp/lake/java/`), which sends every `s3://<repo>/<ref>/…` to
  the session's `io_ref` and records logical paths, exactly like pyiceberg's `BranchFileIO`.
  One session reads (and writes) one lakeFS ref.

No Dagster imports.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from dfp.lake.iceberg import IO_REF_PROPERTY, REPOSITORY_PROPERTY
from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import DEFAULT_SPARK_MASTER, get_settings
from dfp.stack.jars import JarError, ensure_jars, jar_dir

ICEBERG_RUNTIME = "org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.12.0"
AWS_SDK_VERSION = "2.29.52"  # what hadoop-aws 3.4.2 was built with (pre-2.30: no aws-chunked)
# hadoop-aws for pyspark's bundled Hadoop 3.4.2, with the AWS SDK modules S3A uses.
S3A_JARS = (
    "org.apache.hadoop:hadoop-aws:3.4.2",
    "software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.2.1",
    "org.wildfly.openssl:wildfly-openssl:2.1.4.Final",
    "software.amazon.eventstream:eventstream:1.0.1",
    "org.reactivestreams:reactive-streams:1.0.4",
    *(
        f"software.amazon.awssdk:{module}:{AWS_SDK_VERSION}"
        for module in (
            "annotations apache-client arns auth aws-core aws-query-protocol aws-xml-protocol "
            "checksums checksums-spi crt-core endpoints-spi http-auth http-auth-aws "
            "http-auth-aws-eventstream http-auth-spi http-client-spi identity-spi json-utils "
            "metrics-spi netty-nio-client profiles protocol-core regions retries retries-spi s3 "
            "s3-transfer-manager sdk-core sts third-party-jackson-core utils"
        ).split()
    ),
)
# pyspark 4.1.x: the newest Spark line that Iceberg publishes a runtime for (4.2+/4.3 fail).
SPARK_JARS = (
    ICEBERG_RUNTIME,
    "org.xerial:sqlite-jdbc:3.54.1.0",
    "org.postgresql:postgresql:42.7.4",
    *S3A_JARS,
)
BRANCH_FILEIO_CLASS = "dfp.iceberg.BranchFileIO"
BRANCH_FILEIO_SOURCE = Path(__file__).parent / "java" / "BranchFileIO.java"


def pyspark_jar_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def ensure_branch_fileio_jar(iceberg_runtime: Path, log=print) -> Path:
    """Compile `dfp/lake/java/BranchFileIO.java` against the Iceberg runtime (cached by
    source hash)."""
    source = BRANCH_FILEIO_SOURCE.read_bytes()
    digest = hashlib.sha256(source + iceberg_runtime.name.encode()).hexdigest()[:12]
    target = jar_dir() / f"dfp-branch-fileio-{digest}.jar"
    if target.exists():
        return target
    javac = shutil.which("javac") or (
        str(Path(os.environ["JAVA_HOME"]) / "bin" / "javac") if "JAVA_HOME" in os.environ else None
    )
    if not javac or not Path(javac).exists():
        raise JarError("javac not found: install a JDK (Debian: openjdk-17-jdk-headless)")
    hadoop_api = sorted(pyspark_jar_dir().glob("hadoop-client-api-*.jar"))
    classpath = os.pathsep.join([str(iceberg_runtime), *map(str, hadoop_api)])
    log(f"compiling {BRANCH_FILEIO_SOURCE.name}")
    with tempfile.TemporaryDirectory(prefix="dfp-javac-") as out:
        result = subprocess.run(
            [
                javac,
                "--release",
                "17",
                "-nowarn",
                "-cp",
                classpath,
                "-d",
                out,
                str(BRANCH_FILEIO_SOURCE),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise JarError(f"javac failed for {BRANCH_FILEIO_SOURCE}:\n{result.stderr}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
            for cls in sorted(Path(out).rglob("*.class")):
                jar.write(cls, cls.relative_to(out).as_posix())
        partial.rename(target)
    return target


def spark_jars(log=print) -> list[Path]:
    """Every jar a dfp Spark session needs: Maven Central's (cached) + the compiled FileIO."""
    jars = ensure_jars(list(SPARK_JARS), log=log)
    return [*jars, ensure_branch_fileio_jar(jars[0], log=log)]


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


def driver_on_loopback(master: str) -> bool:
    """Whether the driver should listen on 127.0.0.1 only: in local mode, and when the
    cluster's master does (its executors then run on this machine)."""
    host = urlsplit(master).hostname if master.startswith("spark://") else None
    return master.startswith("local") or host in ("127.0.0.1", "localhost")


def spark_conf(
    client: LakeFSClient,
    catalog_uri: str,
    jars: list[str],
    io_ref: str,
    master: str = DEFAULT_SPARK_MASTER,
) -> dict[str, str]:
    """Spark conf for a session on `master` whose Iceberg catalog `<repository>` reads and
    writes on lakeFS ref `io_ref` (JdbcCatalog filters rows by catalog name = repository)."""
    settings = client.settings
    catalog = f"spark.sql.catalog.{client.repository}"
    conf: dict[str, str] = {
        "spark.master": master,
        "spark.app.name": "dfp",
        "spark.ui.enabled": "false",
        # The progress bar shares dbt's output stream and would garble its JSON log lines.
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
        # Local paths on the driver; a cluster's executors fetch them from the driver.
        "spark.jars": ",".join(jars),
        # Kronodroid has syscall `reboot` and permission `REBOOT`: keep them apart.
        "spark.sql.caseSensitive": "true",
        # No Hive metastore (dbt-spark asks for Hive support; Derby would litter the cwd).
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        # dbt-spark names relations schema.table: resolve them in the repository's catalog.
        "spark.sql.defaultCatalog": client.repository,
        catalog: "org.apache.iceberg.spark.SparkCatalog",
        f"{catalog}.type": "jdbc",
        f"{catalog}.warehouse": client.s3_uri(io_ref, "iceberg"),
        f"{catalog}.jdbc.schema-version": "V1",
        f"{catalog}.jdbc.init-catalog-tables": "false",
        f"{catalog}.io-impl": BRANCH_FILEIO_CLASS,
        f"{catalog}.{REPOSITORY_PROPERTY}": client.repository,
        f"{catalog}.{IO_REF_PROPERTY}": io_ref,
        # S3A serves both s3:// (Iceberg's logical paths) and s3a:// (raw parquet).
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": settings.endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(
            settings.endpoint.startswith("https")
        ).lower(),
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        ),
        "spark.hadoop.fs.s3a.access.key": settings.access_key_id,
        "spark.hadoop.fs.s3a.secret.key": settings.secret_access_key,
    }
    if driver_on_loopback(master):
        # Executors connect back to the driver (tasks, jars, results): on loopback, never
        # on whatever address the machine's hostname resolves to.
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    for key, value in jdbc_catalog_properties(catalog_uri).items():
        conf[f"{catalog}.{key}"] = value
    return conf


def stop_session_on_other_ref(client: LakeFSClient, io_ref: str, master: str) -> None:
    """Stop the active session if it reads another ref or runs on another master:
    `getOrCreate` would hand it back unchanged (a catalog's FileIO is fixed when the session
    first uses it, the master when its context starts)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None:
        return
    key = f"spark.sql.catalog.{client.repository}.{IO_REF_PROPERTY}"
    if active.conf.get(key, None) != io_ref or active.sparkContext.master != master:
        active.stop()


def spark_session(
    client: LakeFSClient,
    catalog_uri: str,
    io_ref: str = "main",
    log=print,
    master: str | None = None,
):
    """A SparkSession on the repository's Iceberg catalog, reading ref `io_ref`, on `master`
    (default: the DFP_SPARK_MASTER setting)."""
    from pyspark.sql import SparkSession

    master = master or get_settings().dfp_spark_master
    stop_session_on_other_ref(client, io_ref, master)
    jars = [str(p) for p in spark_jars(log=log)]
    builder = SparkSession.builder
    for key, value in spark_conf(client, catalog_uri, jars, io_ref, master).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def table_name(repository: str, branch: str, schema: str, table: str) -> str:
    """Spark SQL name of a branch's table (identifiers quoted: branches contain '-')."""
    return ".".join(f"`{part}`" for part in (repository, branch, schema, table))

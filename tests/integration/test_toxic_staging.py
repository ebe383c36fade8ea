"""comments_tokenized (with a stub comments_raw reader) on real lakeFS and Postgres: the
tokenized rows land in the branch's staging schema at publish, branches isolated."""

import dagster as dg
import pyarrow as pa
import pytest

from dfp.lake import pg_branches as pgb
from dfp.toxic.tokenize import tokenize_batch
from dfp_assets.platform.wap_executor import lakefs_wap_executor
from dfp_assets.toxic.staging import STAGING_FAMILY, STAGING_TABLE, build_comments_tokenized
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.postgres_staging import PostgresStagingResource
from dfp_resources.spark import SparkResource
from tests.unit.test_toxic_tokenize import crafted_table

#: What the stub reader returns (the raw helper's `read_comments` in the real graph).
STUB: dict[str, pa.Table] = {}


def stub_read_comments(client, ref: str) -> pa.Table:
    return STUB["table"]


def tokenized_job():
    lakefs = LakeFSResource.from_env_vars()
    postgres = PostgresStagingResource(url=dg.EnvVar("DFP_POSTGRES_URL"))
    asset = build_comments_tokenized(stub_read_comments)
    defs = dg.Definitions(
        assets=[asset],
        jobs=[dg.define_asset_job("tokenized_job", selection=[asset])],
        resources={
            "lakefs": lakefs,
            "postgres_staging": postgres,
            "spark": SparkResource(catalog_uri=dg.EnvVar("DFP_ICEBERG_CATALOG_URI")),
        },
        executor=lakefs_wap_executor(
            lakefs, default_mode="in_process", participants={"postgres": postgres}
        ),
    )
    return defs.resolve_job_def("tokenized_job")


@pytest.fixture
def conn(lakefs, postgres_url, monkeypatch):
    monkeypatch.setenv("DFP_POSTGRES_URL", postgres_url)
    c = pgb.connect(postgres_url)
    yield c
    with c.cursor() as cur:
        cur.execute(
            "SELECT nspname FROM pg_namespace "
            "WHERE nspname LIKE 'staging\\_\\_%' OR nspname LIKE 'production\\_\\_%'"
        )
        for (name,) in cur.fetchall():
            cur.execute(f'DROP SCHEMA "{name}" CASCADE')
    c.commit()
    c.close()


def run(instance, branch: str, table: pa.Table) -> bool:
    STUB["table"] = table
    if branch not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", [branch])
    with dg.execute_job(
        dg.reconstructable(tokenized_job),
        instance=instance,
        tags={"dagster/partition": branch},
        raise_on_error=False,
    ) as result:
        return result.success


def staged(conn, branch: str) -> list[dict]:
    schema = pgb.branch_schema(STAGING_FAMILY, branch)
    with conn.cursor() as cur:
        cur.execute(
            f'SELECT id, labels, input_ids, attention_mask FROM "{schema}".{STAGING_TABLE} '
            "ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.commit()
    return rows


def test_tokenized_comments_reach_each_branch_staging(lakefs, conn, instance):
    table = crafted_table()
    expected = sorted(tokenize_batch(table).to_pylist(), key=lambda r: r["id"])
    assert run(instance, "main", table)
    assert staged(conn, "main") == expected

    lakefs.create_branch("feat-x", "main")
    assert run(instance, "feat-x", table.slice(0, 3))
    assert len(staged(conn, "feat-x")) == 3
    assert staged(conn, "main") == expected  # main untouched

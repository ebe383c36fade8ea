"""`comments_tokenized`: comments_raw → WordPiece ids → Postgres staging of the branch.

Reads the run branch's `comments_raw` through a reader passed in (`read_comments(client, ref)`,
the raw asset's Delta reader; tests pass a stub), tokenizes with `dfp.toxic.tokenize` (Arrow by
default, Spark with `engine: spark`, same function), and writes `text_comments(id, labels,
input_ids, attention_mask)` into the run's own `staging` schema, which write-audit-publish swaps
in as the branch's (`staging__<branch>`) with the lakeFS merge. `build_comments_tokenized`
makes the asset for a reader; `comments_tokenized` is the one the Definitions register.

`comments_tokenized_checks` audits what the run wrote: the Great Expectations suite
(dfp/toxic/expectations.py) on the table read back from the run's staging schema, one blocking
check per expectation, so a failing one keeps the run (raw, staging, production) unpublished.
"""

from collections.abc import Callable
from typing import Literal

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from dfp.lake import pg_branches
from dfp.lake.lakefs_client import LakeFSClient
from dfp.toxic.expectations import validate_staging_table
from dfp.toxic.load import read_comments
from dfp.toxic.tokenize import DEFAULT_MAX_LENGTH, tokenize_batch, tokenize_spark
from dfp.warm_imports import WARM_IMPORTS_TAG, run_warm
from dfp_assets.platform.partitions import branch_asset
from dfp_assets.toxic.quality import staging_check_results, staging_check_specs
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.postgres_staging import PostgresStagingResource
from dfp_resources.spark import SparkResource

STAGING_FAMILY = "staging"
STAGING_TABLE = "text_comments"
RAW_ASSET = dg.AssetKey("comments_raw")
TOKENIZED_ASSET = dg.AssetKey("comments_tokenized")

#: (lakeFS client, ref) → a table with at least id, comment_text, labels.
ReadComments = Callable[[LakeFSClient, str], pa.Table]


class TokenizeConfig(dg.Config):
    max_length: int = DEFAULT_MAX_LENGTH
    padding: bool = False  # pad to max_length (mask 0 on the pad)
    engine: Literal["arrow", "spark"] = "arrow"


def _tokenize_on_spark(
    spark: SparkResource, client: LakeFSClient, ref: str, table: pa.Table, config: TokenizeConfig
) -> pa.Table:
    session = spark.session(client, ref)
    frame = session.createDataFrame(table.select(["id", "comment_text", "labels"]).to_pandas())
    return tokenize_spark(frame, config.max_length, config.padding).toArrow()


def build_comments_tokenized(read_comments: ReadComments) -> dg.AssetsDefinition:
    @branch_asset(
        name="comments_tokenized",
        group="toxic_staging",
        deps=[RAW_ASSET],
        kinds={"postgres", "pyarrow"},
        description="comments_raw tokenized with the bert-base-uncased WordPiece tokenizer, "
        f"as {STAGING_FAMILY}__<branch>.{STAGING_TABLE} in Postgres (swapped in at publish).",
    )
    def comments_tokenized(
        context: dg.AssetExecutionContext,
        config: TokenizeConfig,
        lakefs: LakeFSResource,
        postgres_staging: PostgresStagingResource,
        spark: SparkResource,
    ) -> dg.MaterializeResult:
        with lakefs.client() as client:
            ref = lakefs.run_branch(context)
            comments = read_comments(client, ref)
            if config.engine == "spark":
                tokenized = _tokenize_on_spark(spark, client, ref, comments, config)
            else:
                tokenized = tokenize_batch(comments, config.max_length, config.padding)
        schema = postgres_staging.run_schema(context, STAGING_FAMILY)
        conn = postgres_staging.connect()
        try:
            rows = pg_branches.copy_table(conn, schema, STAGING_TABLE, tokenized)
        finally:
            conn.close()
        target = postgres_staging.branch_schema(STAGING_FAMILY, context.partition_key)
        lengths = pc.list_value_length(tokenized["input_ids"])
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "postgres_table": f"{schema}.{STAGING_TABLE}",
                "published_as": f"{target}.{STAGING_TABLE}",
                "engine": config.engine,
                "max_tokens": int(pc.max(lengths).as_py() or 0),
            }
        )

    return comments_tokenized


comments_tokenized = build_comments_tokenized(read_comments)


#: What the staging checks' warm worker imports (dfp.warm_imports): Great Expectations.
GE_WARM_IMPORTS = "dfp.toxic.expectations:import_great_expectations"


@dg.multi_asset_check(
    specs=staging_check_specs(TOKENIZED_ASSET),
    name="comments_tokenized_checks",
    # Great Expectations takes 5-10 s to import: done while the run's first steps run.
    op_tags={WARM_IMPORTS_TAG: GE_WARM_IMPORTS},
    description="The Great Expectations staging suite on the text_comments this run wrote "
    "(the branch's when the run wrote none), read back from Postgres.",
)
def comments_tokenized_checks(
    context: dg.AssetCheckExecutionContext, postgres_staging: PostgresStagingResource
):
    schema = postgres_staging.read_schema(context, STAGING_FAMILY)
    # In the run's warm worker, which imported Great Expectations while earlier steps ran.
    suite = run_warm(
        GE_WARM_IMPORTS, validate_staging_table, postgres_staging.dsn(), schema, STAGING_TABLE
    )
    failed = ", ".join(r.name for r in suite.failures()) or "none"
    context.log.info(
        f"Great Expectations on {schema}.{STAGING_TABLE}: {suite.row_count:,} rows, "
        f"{len(suite.results)} expectations, failed: {failed}"
    )
    yield from staging_check_results(
        TOKENIZED_ASSET, suite, {"postgres_table": f"{schema}.{STAGING_TABLE}"}
    )

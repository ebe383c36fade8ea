"""`build_comments` as the Definitions register it, on real lakeFS and Postgres: the comments
of the run's own raw Delta table are tokenized into the branch's staging schema, published with
the lakeFS merge; a branch with other rows leaves main's staging as it was."""

import dagster as dg
import pytest

from dfp.lake import pg_branches as pgb
from dfp.settings import load_settings
from dfp.toxic.load import read_comments
from dfp.toxic.tokenize import tokenize_batch
from dfp_assets.definitions import comments_job
from dfp_assets.toxic.staging import STAGING_FAMILY, STAGING_TABLE
from dfp_resources.environment import resource_run_config
from tests.integration.test_toxic_staging import conn  # noqa: F401, F811  (fixture)

pytestmark = pytest.mark.integration


def build(instance, branch: str, raw_config: dict) -> bool:
    if branch not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", [branch])
    run_config = {
        "ops": {"comments_raw": {"config": raw_config}},
        "resources": resource_run_config(load_settings()),
        "execution": {"config": {"in_process": {}}},
    }
    with dg.execute_job(
        dg.reconstructable(comments_job),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": branch},
        raise_on_error=False,
    ) as result:
        return result.success


def staged(db, branch: str) -> dict[str, tuple[int, list[int], list[int]]]:
    schema = pgb.branch_schema(STAGING_FAMILY, branch)
    with db.cursor() as cur:
        cur.execute(f'SELECT id, labels, input_ids, attention_mask FROM "{schema}".{STAGING_TABLE}')
        rows = {str(r[0]): (int(r[1]), list(r[2]), list(r[3])) for r in cur.fetchall()}
    db.commit()
    return rows


def expected(lakefs, ref: str) -> dict[str, tuple[int, list[int], list[int]]]:
    """Tokenized independently of the asset: the published raw table through the tokenizer."""
    tokens = tokenize_batch(read_comments(lakefs, ref))
    return {r["id"]: (r["labels"], r["input_ids"], r["attention_mask"]) for r in tokens.to_pylist()}


def test_build_comments_tokenizes_the_branch_raw_table_into_its_staging(lakefs, conn, instance):  # noqa: F811
    assert build(instance, "main", {"source": "synthetic", "synthetic_scale": 0.01})
    on_main = staged(conn, "main")
    assert len(on_main) == 1600
    assert on_main == expected(lakefs, "main")
    # The publish merge records the staging schema it swapped in.
    assert pgb.branch_schema(STAGING_FAMILY, "main") in str(lakefs.get_commit("main").metadata)

    lakefs.create_branch("exp-tok", "main")
    assert build(
        instance, "exp-tok", {"source": "synthetic", "synthetic_scale": 0.01, "synthetic_seed": 3}
    )
    on_branch = staged(conn, "exp-tok")
    assert len(on_branch) == 1600 and on_branch == expected(lakefs, "exp-tok")
    assert staged(conn, "main") == on_main  # main's staging untouched

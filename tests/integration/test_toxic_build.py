"""`build_comments` as the Definitions register it, on real lakeFS and Postgres: the comments
of the run's own raw Delta table are tokenized into the branch's staging schema, audited by the
Great Expectations suite, and built by dbt into table_clean in its production schema; both
schemas publish with the lakeFS merge. A branch with other rows leaves main as it was; a run
whose staging fails an expectation publishes nothing."""

import uuid
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
import pytest

from dfp.lake import pg_branches as pgb
from dfp.settings import load_settings
from dfp.toxic.load import delta_storage_options, read_comments, read_table, table_uri
from dfp.toxic.sources import RAW_SCHEMA
from dfp.toxic.tokenize import tokenize_batch
from dfp_assets.definitions import comments_job
from dfp_assets.toxic.production import PRODUCTION_FAMILY
from dfp_assets.toxic.staging import STAGING_FAMILY, STAGING_TABLE
from dfp_resources.environment import resource_run_config
from tests.integration.test_toxic_staging import conn  # noqa: F401, F811  (fixture)

pytestmark = pytest.mark.integration

TOKENIZED = dg.AssetKey("comments_tokenized")
TABLE_CLEAN = dg.AssetKey("table_clean")


def build(
    instance,
    branch: str,
    raw_config: dict | None = None,
    assets: list[dg.AssetKey] | None = None,
) -> dg.JobExecutionResult:
    if branch not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", [branch])
    run_config = {
        "resources": resource_run_config(load_settings()),
        "execution": {"config": {"in_process": {}}},
    }
    if raw_config is not None:
        run_config["ops"] = {"comments_raw": {"config": raw_config}}
    with dg.execute_job(
        dg.reconstructable(comments_job),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": branch},
        raise_on_error=False,
        asset_selection=assets,
    ) as result:
        return result


def staged(db, branch: str) -> dict[str, tuple[int, list[int], list[int]]]:
    schema = pgb.branch_schema(STAGING_FAMILY, branch)
    with db.cursor() as cur:
        cur.execute(f'SELECT id, labels, input_ids, attention_mask FROM "{schema}".{STAGING_TABLE}')
        rows = {str(r[0]): (int(r[1]), list(r[2]), list(r[3])) for r in cur.fetchall()}
    db.commit()
    return rows


def clean(db, branch: str) -> dict[str, tuple[int, list[int], list[int]]]:
    """table_clean of the branch (jsonb arrays decoded by psycopg2)."""
    schema = pgb.branch_schema(PRODUCTION_FAMILY, branch)
    with db.cursor() as cur:
        cur.execute(
            f"SELECT id, labels, input_ids, attention_mask, jsonb_typeof(input_ids), "
            f'dbt_loaded_at FROM "{schema}".table_clean'
        )
        rows = cur.fetchall()
    db.commit()
    assert all(r[4] == "array" and r[5] is not None for r in rows)
    return {str(r[0]): (int(r[1]), list(r[2]), list(r[3])) for r in rows}


def run_schemas(db) -> list[str]:
    """This domain's run schemas left behind (other tests share the session's Postgres and
    leave run schemas of their own families on purpose)."""
    with db.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace")
        names = [r[0] for r in cur.fetchall()]
    db.commit()
    families = {STAGING_FAMILY, PRODUCTION_FAMILY}
    return [n for n in names if (pgb.parse_run_schema(n) or ("",))[0] in families]


def well_formed(row: tuple[int, list[int], list[int]]) -> bool:
    """table_clean's rule, written independently of its SQL."""
    labels, ids, mask = row
    return (
        labels in (0, 1)
        and len(ids) > 0
        and len(ids) == len(mask)
        and all(isinstance(v, int) for v in ids)
        and set(mask) <= {0, 1}
    )


def expected(lakefs, ref: str) -> dict[str, tuple[int, list[int], list[int]]]:
    """Tokenized independently of the asset: the published raw table through the tokenizer."""
    tokens = tokenize_batch(read_comments(lakefs, ref))
    return {r["id"]: (r["labels"], r["input_ids"], r["attention_mask"]) for r in tokens.to_pylist()}


def check_results(instance, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    out = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        out[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] = evaluation
    return out


def materialized(instance, run_id: str) -> set[dg.AssetKey]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {r.event_log_entry.dagster_event.asset_key for r in records}


def test_build_comments_tokenizes_the_branch_raw_table_into_its_staging(lakefs, conn, instance):  # noqa: F811
    assert build(instance, "main", {"source": "synthetic", "synthetic_scale": 0.01}).success
    on_main = staged(conn, "main")
    assert len(on_main) == 1600
    assert on_main == expected(lakefs, "main")
    # The publish merge records the staging and production schemas it swapped in.
    published = str(lakefs.get_commit("main").metadata)
    assert pgb.branch_schema(STAGING_FAMILY, "main") in published
    assert pgb.branch_schema(PRODUCTION_FAMILY, "main") in published
    main_clean = clean(conn, "main")
    assert main_clean == {k: v for k, v in on_main.items() if well_formed(v)}

    lakefs.create_branch("exp-tok", "main")
    assert build(
        instance, "exp-tok", {"source": "synthetic", "synthetic_scale": 0.01, "synthetic_seed": 3}
    ).success
    on_branch = staged(conn, "exp-tok")
    assert len(on_branch) == 1600 and on_branch == expected(lakefs, "exp-tok")
    assert clean(conn, "exp-tok") == {k: v for k, v in on_branch.items() if well_formed(v)}
    assert staged(conn, "main") == on_main  # main's staging and production untouched
    assert clean(conn, "main") == main_clean


def test_shared_sample_through_build_comments_on_main(lakefs, conn, instance):  # noqa: F811
    from dfp_assets.toxic.raw import SHARED_SAMPLE

    if not SHARED_SAMPLE.is_dir():
        pytest.skip("../shared/data/toxic_comments is not present")

    result = build(instance, "main", {"source": "shared"})

    assert result.success
    tokenized = staged(conn, "main")
    raw_rows = read_table(lakefs, "main").num_rows
    assert len(tokenized) == raw_rows > 0
    assert tokenized == expected(lakefs, "main")
    malformed = [k for k, v in tokenized.items() if not well_formed(v)]
    table_clean = clean(conn, "main")
    assert len(table_clean) == len(tokenized) - len(malformed)
    assert table_clean == {k: v for k, v in tokenized.items() if k not in malformed}
    # Every Great Expectations and dbt check ran in the run, passed, and says what it saw.
    checks = check_results(instance, result.run_id)
    ge = {k: v for k, v in checks.items() if k.startswith("comments_tokenized:ge_")}
    dbt = {k: v for k, v in checks.items() if k.startswith("table_clean:")}
    assert len(ge) == 9 and len(dbt) >= 7
    assert all(c.passed for c in checks.values()), [k for k, c in checks.items() if not c.passed]
    for evaluation in ge.values():
        assert evaluation.metadata["unexpected_count"].value == 0
        assert evaluation.metadata["rows"].value == len(tokenized)
        assert evaluation.metadata["success"].value is True
    assert materialized(instance, result.run_id) == {
        dg.AssetKey("comments_raw"),
        TOKENIZED,
        TABLE_CLEAN,
    }
    assert run_schemas(conn) == []


def _commit_by_hand_a_raw_row_labelled_2(lakefs) -> str:
    """What a plain lakeFS client may do: append a row to main's raw Delta table outside dfp
    (on a branch, committed and merged), so raw's own checks never audit it."""
    from deltalake import write_deltalake

    bad_id = str(uuid.uuid4())
    lakefs.create_branch("by-hand", "main")
    row = pa.table(
        {
            "id": [bad_id],
            "comment_text": ["a comment whose label is not a label"],
            "labels": [2],
            "source": ["by-hand"],
            "ingested_at": [datetime.now(UTC)],
        }
    ).cast(RAW_SCHEMA)
    write_deltalake(
        table_uri(lakefs.repository, "by-hand"),
        row,
        mode="append",
        storage_options=delta_storage_options(lakefs),
    )
    lakefs.commit("by-hand", "a raw row with label 2", {})
    lakefs.merge("by-hand", "main", "by hand", {})
    return bad_id


def test_a_failing_expectation_publishes_nothing(lakefs, conn, instance):  # noqa: F811
    assert build(instance, "main", {"source": "synthetic", "synthetic_scale": 0.01}).success
    before_staging, before_clean = staged(conn, "main"), clean(conn, "main")
    bad_id = _commit_by_hand_a_raw_row_labelled_2(lakefs)
    head = lakefs.head("main")

    result = build(instance, "main", assets=[TOKENIZED, TABLE_CLEAN])

    assert not result.success
    checks = check_results(instance, result.run_id)
    failed = {k: c for k, c in checks.items() if not c.passed}
    assert set(failed) == {"comments_tokenized:ge_labels_in_0_1"}
    evaluation = failed["comments_tokenized:ge_labels_in_0_1"]
    assert evaluation.metadata["unexpected_count"].value == 1
    assert evaluation.metadata["unexpected_ids"].value == [bad_id]
    assert evaluation.metadata["unexpected_values"].value == [2]
    # The blocking check stopped dbt; nothing changed on main: lakeFS, staging, production.
    assert TABLE_CLEAN not in materialized(instance, result.run_id)
    assert lakefs.head("main") == head
    assert staged(conn, "main") == before_staging
    assert clean(conn, "main") == before_clean
    assert run_schemas(conn) == []


def test_a_failing_dbt_test_publishes_nothing(lakefs, conn, instance):  # noqa: F811
    """main's staging edited by hand in Postgres (a second row under an existing id): a run of
    table_clean alone reads it, dbt's unique test fails, and main's production stays."""
    assert build(instance, "main", {"source": "synthetic", "synthetic_scale": 0.01}).success
    before_clean = clean(conn, "main")
    schema = pgb.branch_schema(STAGING_FAMILY, "main")
    with conn.cursor() as cur:
        cur.execute(
            f'INSERT INTO "{schema}".{STAGING_TABLE} '
            f'SELECT id, labels, input_ids, attention_mask FROM "{schema}".{STAGING_TABLE} '
            "ORDER BY id LIMIT 1 RETURNING id"
        )
        (duplicated,) = cur.fetchone()
    conn.commit()
    head = lakefs.head("main")

    result = build(instance, "main", assets=[TABLE_CLEAN])

    assert not result.success
    checks = check_results(instance, result.run_id)
    failed = {k: c for k, c in checks.items() if not c.passed}
    assert set(failed) == {"table_clean:unique_table_clean_id"}, failed
    assert all(k.startswith("table_clean:") for k in checks)
    assert lakefs.head("main") == head
    assert clean(conn, "main") == before_clean
    assert duplicated in before_clean
    assert run_schemas(conn) == []

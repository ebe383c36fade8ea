"""Postgres schemas per branch on a real Postgres: atomic swap, failed runs, isolation."""

import time
import uuid

import psycopg2
import pytest

from dfp.lake import pg_branches as pgb

ROWS_AT_SCALE = 160_000


def new_run_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def family() -> str:
    """A family of its own per test (the session's Postgres is shared)."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def conn(postgres_url):
    c = pgb.connect(postgres_url)
    yield c
    c.close()


def write_run(conn, family: str, value: str, table: str = "t") -> str:
    """A run's schema holding `table(v)` = [value]."""
    schema = pgb.run_schema(family, new_run_id())
    pgb.create_run_schema(conn, schema)
    with conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "{schema}"."{table}" (v text)')
        cur.execute(f'INSERT INTO "{schema}"."{table}" VALUES (%s)', (value,))
    conn.commit()
    return schema


def read(conn, schema: str, table: str = "t") -> list[str]:
    with conn.cursor() as cur:
        cur.execute(f'SELECT v FROM "{schema}"."{table}" ORDER BY v')
        rows = [r[0] for r in cur.fetchall()]
    conn.commit()
    return rows


def snapshot(conn, schema: str) -> dict:
    """Everything that must not change: the schema's oid, each relation's oid and rows."""
    with conn.cursor() as cur:
        cur.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,))
        (oid,) = cur.fetchone()
        cur.execute(
            "SELECT relname, c.oid FROM pg_class c WHERE relnamespace = %s AND relkind = 'r' "
            "ORDER BY relname",
            (oid,),
        )
        tables = cur.fetchall()
    conn.commit()
    return {"oid": oid, "tables": {name: (toid, read(conn, schema, name)) for name, toid in tables}}


def reader(postgres_url):
    c = pgb.connect(postgres_url)
    c.autocommit = True
    with c.cursor() as cur:
        # A reader that would wait on a lock fails the test instead of hanging it.
        cur.execute("SET statement_timeout = '5s'")
    return c


def test_first_publish_creates_the_branch_schema(conn, family):
    branch = pgb.branch_schema(family, "main")
    run = write_run(conn, family, "v1")
    result = pgb.publish(conn, run, branch)
    assert not result.replaced
    assert read(conn, branch) == ["v1"]
    assert not pgb.schema_exists(conn, run)


def test_swap_is_atomic_for_a_concurrent_reader(postgres_url, conn, family):
    branch = pgb.branch_schema(family, "main")
    pgb.publish(conn, write_run(conn, family, "old"), branch)
    run = write_run(conn, family, "new")
    other = reader(postgres_url)
    swap = pgb.Swap(postgres_url, (run, branch))
    swap.prepare()
    try:
        # Prepared, not committed: the reader sees the old table, without waiting.
        assert read(other, branch) == ["old"]
        with pytest.raises(psycopg2.errors.UndefinedTable):
            read(other, pgb.old_schema(family, run.rsplit("_", 1)[1]))  # not visible yet
        assert read(other, run) == ["new"]  # the run schema is still where it was
    except BaseException:
        swap.rollback()
        raise
    swap.commit()
    assert read(other, branch) == ["new"]
    assert not pgb.schema_exists(other, run)
    assert [s for s in schemas_of(other, family) if "__old_" in s] == []
    other.close()


def schemas_of(conn, family: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{family}__%",))
        return sorted(r[0] for r in cur.fetchall())


def test_failed_run_leaves_the_branch_schema_exactly_as_it_was(postgres_url, conn, family):
    branch = pgb.branch_schema(family, "main")
    pgb.publish(conn, write_run(conn, family, "good"), branch)
    before = snapshot(conn, branch)

    # 1. Checks failed: the run schema is discarded, never swapped.
    bad = write_run(conn, family, "bad")
    assert pgb.discard(conn, bad)
    assert snapshot(conn, branch) == before

    # 2. Swap prepared, then the lakeFS merge failed: rolled back.
    bad = write_run(conn, family, "bad")
    swap = pgb.Swap(postgres_url, (bad, branch))
    swap.prepare()
    swap.rollback()
    assert snapshot(conn, branch) == before
    assert read(conn, bad) == ["bad"]  # the run schema is intact, for discard
    assert pgb.discard(conn, bad)

    # 3. Publishing a run schema that was never written fails before touching anything.
    with pytest.raises(pgb.SchemaError, match="does not exist"):
        pgb.publish(postgres_url, pgb.run_schema(family, new_run_id()), branch)
    assert snapshot(conn, branch) == before
    assert schemas_of(conn, family) == [branch]


def test_two_branches_are_isolated(conn, family):
    main, feat = pgb.branch_schema(family, "main"), pgb.branch_schema(family, "feat-x")
    pgb.publish(conn, write_run(conn, family, "m1"), main)
    pgb.publish(conn, write_run(conn, family, "f1"), feat)
    before = snapshot(conn, main)
    pgb.publish(conn, write_run(conn, family, "f2"), feat)
    assert snapshot(conn, main) == before
    assert read(conn, main) == ["m1"] and read(conn, feat) == ["f2"]


def test_tables_the_run_did_not_write_are_carried_over(conn, family):
    branch = pgb.branch_schema(family, "main")
    pgb.publish(conn, write_run(conn, family, "s1", table="streaming"), branch)
    kept = snapshot(conn, branch)["tables"]["streaming"]
    result = pgb.publish(conn, write_run(conn, family, "b1", table="batch"), branch)
    assert result.carried == ["streaming"]
    now = snapshot(conn, branch)["tables"]
    assert now["streaming"] == kept and now["batch"][1] == ["b1"]


def test_concurrent_publishes_of_one_branch_queue(postgres_url, conn, family):
    branch = pgb.branch_schema(family, "main")
    pgb.publish(conn, write_run(conn, family, "v0"), branch)
    first = pgb.Swap(postgres_url, (write_run(conn, family, "v1"), branch))
    second_run = write_run(conn, family, "v2")
    first.prepare()
    import threading

    done: list = []
    thread = threading.Thread(
        target=lambda: done.append(pgb.publish(postgres_url, second_run, branch))
    )
    thread.start()
    thread.join(timeout=1.0)  # it must wait for the first publish's advisory lock
    assert thread.is_alive()
    first.commit()
    thread.join(timeout=30)
    assert not thread.is_alive() and done[0].replaced
    assert read(conn, branch) == ["v2"]


def test_orphaned_run_schemas(conn, family):
    live, dead = new_run_id(), new_run_id()
    for run_id in (live, dead):
        pgb.create_run_schema(conn, pgb.run_schema(family, run_id))
    orphans = [s for s in pgb.orphaned_run_schemas(conn, [live]) if s.startswith(family)]
    assert orphans == [pgb.run_schema(family, dead)]


def test_swap_time_at_160k_rows(postgres_url, conn, family):
    """Figure: publish time of a staging schema of 160k tokenized rows (~100 ids each)."""
    branch = pgb.branch_schema(family, "main")
    timings = []
    for _ in range(2):  # the second swap replaces (and drops) a 160k-row schema
        run = pgb.run_schema(family, new_run_id())
        pgb.create_run_schema(conn, run)
        with conn.cursor() as cur:
            cur.execute(
                f'CREATE TABLE "{run}".text_comments AS SELECT md5(i::text) AS id, '
                "(i %% 2)::smallint AS labels, "
                "array_fill(2000 + i %% 1000, ARRAY[100]) AS input_ids, "
                "array_fill(1::smallint, ARRAY[100]) AS attention_mask "
                "FROM generate_series(1, %s) AS i",
                (ROWS_AT_SCALE,),
            )
        conn.commit()
        start = time.perf_counter()
        result = pgb.publish(postgres_url, run, branch)
        timings.append((result.replaced, time.perf_counter() - start))
    with conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{branch}".text_comments')
        assert cur.fetchone()[0] == ROWS_AT_SCALE
    conn.commit()
    for replaced, seconds in timings:
        print(
            f"staging swap of {ROWS_AT_SCALE} rows (replacing: {replaced}): {seconds * 1000:.0f} ms"
        )
    assert all(seconds < 10 for _, seconds in timings)


def test_several_families_swap_in_one_transaction(postgres_url, conn, family):
    other_family = f"{family}p"
    staging, production = (
        pgb.branch_schema(family, "main"),
        pgb.branch_schema(other_family, "main"),
    )
    pgb.publish(conn, write_run(conn, family, "s1"), staging)
    before = snapshot(conn, staging)
    # The second pair's run schema is missing: nothing of the first pair may be published.
    with pytest.raises(pgb.SchemaError, match="does not exist"):
        swap = pgb.Swap(
            postgres_url,
            (write_run(conn, family, "s2"), staging),
            (pgb.run_schema(other_family, new_run_id()), production),
        )
        swap.prepare()
    assert snapshot(conn, staging) == before
    swap = pgb.Swap(
        postgres_url,
        (write_run(conn, family, "s3"), staging),
        (write_run(conn, other_family, "p3"), production),
    )
    swap.prepare()
    swap.commit()
    assert read(conn, staging) == ["s3"] and read(conn, production) == ["p3"]


def test_copy_table_writes_tokenized_rows(conn, family):
    import pyarrow as pa

    from dfp.toxic.tokenize import tokenize_batch
    from tests.unit.test_toxic_tokenize import crafted_table

    tokenized = tokenize_batch(crafted_table())
    schema = pgb.run_schema(family, new_run_id())
    pgb.create_run_schema(conn, schema)
    assert pgb.copy_table(conn, schema, "text_comments", tokenized) == tokenized.num_rows
    with conn.cursor() as cur:
        cur.execute(f'SELECT id, labels, input_ids, attention_mask FROM "{schema}".text_comments')
        back = cur.fetchall()
        cur.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
            "%s::regclass AND attnum > 0 ORDER BY attnum",
            (f'"{schema}".text_comments',),
        )
        types = [r[0] for r in cur.fetchall()]
    conn.commit()
    assert types == ["text", "smallint", "integer[]", "smallint[]"]
    expected = {r["id"]: r for r in tokenized.to_pylist()}
    assert len(back) == len(expected)
    for id_, labels, ids, mask in back:
        assert (labels, ids, mask) == (
            expected[id_]["labels"],
            expected[id_]["input_ids"],
            expected[id_]["attention_mask"],
        )
    assert isinstance(tokenized, pa.Table)

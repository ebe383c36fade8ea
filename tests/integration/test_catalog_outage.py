"""The Iceberg catalog's Postgres dying while a Kronodroid dbt build writes it, on the real
servers: the build's catalog writes retry for a bounded time, then the run fails with an error
naming the catalog's Postgres and the operation (never its password); nothing is published
(the partition branch's lakeFS head and catalog rows are as before); the run branch's catalog
index left behind is dropped by the cleanup sensor; with Postgres back, a rerun publishes."""

import io
import re
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfp.kronodroid.load import RAW_OBJECTS_PREFIX
from dfp.kronodroid.schema import Release
from dfp.kronodroid.synthetic import generate_release
from dfp.lake import outages, wap
from dfp.lake import pg_branches as pgb
from dfp.lake.iceberg import BranchTables
from tests.integration.jobs import build_staging, run_cleanup_sensor
from tests.integration.test_staging import DBT_ASSETS
from tests.stack_fixtures import crash_postgres

pytestmark = pytest.mark.integration

MART = ("marts", "mart_app_features")
#: The advisory lock the test holds and the trigger below waits for.
HOLD_KEY = 71_403_141


def _rows(conn, repository: str, namespace_like: str) -> dict[tuple[str, str], str]:
    """(namespace, table) -> metadata location of a repository's catalog rows."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
            "WHERE catalog_name = %s AND table_namespace LIKE %s",
            (repository, namespace_like),
        )
        return {(ns, name): location for ns, name, location in cur.fetchall()}


@pytest.fixture
def catalog(lakefs, postgres_stack, postgres_url, monkeypatch) -> Iterator[BranchTables]:
    """The run's Iceberg catalog on the session's Postgres; on main raw Kronodroid files (the
    builds run dbt alone) and a table indexed in the catalog before the build (the rows that
    must not change)."""
    monkeypatch.setenv("DFP_ICEBERG_CATALOG_URI", postgres_url)
    tables = BranchTables(lakefs, postgres_url)
    raw = generate_release(Release.REAL_DEVICE, 300, seed=5)
    sink = io.BytesIO()
    pq.write_table(raw.append_column("_source_file", pa.array(["raw.parquet"] * 300)), sink)
    lakefs.upload("main", f"{RAW_OBJECTS_PREFIX}real_device/raw.parquet", sink.getvalue())
    before = pa.table({"v": pa.array([1, 2, 3], pa.int64())})
    tables.write(before, schema="staging", table="before", target_branch="main")
    lakefs.commit("main", "raw files and a table published before the build")
    tables.sync("main")
    yield tables
    postgres_stack.postgres.start()  # whatever the test left: the session's Postgres is shared


def _hold_the_first_run_branch_row(conn, repository: str) -> str:
    """Make the run's first catalog row for its run branch wait for HOLD_KEY (held by `conn`):
    Postgres then dies while that write is in flight. Returns the trigger's name."""
    name = f"dfp_hold_{repository.replace('-', '_')}"
    with conn.cursor() as cur:
        cur.execute(
            f'CREATE FUNCTION "{name}"() RETURNS trigger LANGUAGE plpgsql AS $$ '
            f"BEGIN PERFORM pg_advisory_xact_lock({HOLD_KEY}); RETURN NEW; END $$"
        )
        cur.execute(
            f'CREATE TRIGGER "{name}" BEFORE INSERT ON iceberg_tables FOR EACH ROW WHEN '
            f"(NEW.catalog_name = %s AND NEW.table_namespace LIKE 'dfp-run-%%') "
            f'EXECUTE FUNCTION "{name}"()',
            (repository,),
        )
        cur.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
    conn.commit()
    return name


def _crash_when_held(conn, stack, done: threading.Event, crashed: threading.Event) -> None:
    """Crash Postgres as soon as a catalog write waits for HOLD_KEY (or give up when the run
    ends without one)."""
    while not done.wait(0.2):
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = 0 AND objid = %s",
                (HOLD_KEY,),
            )
            waiting = cur.fetchone()[0]
        conn.commit()
        if waiting:
            crash_postgres(stack)
            crashed.set()
            return


def _step_errors(result) -> str:
    return "\n".join(
        e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure
    )


def test_catalog_down_mid_build_fails_naming_it_publishes_nothing_and_a_rerun_publishes(
    lakefs, instance, catalog, postgres_stack, postgres_url
):
    tables, repository = catalog, lakefs.repository
    head = lakefs.head("main")
    conn = pgb.connect(postgres_url)
    main_rows = _rows(conn, repository, "main.%")
    assert set(main_rows) == {("main.staging", "before")}
    trigger = _hold_the_first_run_branch_row(conn, repository)
    done, crashed = threading.Event(), threading.Event()
    watcher = threading.Thread(
        target=_crash_when_held, args=(conn, postgres_stack, done, crashed), daemon=True
    )
    watcher.start()
    try:
        failed = build_staging(instance, "main", asset_selection=DBT_ASSETS)
    finally:
        done.set()
        watcher.join(120)
    assert crashed.is_set(), "no catalog write of the run branch was held"
    assert not failed.success
    errors = _step_errors(failed)
    server = f"127.0.0.1:{postgres_stack.postgres_port}/dagster"
    run_branch = wap.run_branch_name(failed.run_id)
    named = re.search(
        rf"Iceberg catalog \(Postgres at {re.escape(server)}\) is unreachable: "
        rf"write of staging\.stg_kronodroid_\w+ for main on {run_branch} "
        rf"failed after {outages.RETRIES} connection retries: [^\n]+",
        errors,
    )
    assert named, errors
    password = urlsplit(postgres_url).password
    assert password and password not in errors  # the URL's password never reaches the log
    assert lakefs.head("main") == head  # lakeFS: nothing merged
    assert not lakefs.branch_exists(run_branch)

    postgres_stack.postgres.start()
    conn = pgb.connect(postgres_url)
    with conn.cursor() as cur:
        cur.execute(f'DROP TRIGGER "{trigger}" ON iceberg_tables')
        cur.execute(f'DROP FUNCTION "{trigger}"()')
    conn.commit()
    assert _rows(conn, repository, "main.%") == main_rows  # the catalog: main's rows as before
    # The run could not drop its run branch's index with the catalog down: the cleanup
    # sensor drops it once the run is over.
    assert run_branch in tables.indexed_branches()
    cleaned = run_cleanup_sensor(instance)
    assert "1 catalog indexes" in str(cleaned), cleaned
    assert not [b for b in tables.indexed_branches() if wap.is_run_branch(b)]

    rerun = build_staging(instance, "main", asset_selection=DBT_ASSETS)
    assert rerun.success, _step_errors(rerun)
    assert lakefs.get_commit("main").metadata["dagster_run_id"] == rerun.run_id
    assert tables.load("main", *MART).scan().to_arrow().num_rows > 0
    after = _rows(conn, repository, "main.%")
    assert after[("main.staging", "before")] == main_rows[("main.staging", "before")]
    assert ("main.marts", "mart_app_features") in after
    conn.close()

"""Change data capture end to end with a real daemon: rows of app.comments inserted, updated
and deleted in Postgres reach Debezium's Kafka topic, `comments_cdc_sensor` requests
`apply_comment_changes` runs for main, and main's `comments_raw` and staging then hold
exactly the application table's rows; restarts of the daemon and Kafka Connect double
nothing; a batch its checks refuse is published only after the fix. Latency prints with -s."""

import shutil
import time

import dagster as dg
import pytest

from dfp.lake import pg_branches as pgb
from dfp.settings import PROJECT_ROOT
from dfp.toxic.cdc import ref_offsets
from dfp.toxic.load import read_comments
from dfp_assets.toxic.cdc_sensor import APPLY_JOB
from dfp_assets.toxic.staging import STAGING_FAMILY, STAGING_TABLE
from tests.integration import dagster_processes as procs
from tests.integration.cdc_stack import execute, mutate
from tests.integration.test_toxic_build import build, clean
from tests.integration.test_toxic_staging import conn  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

BOUND_S = 600.0  # a batch's run on a loaded 2-core machine; the figure printed is the latency


def app_rows(dsn: str) -> dict[str, tuple[str, int]]:
    rows = execute(dsn, "SELECT id, comment_text, labels FROM app.comments")
    return {str(i): (text, int(labels)) for i, text, labels in rows}


def raw_rows(lakefs, ref: str) -> dict[str, tuple[str, int]]:
    table = read_comments(lakefs, ref).to_pylist()
    return {r["id"]: (r["comment_text"], r["labels"]) for r in table}


def staged_ids(db, branch: str) -> set[str]:
    schema = pgb.branch_schema(STAGING_FAMILY, branch)
    with db.cursor() as cur:
        cur.execute(f'SELECT id FROM "{schema}".{STAGING_TABLE}')
        ids = {str(r[0]) for r in cur.fetchall()}
    db.commit()
    return ids


def check_published_downstream(db, want: dict[str, tuple[str, int]]) -> None:
    """Staging and table_clean on main hold exactly the wanted ids, with their labels."""
    assert staged_ids(db, "main") == set(want)
    assert {i: row[0] for i, row in clean(db, "main").items()} == {
        i: labels for i, (_, labels) in want.items()
    }


def test_changes_of_app_comments_are_published_exactly_once_through_the_daemon(
    cdc,
    lakefs,
    conn,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    monkeypatch.setenv("DFP_CDC_DSN", cdc.dsn)
    monkeypatch.setenv("DFP_KAFKA_BOOTSTRAP_SERVERS", cdc.bootstrap)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    daemon_log = lambda: (tmp_path / "daemon.log").read_text()[-4000:]  # noqa: E731

    with dg.DagsterInstance.from_config(str(home)) as instance:
        # main starts from a full load (the raw row floor is 1,000); CDC changes follow it.
        assert build(instance, "main", {"source": "synthetic", "synthetic_scale": 0.01})
        loaded = raw_rows(lakefs, "main")
        assert len(loaded) == 1600

        def expected() -> dict[str, tuple[str, int]]:
            return {**loaded, **app_rows(cdc.dsn)}

        def published(want: dict) -> bool:
            return raw_rows(lakefs, "main") == want

        def apply_runs(status=None) -> list:
            statuses = [status] if status else None
            return instance.get_run_records(dg.RunsFilter(job_name=APPLY_JOB, statuses=statuses))

        with procs.daemon(str(home), tmp_path):
            mutate(cdc.dsn, inserts=100, updates=10, deletes=5)
            committed = time.monotonic()
            want = expected()
            assert len(want) == 1600 + 95
            procs.wait_for("main to hold the 95 rows", lambda: published(want), BOUND_S, daemon_log)
            print(f"\n[cdc e2e] commit → published on main: {time.monotonic() - committed:.1f}s")
            check_published_downstream(conn, want)
            # The offsets consumed were published with the rows (and only on main).
            assert ref_offsets(lakefs, "main")

        # Restart Connect (it may redeliver what it last sent) and then the daemon.
        cdc.stack.connect.stop()
        cdc.stack.connect.start()
        with procs.daemon(str(home), tmp_path):
            mutate(cdc.dsn, inserts=5, updates=0, deletes=0)
            want = expected()
            assert len(want) == 1600 + 100
            procs.wait_for("main to hold 5 more rows", lambda: published(want), BOUND_S, daemon_log)
            check_published_downstream(conn, want)

            # A row the raw checks refuse (empty text): its batch publishes nothing ...
            failed_before = len(apply_runs(dg.DagsterRunStatus.FAILURE))
            (bad_id,) = execute(
                cdc.dsn,
                "INSERT INTO app.comments (comment_text, labels) VALUES ('', 1) RETURNING id",
            )[0]
            head = lakefs.head("main")
            procs.wait_for(
                "the refused batch's run",
                lambda: len(apply_runs(dg.DagsterRunStatus.FAILURE)) > failed_before,
                BOUND_S,
                daemon_log,
            )
            assert lakefs.head("main") == head and published(want)
            # ... until the fix arrives: the next batch has both changes, the last one wins.
            execute(
                cdc.dsn, "UPDATE app.comments SET comment_text = 'fixed' WHERE id = %s", (bad_id,)
            )
            want = expected()
            assert want[str(bad_id)] == ("fixed", 1)
            procs.wait_for("the fixed row on main", lambda: published(want), BOUND_S, daemon_log)
            check_published_downstream(conn, want)

    # Every successful run published once; nothing doubled on the way.
    assert len(raw_rows(lakefs, "main")) == 1600 + 101

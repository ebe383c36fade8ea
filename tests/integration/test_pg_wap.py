"""Write-audit-publish with a Postgres participant, on real lakeFS and Postgres: a run's
schema is swapped in with the lakeFS merge, and left out when checks or the merge fail, or
when Postgres goes down before the publish (a restart within the retry window is ridden out)."""

import os
import threading
from urllib.parse import urlsplit

import dagster as dg
import pytest

from dfp.lake import pg_branches as pgb
from dfp.lake import wap
from dfp.stack.services import LocalStack
from dfp_assets.platform.partitions import blocking_check, branch_asset
from dfp_assets.platform.wap_executor import lakefs_wap_executor
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.postgres_staging import PostgresStagingResource
from tests.integration.jobs import run_cleanup_sensor
from tests.stack_fixtures import crash_postgres

FAMILY = "wapstage"
#: The session's Postgres, for the asset below to take down (set by the `env` fixture).
_STACK: list[LocalStack] = []
PATH = "pgwap/marker.txt"
OTHER_PATH = "pgwap/other.txt"


class StageConfig(dg.Config):
    value: str
    check_passes: bool = True
    conflict_on_target: bool = False  # make the publishing lakeFS merge fail
    other_run_publishes: str = ""  # another run publishes this to an unrelated path meanwhile
    outage: str = "none"  # none | down (Postgres crashes, stays down) | restart (and comes back)


@branch_asset(group="test", check_specs=[blocking_check("ok", "staged_table", "test gate")])
def staged_table(
    context: dg.AssetExecutionContext,
    config: StageConfig,
    lakefs: LakeFSResource,
    postgres_staging: PostgresStagingResource,
):
    schema = postgres_staging.run_schema(context, FAMILY)
    conn = postgres_staging.connect()
    with conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "{schema}".t (v text)')
        cur.execute(f'INSERT INTO "{schema}".t VALUES (%s)', (config.value,))
    conn.commit()
    conn.close()
    with lakefs.client() as client:
        branch = lakefs.run_branch(context)
        client.upload(branch, PATH, config.value.encode())
        client.commit(branch, "marker", {})
        if config.conflict_on_target:
            client.upload(context.partition_key, PATH, b"concurrent")
            client.commit(context.partition_key, "concurrent writer", {})
        if config.other_run_publishes:
            # What a second run on the same branch does when it publishes first: no path
            # overlaps, so lakeFS alone would merge both.
            client.upload(context.partition_key, OTHER_PATH, config.other_run_publishes.encode())
            client.commit(context.partition_key, "other run", {"dagster_run_id": "other-run-0001"})
    if config.outage != "none":
        # After the run schema is written: the publish finds Postgres gone.
        crash_postgres(_STACK[0])
        if config.outage == "restart":
            threading.Thread(target=_STACK[0].postgres.start, daemon=True).start()
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="ok", passed=config.check_passes)


def _job():
    lakefs = LakeFSResource.from_env_vars()
    postgres = PostgresStagingResource(url=dg.EnvVar("DFP_POSTGRES_URL"))
    defs = dg.Definitions(
        assets=[staged_table],
        jobs=[dg.define_asset_job("pg_wap_job", selection=[staged_table])],
        resources={"lakefs": lakefs, "postgres_staging": postgres},
        executor=lakefs_wap_executor(
            lakefs, default_mode="in_process", participants={"postgres": postgres}
        ),
    )
    return defs.resolve_job_def("pg_wap_job")


def pg_wap_job():
    return _job()


@pytest.fixture
def env(lakefs, postgres_stack, postgres_url, monkeypatch):
    monkeypatch.setenv("DFP_POSTGRES_URL", postgres_url)
    _STACK[:] = [postgres_stack]
    conn = pgb.connect(postgres_url)
    yield lakefs, conn
    _STACK.clear()
    postgres_stack.postgres.start()  # whatever an outage test left: the session's is shared
    conn = pgb.connect(postgres_url)
    # Each test's repository is new, but the family is shared: start clean next time.
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{FAMILY}__%",))
        for (name,) in cur.fetchall():
            cur.execute(f'DROP SCHEMA "{name}" CASCADE')
    conn.commit()
    conn.close()


def run(instance, value: str, **config):
    if "main" not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", ["main"])
    with dg.execute_job(
        dg.reconstructable(pg_wap_job),
        instance=instance,
        run_config={"ops": {"staged_table": {"config": {"value": value, **config}}}},
        tags={"dagster/partition": "main"},
        raise_on_error=False,
    ) as result:
        return result.success, result.run_id


def rows(conn) -> list[str] | None:
    schema = pgb.branch_schema(FAMILY, "main")
    if not pgb.schema_exists(conn, schema):
        conn.commit()
        return None
    with conn.cursor() as cur:
        cur.execute(f'SELECT v FROM "{schema}".t')
        values = [r[0] for r in cur.fetchall()]
    conn.commit()
    return values


def run_schemas(conn) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{FAMILY}__run_%",))
        names = [r[0] for r in cur.fetchall()]
    conn.commit()
    return names


def test_publish_swaps_the_schema_with_the_merge(env, instance):
    lakefs, conn = env
    ok, run_id = run(instance, "v1")
    assert ok
    assert rows(conn) == ["v1"] and run_schemas(conn) == []
    assert lakefs.read("main", PATH) == b"v1"
    meta = lakefs.get_commit("main").metadata
    assert meta["dagster_run_id"] == run_id
    assert meta["published.postgres"] == pgb.branch_schema(FAMILY, "main")
    assert not lakefs.branch_exists(wap.run_branch_name(run_id))

    ok, _ = run(instance, "v2")
    assert ok and rows(conn) == ["v2"] and lakefs.read("main", PATH) == b"v2"


def test_failed_check_discards_the_run_schema(env, instance):
    lakefs, conn = env
    assert run(instance, "good")[0]
    head = lakefs.head("main")
    ok, _ = run(instance, "bad", check_passes=False)
    assert not ok
    assert rows(conn) == ["good"] and run_schemas(conn) == []
    assert lakefs.head("main") == head


def test_failed_merge_rolls_the_swap_back(env, instance):
    lakefs, conn = env
    assert run(instance, "good")[0]
    ok, run_id = run(instance, "bad", conflict_on_target=True)
    assert not ok
    assert rows(conn) == ["good"] and run_schemas(conn) == []
    assert lakefs.read("main", PATH) == b"concurrent"  # the conflicting writer, not the run
    errors = [
        e.message
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_failure
    ]
    assert errors, "the run failed without a failure event"


def test_another_runs_publish_since_the_start_refuses_this_publish(env, instance):
    lakefs, conn = env
    assert run(instance, "good")[0]
    ok, run_id = run(instance, "stale", other_run_publishes="theirs")
    assert not ok
    head = lakefs.head("main")
    assert lakefs.get_commit(head).metadata["dagster_run_id"] == "other-run-0001"
    # Nothing of this run reached lakeFS or Postgres; the other run's publish stays.
    assert lakefs.read("main", PATH) == b"good" and lakefs.read("main", OTHER_PATH) == b"theirs"
    assert rows(conn) == ["good"] and run_schemas(conn) == []
    assert not lakefs.branch_exists(wap.run_branch_name(run_id))
    errors = " ".join(
        e.message + str(getattr(e.dagster_event.event_specific_data, "error", "") or "")
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_failure
    )
    assert "other-run-0001" in errors and "nothing published to lakeFS branch main" in errors

    ok, _ = run(instance, "rerun")
    assert ok and rows(conn) == ["rerun"] and lakefs.read("main", PATH) == b"rerun"


def _failure_text(instance, run_id: str) -> str:
    return " ".join(
        e.message + str(getattr(e.dagster_event.event_specific_data, "error", "") or "")
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_failure
    )


def test_postgres_down_before_the_publish_fails_naming_it_and_publishes_nothing(
    env, instance, postgres_stack
):
    lakefs, conn = env
    assert run(instance, "good")[0]
    head = lakefs.head("main")
    conn.close()

    ok, run_id = run(instance, "lost", outage="down")
    assert not ok
    errors = _failure_text(instance, run_id)
    server = f"127.0.0.1:{postgres_stack.postgres_port}/dagster"
    assert (
        f"Postgres at {server} is unreachable: publish of {pgb.branch_schema(FAMILY, 'main')}"
        in errors
    ), errors
    assert f"after {pgb.CONNECT_RETRIES} connection retries" in errors, errors
    password = urlsplit(os.environ["DFP_POSTGRES_URL"]).password
    assert password and password not in errors  # the URL's password never reaches the log
    assert lakefs.head("main") == head  # lakeFS: nothing merged
    assert not lakefs.branch_exists(wap.run_branch_name(run_id))

    postgres_stack.postgres.start()
    conn = pgb.connect(os.environ["DFP_POSTGRES_URL"])
    assert rows(conn) == ["good"]  # Postgres: the branch schema as before
    # The discard could not reach Postgres either: the run schema is an orphan, which the
    # cleanup sensor drops.
    orphan = pgb.run_schema(FAMILY, run_id)
    # The session's Postgres is shared with other test files: only this family's orphans.
    family_orphans = [
        s for s in pgb.orphaned_run_schemas(conn, live_run_ids=[]) if s.startswith(f"{FAMILY}__")
    ]
    assert family_orphans == [orphan]
    conn.commit()
    result = run_cleanup_sensor(instance)
    assert "run schemas" in str(result) and ", 0 run schemas" not in str(result), result
    assert run_schemas(conn) == [] and not pgb.schema_exists(conn, orphan)

    ok, rerun = run(instance, "after")
    assert ok, _failure_text(instance, rerun)
    assert rows(conn) == ["after"] and lakefs.read("main", PATH) == b"after"
    assert lakefs.get_commit("main").metadata["dagster_run_id"] == rerun
    conn.close()


def test_postgres_restarted_before_the_publish_is_ridden_out(env, instance):
    lakefs, conn = env
    conn.close()
    ok, run_id = run(instance, "survived", outage="restart")
    assert ok, _failure_text(instance, run_id)
    conn = pgb.connect(os.environ["DFP_POSTGRES_URL"])
    assert rows(conn) == ["survived"] and run_schemas(conn) == []
    assert lakefs.read("main", PATH) == b"survived"
    assert lakefs.get_commit("main").metadata["dagster_run_id"] == run_id
    conn.close()

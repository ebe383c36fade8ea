"""Benchmark: change data capture latency, a commit in `app.comments` → published on `main`.

Starts a private stack in a temporary DFP_HOME on free ports (lakeFS, Debian's Postgres with
wal_level=logical, a Kafka broker and Kafka Connect with Debezium's Postgres connector), loads
`main` with a small synthetic `build_comments`, then starts a real `dagster-daemon` on a
DAGSTER_HOME with the repository's dagster.yaml (Postgres storage, queued runs), as a
deployment runs the CDC sensor. Each round inserts `--rows` comments in one transaction and
waits for `main`'s head to move to a commit whose `comments_raw` holds them; rounds do not
overlap. Printed: latency p50/max and, from the runs' records, where the time went (commit →
run requested: capture + sensor tick; requested → started: queue + run worker launch;
started → finished: the run itself, raw → staging → table_clean and its checks → publish).

Run: `uv run python benchmarks/cdc_latency.py [--rounds 5] [--rows 10] [--kafka|--embedded]
[--executor multiprocess]`
(`--embedded` reads Postgres logical replication directly, the `dagster dev` default without
Kafka). Needs a JDK for Kafka (not with --embedded).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from dfp.settings import load_settings, read_env_file
from dfp.stack.benchmarking import dagster_daemon, print_figures
from dfp.stack.services import free_port

ROUND_BOUND_S = 600.0  # one round on a loaded 2-core machine


@contextmanager
def _cdc_stack(kafka: bool) -> Iterator[Path]:
    from dfp.stack.services import LocalStack

    # Postgres runs as user 'postgres': its state must sit under world-traversable dirs.
    home = Path(tempfile.mkdtemp(prefix="dfp-bench-cdc-", dir="/tmp"))
    home.chmod(0o755)
    services = "lakefs,postgres,kafka,connect" if kafka else "lakefs,postgres"
    os.environ.update({"DFP_HOME": str(home / "home"), "DFP_STACK_SERVICES": services})
    for var in (
        "DFP_LAKEFS_PORT",
        "DFP_POSTGRES_PORT",
        "DFP_KAFKA_PORT",
        "DFP_KAFKA_CONTROLLER_PORT",
        "DFP_CONNECT_PORT",
    ):
        os.environ[var] = str(free_port())
    stack = LocalStack(home / "home")
    try:
        stack.up(log=lambda msg: print(f"[stack] {msg}", flush=True))
        os.environ.update(read_env_file(stack.env_file))
        if not kafka:
            os.environ.pop("DFP_KAFKA_BOOTSTRAP_SERVERS", None)
        yield home
    finally:
        stack.down(log=lambda msg: None)
        shutil.rmtree(home, ignore_errors=True)


def _wait(what: str, done, bound_s: float, log: Path):
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        found = done()
        if found:
            return found
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise TimeoutError(f"{what}: not within {bound_s:.0f}s; daemon log tail:\n{tail}")


def _succeeded_after(instance: dg.DagsterInstance, job: str, committed: float):
    """The newest successful run of `job` requested after `committed`, if any."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1
    )
    if records and records[0].create_timestamp.timestamp() >= committed:
        return records[0]
    return None


def _step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
    return {
        r.event_log_entry.dagster_event.step_key: (
            r.event_log_entry.dagster_event.event_specific_data.duration_ms / 1000
        )
        for r in records
    }


def _executor(instance: dg.DagsterInstance, run_id: str) -> str:
    """Which executor ran the steps, from its engine event ("in process" / "multiprocess")."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    for r in records.records:
        message = r.event_log_entry.dagster_event.message or ""
        if message.startswith("Executing steps"):
            return message
    return "?"


_TIMELINE_EVENTS = {
    t.value
    for t in (
        dg.DagsterEventType.RUN_ENQUEUED,
        dg.DagsterEventType.RUN_STARTING,
        dg.DagsterEventType.RUN_START,
        dg.DagsterEventType.ENGINE_EVENT,
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.RUN_SUCCESS,
    )
}


def _print_timeline(instance: dg.DagsterInstance, record, committed: float) -> None:
    """Where one round's time went: its run's engine, run and step events, in seconds after
    the insert's commit."""
    created = record.create_timestamp.timestamp() - committed
    print(f"[cdc] timeline (s after commit): run created +{created:.2f}")
    for entry in instance.all_logs(record.dagster_run.run_id):
        event = entry.dagster_event
        if event is None or event.event_type_value not in _TIMELINE_EVENTS:
            continue
        what = (event.message or event.event_type_value).splitlines()[0][:110]
        print(f"[cdc]   +{entry.timestamp - committed:6.2f} {event.step_key or '':26} {what}")


def _insert(dsn: str, rows: int, round_no: int) -> tuple[list[str], float]:
    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            values = [(f"benchmark round {round_no} comment {i}", i % 2) for i in range(rows)]
            ids = psycopg2.extras.execute_values(
                cur,
                "INSERT INTO app.comments (comment_text, labels) VALUES %s RETURNING id",
                values,
                fetch=True,
            )
        committed = time.time()  # the `with conn` block committed
    finally:
        conn.close()
    return [str(r[0]) for r in ids], committed


def run(rounds: int, rows: int, kafka: bool, timeline: bool = False) -> dict[str, object]:
    from dfp.lake.lakefs_client import LakeFSClient
    from dfp.settings import LakeFSSettings
    from dfp.stack.dagster_home import prepare_dagster_home
    from dfp.toxic.load import read_comments
    from dfp_assets.definitions import comments_job
    from dfp_assets.toxic.cdc_sensor import APPLY_JOB
    from dfp_resources.environment import resource_run_config

    figures: dict[str, object] = {"reader": "kafka (Debezium)" if kafka else "embedded"}
    with _cdc_stack(kafka):
        client = LakeFSClient(LakeFSSettings.from_env())
        dagster_home = prepare_dagster_home()
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("lakefs_branch", ["main"])
            started = time.perf_counter()
            with dg.execute_job(
                dg.reconstructable(comments_job),
                instance=instance,
                run_config={
                    "resources": resource_run_config(load_settings()),
                    "ops": {
                        "comments_raw": {"config": {"source": "synthetic", "synthetic_scale": 0.01}}
                    },
                },
                tags={"dagster/partition": "main"},
            ) as result:
                assert result.success, "the initial build_comments on main failed"
            figures["initial_build_s"] = round(time.perf_counter() - started, 1)
            log = dagster_home / "daemon.log"
            latencies, requested, launched, ran = [], [], [], []
            steps: dict[str, list[float]] = {}
            with dagster_daemon(dagster_home):
                dsn = os.environ["DFP_CDC_DSN"]
                for round_no in range(rounds):
                    head = client.head("main")
                    ids, committed = _insert(dsn, rows, round_no)
                    _wait(
                        f"round {round_no}: main to move",
                        lambda head=head: client.head("main") != head,
                        ROUND_BOUND_S,
                        log,
                    )
                    latency = time.time() - committed
                    have = set(read_comments(client, "main").column("id").to_pylist())
                    missing = set(ids) - have
                    assert not missing, f"round {round_no}: main moved without {sorted(missing)}"
                    latencies.append(latency)
                    # main moves at the merge, inside the run: its record turns SUCCESS after.
                    record = _wait(
                        f"round {round_no}: its run to succeed",
                        lambda t=committed: _succeeded_after(instance, APPLY_JOB, t),
                        ROUND_BOUND_S,
                        log,
                    )
                    requested.append(record.create_timestamp.timestamp() - committed)
                    launched.append(record.start_time - record.create_timestamp.timestamp())
                    ran.append(record.end_time - record.start_time)
                    for key, seconds in _step_seconds(instance, record.dagster_run.run_id).items():
                        steps.setdefault(key, []).append(seconds)
                    if timeline:
                        _print_timeline(instance, record, committed)
                    print(
                        f"[cdc] round {round_no}: {latency:.1f}s (requested +{requested[-1]:.1f}"
                        f", started +{launched[-1]:.1f}, ran {ran[-1]:.1f})",
                        flush=True,
                    )
            figures["apply_runs"] = len(instance.get_run_records(dg.RunsFilter(job_name=APPLY_JOB)))
            figures["executor"] = _executor(instance, record.dagster_run.run_id)
    # Where the runs spent their time, step by step (p50 over the rounds).
    for key, seconds in steps.items():
        figures[f"run_step_{key}_p50_s"] = round(statistics.median(seconds), 1)
    figures["rounds"] = rounds
    figures["rows_per_round"] = rows
    figures["latency_p50_s"] = round(statistics.median(latencies), 1)
    figures["latency_max_s"] = round(max(latencies), 1)
    figures["commit_to_requested_p50_s"] = round(statistics.median(requested), 1)
    figures["requested_to_started_p50_s"] = round(statistics.median(launched), 1)
    figures["run_p50_s"] = round(statistics.median(ran), 1)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10)
    reader = parser.add_mutually_exclusive_group()
    reader.add_argument("--kafka", dest="kafka", action="store_true", default=True)
    reader.add_argument("--embedded", dest="kafka", action="store_false")
    parser.add_argument(
        "--executor",
        choices=["in_process", "multiprocess"],
        help="DFP_EXECUTOR of the daemon's runs (default: the environment's, in_process locally)",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="print each round's run events in time order"
    )
    args = parser.parse_args(argv)
    if args.executor:
        os.environ["DFP_EXECUTOR"] = args.executor  # before the definitions load
    print_figures(run(args.rounds, args.rows, args.kafka, args.timeline))


if __name__ == "__main__":
    main()

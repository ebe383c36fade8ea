"""The real change data capture stack for tests: Debian's Postgres (wal_level=logical), a
Kafka broker (KRaft) and Kafka Connect with Debezium's Postgres connector, started by
`dfp stack` (DFP_STACK_SERVICES=...,postgres,kafka,connect); and writers of app.comments."""

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

from dfp.stack.services import LocalStack, StackError
from tests.stack_fixtures import free_port, missing_service


@dataclass
class CDCStack:
    stack: LocalStack
    dsn: str
    bootstrap: str
    start_s: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def cdc() -> Iterator[CDCStack]:
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        missing_service("java not found: Kafka and Kafka Connect need a JDK")
    # Postgres runs as user 'postgres': its state must sit under world-traversable dirs.
    home = Path(tempfile.mkdtemp(prefix="dfp-cdc-", dir="/tmp"))
    home.chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DFP_STACK_SERVICES", "lakefs,postgres,kafka,connect")
        for var in ("DFP_POSTGRES_PORT", "DFP_KAFKA_PORT", "DFP_KAFKA_CONTROLLER_PORT"):
            mp.setenv(var, str(free_port()))
        mp.setenv("DFP_CONNECT_PORT", str(free_port()))
        stack = LocalStack(home / "home")
        services = [stack.postgres, stack.kafka, stack.connect]
        try:
            start_s = {}
            for service in services:
                started = time.monotonic()
                try:
                    service.start()
                except StackError as exc:
                    missing_service(f"{service.name} did not start: {exc}")
                start_s[service.name] = time.monotonic() - started
            print(f"\n[cdc] start-up s (first start: initdb, KRaft format): {start_s}")
            yield CDCStack(stack, stack.cdc_dsn, stack.kafka_bootstrap, start_s)
        finally:
            for service in reversed(services):
                service.stop()
            shutil.rmtree(home, ignore_errors=True)


def execute(dsn: str, sql: str, args=None) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


Key = tuple[str, str, str | None, int | None]


def mutate(dsn: str, inserts: int, updates: int, deletes: int) -> list[Key]:
    """Insert, update and delete rows of app.comments (one statement per update/delete, so
    each is its own transaction); the changes a reader must return, in commit order."""
    conn = psycopg2.connect(dsn)
    expected: list[Key] = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            rows = [(f"comment {i} {time.monotonic_ns()}", i % 2) for i in range(inserts)]
            ids = psycopg2.extras.execute_values(
                cur,
                "INSERT INTO app.comments (comment_text, labels) VALUES %s RETURNING id",
                rows,
                fetch=True,
            )
            ids = [str(r[0]) for r in ids]
            expected += [("upsert", i, t, lab) for i, (t, lab) in zip(ids, rows, strict=True)]
            for i in ids[:updates]:
                cur.execute(
                    "UPDATE app.comments SET comment_text = comment_text || ' (edited)', "
                    "labels = 1 - labels, updated_at = now() WHERE id = %s "
                    "RETURNING comment_text, labels",
                    (i,),
                )
                text, labels = cur.fetchone()
                expected.append(("upsert", i, text, labels))
            for i in ids[-deletes:] if deletes else []:
                cur.execute("DELETE FROM app.comments WHERE id = %s", (i,))
                expected.append(("delete", i, None, None))
    finally:
        conn.close()
    return expected

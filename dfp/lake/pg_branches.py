"""Postgres schemas per lakeFS branch, published like a lakeFS merge. No Dagster imports.

A *family* is a logical schema (e.g. `staging`); each lakeFS branch has its own Postgres schema
of that family (`staging__main`, `staging__feat_x_1a2b3c4d`). A run never writes there: it
writes a schema of its own (`staging__run_<run id, 8 hex>`), and publishing swaps that schema in
inside ONE transaction:

1. take a transaction-scoped advisory lock on the branch schema (concurrent publishes queue);
2. rename the branch schema away (`<family>__old_<run id8>`), rename the run schema in;
3. move over the branch schema's tables the run did not write (a run overlays, table by table);
4. drop the old schema; commit.

Steps 1–3 are `Swap.prepare()`, step 4 `Swap.commit()`: write-audit-publish prepares, merges
lakeFS, then commits, and rolls back if the merge fails. Renaming a schema takes no lock on
its tables, so until commit readers keep reading the old tables without waiting; from the
commit on, a new statement resolves the branch schema's name to the new ones. Only step 3's
carried-over tables (and, at commit, the dropped old ones) are locked, briefly. A failed or
discarded run drops its run schema and never touches the branch schema.

Names are quoted identifiers built here; callers never format SQL with them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dfp.lake import outages

SEPARATOR = "__"
#: Postgres truncates identifiers to 63 bytes (NAMEDATALEN - 1): stay within it.
MAX_IDENTIFIER = 63
RUN_PREFIX = "run_"
OLD_PREFIX = "old_"
_FAMILY = re.compile(r"[a-z][a-z0-9_]{0,19}")
_SAFE = re.compile(r"[a-z0-9_]+")
_HASH_LEN = 8
#: pg_class kinds a publish carries over from the branch schema, with their ALTER keyword.
_CARRIED_KINDS = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}


class SchemaError(ValueError):
    """A family, branch or schema name dfp cannot map, or a schema in the wrong state."""


def _check_family(family: str) -> str:
    if not _FAMILY.fullmatch(family) or SEPARATOR in family:
        raise SchemaError(
            f"schema family {family!r}: use 1-20 lowercase letters, digits, single underscores, "
            "starting with a letter"
        )
    return family


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LEN]


def sanitise(name: str, room: int = MAX_IDENTIFIER) -> str:
    """A lakeFS branch name as a schema-name part of at most `room` characters.

    Names already lowercase `[a-z0-9_]` stay as they are; any other (upper case, '-', too long,
    or shaped like a run/old schema) gets a suffix hashed from the original, so two branches
    never map to one schema ("feat-x" and "feat_x" differ)."""
    if not name:
        raise SchemaError("empty branch name")
    if room <= _HASH_LEN + 1:
        raise SchemaError(f"no room for branch {name!r} in a schema name")
    plain = name.lower()
    safe = re.sub(r"[^a-z0-9_]", "_", plain)
    clean = (
        _SAFE.fullmatch(name) is not None
        and len(name) <= room
        and not name.startswith((RUN_PREFIX, OLD_PREFIX))
        and SEPARATOR not in name
    )
    if clean:
        return name
    stem = re.sub(r"_+", "_", safe).strip("_")[: room - _HASH_LEN - 1] or "b"
    return f"{stem}_{_short_hash(name)}"


def branch_schema(family: str, branch: str) -> str:
    """The schema of `family` that lakeFS branch `branch` reads, e.g. `staging__main`."""
    prefix = f"{_check_family(family)}{SEPARATOR}"
    return prefix + sanitise(branch, MAX_IDENTIFIER - len(prefix))


def _run_key(run_id: str) -> str:
    key = run_id.replace("-", "").lower()[:8]
    if not re.fullmatch(r"[0-9a-f]{8}", key):
        raise SchemaError(f"run id {run_id!r} does not start with 8 hex digits")
    return key


def run_schema(family: str, run_id: str) -> str:
    """The schema a run writes for `family`, e.g. `staging__run_1a2b3c4d`."""
    return f"{_check_family(family)}{SEPARATOR}{RUN_PREFIX}{_run_key(run_id)}"


def old_schema(family: str, run_id: str) -> str:
    """Where a publish moves the branch schema it replaces, until it drops it."""
    return f"{_check_family(family)}{SEPARATOR}{OLD_PREFIX}{_run_key(run_id)}"


_RUN_SCHEMA = re.compile(rf"([a-z][a-z0-9_]*){SEPARATOR}{RUN_PREFIX}([0-9a-f]{{8}})")


def parse_run_schema(schema: str) -> tuple[str, str] | None:
    """(family, run id8) of a run schema's name, else None."""
    match = _RUN_SCHEMA.fullmatch(schema)
    return (match.group(1), match.group(2)) if match else None


# -- Postgres ------------------------------------------------------------------------------
#: Connection attempts Postgres gets before an operation fails (see dfp.lake.outages), so a
#: Postgres restart during a run is ridden out and a dead one fails bounded.
CONNECT_RETRIES = outages.RETRIES
#: libpq's words for a server that is not there (yet, or any more): worth another attempt.
#: Anything else (a wrong password, a missing database) fails at once.
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "timeout expired",
    "no such file or directory",  # a Unix socket that is not there
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "server closed the connection unexpectedly",
    "terminating connection due to administrator command",
    "no connection to the server",
    "connection already closed",
)


class PostgresUnavailable(outages.ServiceUnavailable):
    """Postgres could not be reached or went away during an operation; the message names
    the server (never its password) and the operation."""


def _libpq_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


def server_name(url: str) -> str:
    """`host:port/database` of a Postgres URL, for messages (no user or password)."""
    from urllib.parse import urlsplit

    parts = urlsplit(_libpq_url(url))
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"


def _server_of(conn: Any) -> str:
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


def says_unreachable(message: str) -> bool:
    """Whether a libpq error message says the server is not there (yet, or any more), as
    opposed to refusing the request (a wrong password, a missing database)."""
    return any(words in message.lower() for words in _UNREACHABLE)


def _is_unreachable(exc: BaseException) -> bool:
    import psycopg2

    if isinstance(exc, psycopg2.InterfaceError):
        return True  # the connection object is closed: the server went away under it
    return isinstance(exc, psycopg2.OperationalError) and says_unreachable(str(exc))


def connect(url: str, operation: str = "connect", retries: int = CONNECT_RETRIES) -> Any:
    """A psycopg2 connection from a libpq or SQLAlchemy-style URL (`postgresql+psycopg2://`).
    A server that is down is tried `retries` more times with a doubling backoff before
    PostgresUnavailable names it and `operation`."""
    import psycopg2

    return outages.with_retries(
        lambda: psycopg2.connect(_libpq_url(url), connect_timeout=10),
        unreachable=lambda exc: isinstance(exc, psycopg2.OperationalError) and _is_unreachable(exc),
        error=PostgresUnavailable,
        server=f"Postgres at {server_name(url)}",
        operation=operation,
        retries=retries,
    )


@contextmanager
def naming_outages(server: str, operation: str) -> Iterator[None]:
    """Turn the server (`host:port/database`) going away during `operation` into
    PostgresUnavailable naming both."""
    try:
        yield
    except PostgresUnavailable:
        raise
    except Exception as exc:
        if not _is_unreachable(exc):
            raise
        raise PostgresUnavailable(
            f"Postgres at {server} went away during {operation}: {outages.first_line(exc)}"
        ) from exc


def _ident(name: str) -> Any:
    from psycopg2 import sql

    return sql.Identifier(name)


def _sql(template: str, *names: str) -> Any:
    from psycopg2 import sql

    return sql.SQL(template).format(*(_ident(n) for n in names))


def schema_exists(conn: Any, schema: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        return cur.fetchone() is not None


def relations(conn: Any, schema: str) -> dict[str, str]:
    """Name → pg_class kind of the tables and views in `schema`."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = ANY(%s)",
            (schema, list(_CARRIED_KINDS)),
        )
        return dict(cur.fetchall())


def create_run_schema(conn: Any, schema: str) -> None:
    """Create a run schema (idempotent: a retried step finds it), committed at once."""
    if parse_run_schema(schema) is None:
        raise SchemaError(f"{schema!r} is not a run schema name (see run_schema())")
    with conn.cursor() as cur:
        cur.execute(_sql("CREATE SCHEMA IF NOT EXISTS {}", schema))
    conn.commit()


def discard(conn: Any, schema: str) -> bool:
    """Drop a run schema and everything in it; False when it did not exist."""
    if parse_run_schema(schema) is None:
        raise SchemaError(f"refusing to discard {schema!r}: not a run schema")
    existed = schema_exists(conn, schema)
    with conn.cursor() as cur:
        cur.execute(_sql("DROP SCHEMA IF EXISTS {} CASCADE", schema))
    conn.commit()
    return existed


def orphaned_run_schemas(conn: Any, live_run_ids: Iterable[str]) -> list[str]:
    """Run schemas whose run is no longer in progress (crashed run workers leave them)."""
    live = {_run_key(r) for r in live_run_ids}
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace ORDER BY nspname")
        names = [row[0] for row in cur.fetchall()]
    return [n for n in names if (p := parse_run_schema(n)) is not None and p[1] not in live]


@dataclass
class SwapResult:
    branch_schema: str
    replaced: bool  # the branch schema existed before
    carried: list[str]  # its relations the run did not write, moved into the new schema


def _pair(run: str, branch: str) -> tuple[str, str, str]:
    """(run, branch, old) after checking that `run` and `branch` belong to one family."""
    parsed = parse_run_schema(run)
    if parsed is None:
        raise SchemaError(f"{run!r} is not a run schema name")
    if not branch.startswith(parsed[0] + SEPARATOR) or parse_run_schema(branch):
        raise SchemaError(f"{branch!r} is not a branch schema of family {parsed[0]!r}")
    return run, branch, f"{parsed[0]}{SEPARATOR}{OLD_PREFIX}{parsed[1]}"


class Swap:
    """One publish of run schemas as branch schemas — `(run, branch)` pairs, e.g. a run's
    staging and production schemas — in ONE transaction on one connection.

    `prepare()` does every step that can fail on the data (missing run schema, names), so
    `commit()` after a lakeFS merge only drops the old schemas and commits."""

    def __init__(self, url_or_conn: str | Any, *pairs: tuple[str, str]):
        if not pairs:
            raise SchemaError("Swap needs at least one (run schema, branch schema) pair")
        self.pairs = [_pair(run, branch) for run, branch in pairs]
        branches = [branch for _, branch, _ in self.pairs]
        if len(set(branches)) != len(branches):
            raise SchemaError(f"two run schemas for one branch schema: {sorted(branches)}")
        self._branches = ", ".join(sorted(branches))  # for error messages
        self._owns = isinstance(url_or_conn, str)
        if isinstance(url_or_conn, str):
            self.conn = connect(url_or_conn, f"publish of {self._branches}")
        else:
            self.conn = url_or_conn
        self._server = _server_of(self.conn)
        self.results: list[SwapResult] | None = None

    def _swap_one(self, cur: Any, run: str, branch: str, old: str) -> SwapResult:
        if not schema_exists(self.conn, run):
            raise SchemaError(f"run schema {run} does not exist: nothing to publish as {branch}")
        if not schema_exists(self.conn, branch):
            cur.execute(_sql("ALTER SCHEMA {} RENAME TO {}", run, branch))
            return SwapResult(branch, False, [])
        written = relations(self.conn, run)
        kept = {n: k for n, k in relations(self.conn, branch).items() if n not in written}
        cur.execute(_sql("DROP SCHEMA IF EXISTS {} CASCADE", old))
        cur.execute(_sql("ALTER SCHEMA {} RENAME TO {}", branch, old))
        cur.execute(_sql("ALTER SCHEMA {} RENAME TO {}", run, branch))
        for name, kind in sorted(kept.items()):
            statement = f"ALTER {_CARRIED_KINDS[kind]} {{}}.{{}} SET SCHEMA {{}}"
            cur.execute(_sql(statement, old, name, branch))
        return SwapResult(branch, True, sorted(kept))

    def prepare(self) -> list[SwapResult]:
        conn = self.conn
        try:
            with naming_outages(self._server, f"publish of {self._branches}"), conn.cursor() as cur:
                conn.rollback()  # start from a clean transaction
                # Queue behind other publishes of these branch schemas (held to commit);
                # sorted, so two runs publishing overlapping sets cannot deadlock.
                for _, branch, _ in sorted(self.pairs, key=lambda p: p[1]):
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (branch,))
                self.results = [self._swap_one(cur, *pair) for pair in self.pairs]
        except Exception:
            if not conn.closed:
                conn.rollback()
            self.close()
            raise
        return self.results

    def commit(self) -> list[SwapResult]:
        if self.results is None:
            raise SchemaError("Swap.commit() before prepare()")
        try:
            with (
                naming_outages(self._server, f"commit of {self._branches}"),
                self.conn.cursor() as cur,
            ):
                for _, _, old in self.pairs:
                    cur.execute(_sql("DROP SCHEMA IF EXISTS {} CASCADE", old))
                self.conn.commit()
        except Exception:
            if not self.conn.closed:
                self.conn.rollback()
            raise
        finally:
            self.close()
        return self.results

    def rollback(self) -> None:
        """Undo a prepared swap: branch schemas and run schemas are as before."""
        try:
            if not self.conn.closed:
                self.conn.rollback()
        finally:
            self.close()

    def close(self) -> None:
        if self._owns and not self.conn.closed:
            self.conn.close()


def publish(url_or_conn: str | Any, run: str, branch: str) -> SwapResult:
    """Swap run schema `run` in as branch schema `branch` in one transaction."""
    swap = Swap(url_or_conn, (run, branch))
    swap.prepare()
    return swap.commit()[0]


class PostgresPublisher:
    """Write-audit-publish participant for run schemas (`dfp.lake.wap.PublishParticipant`):
    a run's staged schemas are swapped in one transaction around the lakeFS merge."""

    system = "postgres"

    def __init__(self, url: str):
        self.url = url

    def prepare(self, staged: list[Any]) -> Swap:
        swap = Swap(self.url, *((s.staged, s.target) for s in staged))
        swap.prepare()
        return swap

    def discard(self, staged: list[Any]) -> None:
        what = f"discard of {', '.join(sorted(item.staged for item in staged))}"
        # Best effort after a run that did not publish: a leftover is an orphan for the
        # cleanup sensor, so a Postgres that is down gets a short try, not the full window.
        conn = connect(self.url, what, retries=2)
        try:
            with naming_outages(_server_of(conn), what):
                for item in staged:
                    discard(conn, item.staged)
        finally:
            conn.close()


# -- Arrow tables into a (run) schema --------------------------------------------------------
def _pg_type(arrow_type: Any) -> str:
    import pyarrow as pa

    scalar = {
        pa.string(): "text",
        pa.large_string(): "text",
        pa.int8(): "smallint",
        pa.int16(): "smallint",
        pa.int32(): "integer",
        pa.int64(): "bigint",
        pa.bool_(): "boolean",
        pa.float32(): "real",
        pa.float64(): "double precision",
    }
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _pg_type(arrow_type.value_type) + "[]"
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if arrow_type in scalar:
        return scalar[arrow_type]
    raise SchemaError(f"no Postgres column type for Arrow type {arrow_type}")


def copy_table(conn: Any, schema: str, name: str, table: Any, chunk_rows: int = 50_000) -> int:
    """(Re)create `schema.name` from a pyarrow Table with COPY (CSV; lists as array literals),
    in the connection's transaction (committed here). Returns the rows written."""
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    columns = [(f.name, _pg_type(f.type), f.nullable) for f in table.schema]
    ddl = ", ".join(
        f"{{}} {pg_type}{'' if nullable else ' NOT NULL'}" for _, pg_type, nullable in columns
    )
    with conn.cursor() as cur:
        cur.execute(_sql("DROP TABLE IF EXISTS {}.{}", schema, name))
        cur.execute(_sql(f"CREATE TABLE {{}}.{{}} ({ddl})", schema, name, *(c[0] for c in columns)))
        copy = _sql(
            "COPY {}.{} ("
            + ", ".join("{}" for _ in columns)
            + ") FROM STDIN WITH (FORMAT csv, HEADER true)",
            schema,
            name,
            *(c[0] for c in columns),
        )
        for batch in table.to_batches(max_chunksize=chunk_rows):
            arrays = []
            for field, array in zip(batch.schema, batch.columns, strict=True):
                if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
                    # '{1,2,3}' — Postgres's array literal — built by Arrow, not per row in Python.
                    text = pc.cast(array, pa.list_(pa.string()))
                    joined = pc.binary_join(text, ",")
                    array = pc.binary_join_element_wise("{", joined, "}", "")
                arrays.append(array)
            buffer = io.BytesIO()
            pacsv.write_csv(pa.RecordBatch.from_arrays(arrays, names=batch.schema.names), buffer)
            buffer.seek(0)
            cur.copy_expert(copy.as_string(conn), buffer)
    conn.commit()
    return table.num_rows

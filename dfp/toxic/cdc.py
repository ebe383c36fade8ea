"""Change data capture of the application table `app.comments` into `CommentChange` records.

Two sources give the same records:

* `KafkaChangeReader`: Debezium's Postgres connector (pgoutput) on Kafka Connect writes each
  change to the topic `<prefix>.app.comments`; the reader parses Debezium's JSON envelope.
  Position: "topic:partition:offset".
* `LogicalReplicationReader`: the embedded default without Kafka, reading a logical
  replication slot of the same publication directly (psycopg2, built-in pgoutput decoded here;
  no wal2json extension needed). Position: the change's LSN ("0/16B3748").

Both read a bounded batch *after* offsets the caller passes in and return the offsets after the
batch, committing nothing themselves: the publish records the offsets (lakeFS commit metadata),
so a failed run does not advance them and the next read redelivers the same changes. Offsets
are `{stream: next_position}` dicts of ints (Kafka: "topic:partition" → next offset to read;
logical replication: slot name → LSN of the last commit consumed).

Pure parsing (no Dagster, no I/O) plus the two thin readers; bad envelopes raise `CDCError`
naming the position and field.
"""

from __future__ import annotations

import json
import select
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from dfp.toxic.records import CommentChange

if TYPE_CHECKING:
    from dfp.lake.lakefs_client import LakeFSClient

SCHEMA = "app"
TABLE = "comments"
QUALIFIED_TABLE = f"{SCHEMA}.{TABLE}"
#: Publication both readers subscribe to (Debezium with publication.autocreate.mode=disabled).
PUBLICATION = "dfp_comments"
#: Debezium's slot (the issue's name) and the embedded reader's own slot: a slot has one reader.
DEBEZIUM_SLOT = "dfp"
EMBEDDED_SLOT = "dfp_embedded"

#: The application table. REPLICA IDENTITY FULL: a delete's (and update's) WAL record then
#: carries the whole old row, so Debezium's `before` of a delete names the text and label that
#: left, not only the key.
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {QUALIFIED_TABLE} (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    comment_text text NOT NULL,
    labels smallint NOT NULL,
    updated_at timestamptz DEFAULT now()
);
ALTER TABLE {QUALIFIED_TABLE} REPLICA IDENTITY FULL;
"""


def publication_sql(publication: str = PUBLICATION) -> str:
    """Creates the publication of `app.comments` unless it exists (Postgres has no IF NOT
    EXISTS for publications)."""
    return (
        "DO $$ BEGIN "
        f"IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{publication}') THEN "
        f"CREATE PUBLICATION {publication} FOR TABLE {QUALIFIED_TABLE}; "
        "END IF; END $$;"
    )


class CDCError(ValueError):
    pass


# -- Debezium envelopes ---------------------------------------------------------------------
_DEBEZIUM_OPS = {"c": "upsert", "r": "upsert", "u": "upsert", "d": "delete"}


def _ms_to_datetime(ms: Any, where: str) -> datetime:
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        raise CDCError(f"{where}: source.ts_ms must be a number, got {ms!r}")
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _row_values(row: Any, where: str, part: str, *, need_all: bool) -> tuple[str, Any, Any]:
    if not isinstance(row, Mapping):
        raise CDCError(f"{where}: '{part}' must be an object with the row, got {row!r}")
    if not isinstance(row.get("id"), str) or not row["id"]:
        raise CDCError(f"{where}: {part}.id must be a non-empty string, got {row.get('id')!r}")
    text, labels = row.get("comment_text"), row.get("labels")
    if need_all:
        if not isinstance(text, str):
            raise CDCError(f"{where}: {part}.comment_text must be a string, got {text!r}")
        if isinstance(labels, bool) or not isinstance(labels, int):
            raise CDCError(f"{where}: {part}.labels must be an integer, got {labels!r}")
    return row["id"], text, labels


def parse_debezium(value: bytes | str | Mapping | None, position: str) -> CommentChange | None:
    """A Debezium change event of `app.comments` (JSON converter, with or without its
    schema wrapper) → a CommentChange; None for a tombstone (the null value Debezium writes
    after a delete, for log compaction). c/r/u → upsert of `after`, d → delete of `before`."""
    where = f"change at {position}"
    if value is None:
        return None
    if isinstance(value, bytes | str):
        if not value:
            return None
        try:
            envelope = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CDCError(f"{where}: not a JSON Debezium envelope ({exc})") from None
    else:
        envelope = value
    if envelope is None:
        return None
    if isinstance(envelope, Mapping) and "payload" in envelope and "schema" in envelope:
        envelope = envelope["payload"]  # value.converter.schemas.enable=true
        if envelope is None:
            return None
    if not isinstance(envelope, Mapping):
        raise CDCError(f"{where}: the envelope must be a JSON object, got {envelope!r:.80}")
    op = envelope.get("op")
    if op not in _DEBEZIUM_OPS:
        raise CDCError(f"{where}: field 'op' must be one of c/r/u/d, got {op!r}")
    source = envelope.get("source")
    if not isinstance(source, Mapping):
        raise CDCError(f"{where}: field 'source' is missing")
    table = f"{source.get('schema')}.{source.get('table')}"
    if table != QUALIFIED_TABLE:
        raise CDCError(f"{where}: change of table {table!r}, expected {QUALIFIED_TABLE}")
    event_time = _ms_to_datetime(source.get("ts_ms"), where)
    if op == "d":
        row_id, _, _ = _row_values(envelope.get("before"), where, "before", need_all=False)
        return CommentChange("delete", row_id, None, None, event_time, position)
    row_id, text, labels = _row_values(envelope.get("after"), where, "after", need_all=True)
    return CommentChange("upsert", row_id, text, labels, event_time, position)


# -- pgoutput (logical replication protocol, version 1) --------------------------------------
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def lsn_to_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_from_text(text: str) -> int:
    high, sep, low = text.partition("/")
    if not sep:
        raise CDCError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass
class _Relation:
    schema: str
    name: str
    columns: list[str]


@dataclass
class PgOutputDecoder:
    """Decodes pgoutput messages into changes of `app.comments`, one transaction at a time.
    Relation messages (sent before a table's first change in a session) give column names;
    other tables of the publication are ignored. Text-format tuple values (pgoutput's default)."""

    relations: dict[int, _Relation] = field(default_factory=dict)
    commit_time: datetime | None = None
    pending: list[tuple[str, str, str | None, str | None, int]] = field(default_factory=list)

    def feed(self, payload: bytes, lsn: int) -> tuple[int, list[CommentChange]] | None:
        """One message; at a Commit returns (the commit's end LSN, the transaction's
        changes), else None."""
        kind = payload[:1]
        body = memoryview(payload)[1:]
        where = f"pgoutput message {kind!r} at {lsn_to_text(lsn)}"
        try:
            if kind == b"B":
                _final_lsn, ts_us, _xid = struct.unpack_from("!qqi", body)
                self.commit_time = PG_EPOCH + timedelta(microseconds=ts_us)
                self.pending = []
            elif kind == b"R":
                self._relation(body)
            elif kind in (b"I", b"U", b"D"):
                self._change(kind, body, lsn)
            elif kind == b"C":
                _flags, _commit_lsn, end_lsn, ts_us = struct.unpack_from("!bqqq", body)
                when = PG_EPOCH + timedelta(microseconds=ts_us)
                changes = [
                    CommentChange(op, row_id, text, labels_of(label, where), when, pos)  # type: ignore[arg-type]
                    for op, row_id, text, label, pos_lsn in self.pending
                    for pos in [lsn_to_text(pos_lsn)]
                ]
                self.pending = []
                return end_lsn, changes
            # Origin, Type, Truncate, Message: nothing for app.comments' rows.
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise CDCError(f"{where}: malformed ({exc})") from None
        return None

    def _relation(self, body: memoryview) -> None:
        (oid,) = struct.unpack_from("!i", body)
        pos = 4
        schema, pos = _cstring(body, pos)
        name, pos = _cstring(body, pos)
        pos += 1  # replica identity setting
        (ncols,) = struct.unpack_from("!h", body, pos)
        pos += 2
        columns = []
        for _ in range(ncols):
            pos += 1  # flags (part of the key)
            column, pos = _cstring(body, pos)
            pos += 8  # type oid, type modifier
            columns.append(column)
        self.relations[oid] = _Relation(schema, name, columns)

    def _change(self, kind: bytes, body: memoryview, lsn: int) -> None:
        (oid,) = struct.unpack_from("!i", body)
        relation = self.relations.get(oid)
        if relation is None:
            raise CDCError(f"change of relation {oid} at {lsn_to_text(lsn)} before its Relation")
        pos = 4
        new: dict[str, str | None] | None = None
        old: dict[str, str | None] | None = None
        while pos < len(body):
            marker = bytes(body[pos : pos + 1])
            pos += 1
            values, pos = _tuple(body, pos)
            row = dict(zip(relation.columns, values, strict=True))
            if marker == b"N":
                new = row
            elif marker in (b"K", b"O"):
                old = row
            else:
                raise CDCError(f"unknown tuple marker {marker!r} at {lsn_to_text(lsn)}")
        if (relation.schema, relation.name) != (SCHEMA, TABLE):
            return
        if kind == b"D":
            if old is None or not old.get("id"):
                raise CDCError(f"delete at {lsn_to_text(lsn)} without the old row's id")
            self.pending.append(("delete", old["id"], None, None, lsn))  # type: ignore[arg-type]
            return
        if new is None or not new.get("id") or new.get("comment_text") is None:
            raise CDCError(f"{kind!r} at {lsn_to_text(lsn)} lacks id/comment_text: {new!r}")
        self.pending.append(("upsert", new["id"], new["comment_text"], new.get("labels"), lsn))  # type: ignore[arg-type]


def labels_of(value: str | None, where: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise CDCError(f"{where}: column labels is not an integer: {value!r}") from None


def _cstring(body: memoryview, pos: int) -> tuple[str, int]:
    end = bytes(body[pos:]).index(b"\x00")
    return bytes(body[pos : pos + end]).decode(), pos + end + 1


def _tuple(body: memoryview, pos: int) -> tuple[list[str | None], int]:
    (ncols,) = struct.unpack_from("!h", body, pos)
    pos += 2
    values: list[str | None] = []
    for _ in range(ncols):
        kind = bytes(body[pos : pos + 1])
        pos += 1
        if kind in (b"n", b"u"):  # null; unchanged TOAST (never for REPLICA IDENTITY FULL)
            values.append(None)
        elif kind in (b"t", b"b"):
            (length,) = struct.unpack_from("!i", body, pos)
            pos += 4
            values.append(bytes(body[pos : pos + length]).decode())
            pos += length
        else:
            raise CDCError(f"unknown tuple value kind {kind!r}")
    return values, pos


# -- offsets recorded with a publish ---------------------------------------------------------
#: lakeFS commit metadata key of the CDC offsets a publish consumed up to.
OFFSETS_METADATA_KEY = "dfp.cdc.offsets"


def offsets_metadata(offsets: Mapping[str, int]) -> dict[str, str]:
    """Commit metadata recording `offsets` (stable JSON: equal offsets, equal text)."""
    return {OFFSETS_METADATA_KEY: json.dumps(dict(sorted(offsets.items())), separators=(",", ":"))}


def published_offsets(commit_metadata: Iterable[Mapping[str, str] | None]) -> dict[str, int]:
    """The offsets of the newest publish that recorded some, walking a branch's log newest
    first (commits without the key, e.g. a Kronodroid publish, are passed over); {} when none
    did (read from the beginning)."""
    for metadata in commit_metadata:
        text = (metadata or {}).get(OFFSETS_METADATA_KEY)
        if text is None:
            continue
        try:
            offsets = json.loads(text)
        except json.JSONDecodeError:
            offsets = None
        if not isinstance(offsets, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in offsets.items()
        ):
            raise CDCError(
                f"commit metadata {OFFSETS_METADATA_KEY} must be a JSON object of integer "
                f"offsets, got {text!r:.200}"
            )
        return offsets
    return {}


def ref_offsets(client: LakeFSClient, ref: str) -> dict[str, int]:
    """The offsets the newest publish reachable from `ref` recorded ({} when none did)."""
    return published_offsets(c.metadata for c in client.log(ref, amount=1000))


# -- readers --------------------------------------------------------------------------------
class ChangeReader(Protocol):
    def read_batch(
        self, after: Mapping[str, int]
    ) -> tuple[list[CommentChange], dict[str, int]]: ...


def change_reader(kafka_bootstrap: str | None, dsn: str, wait_s: float = 0.0) -> ChangeReader:
    """Debezium's topic when Kafka is configured, else the embedded logical replication.
    `wait_s`: with Kafka, how long a read with nothing new waits for the first change."""
    if kafka_bootstrap:
        return KafkaChangeReader(kafka_bootstrap, wait_s=wait_s)
    return LogicalReplicationReader(dsn)


@dataclass
class KafkaChangeReader:
    """Reads Debezium's topic of `app.comments` from given offsets, without a consumer group
    (nothing is committed to Kafka). `after` maps "topic:partition" to the next offset to
    read (Kafka's committed-offset convention; absent: the partition's beginning). A batch
    ends at the partitions' end offsets as of the call, at `max_records`, or at `timeout_s`."""

    bootstrap_servers: str
    topic: str = f"dfp.{QUALIFIED_TABLE}"
    max_records: int = 10_000
    timeout_s: float = 30.0
    #: When nothing follows `after`, wait up to this long for a change (a long poll: the
    #: sensor sees a change within a fraction of a second instead of at its next tick).
    wait_s: float = 0.0
    wait_poll_s: float = 0.2

    def read_batch(self, after: Mapping[str, int]) -> tuple[list[CommentChange], dict[str, int]]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=int(self.timeout_s * 1000),
        )
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            next_offsets = {key: int(value) for key, value in after.items()}
            if not tps:
                return [], next_offsets
            consumer.assign(tps)
            beginning = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            for tp in tps:
                start = next_offsets.get(f"{tp.topic}:{tp.partition}", beginning[tp])
                consumer.seek(tp, max(start, beginning[tp]))
            changes: list[CommentChange] = []
            todo = {tp for tp in tps if consumer.position(tp) < end[tp]}
            waited_until = time.monotonic() + self.wait_s
            while not todo and time.monotonic() < waited_until:
                time.sleep(self.wait_poll_s)
                end = consumer.end_offsets(tps)
                todo = {tp for tp in tps if consumer.position(tp) < end[tp]}
            deadline = time.monotonic() + self.timeout_s
            while todo and len(changes) < self.max_records and time.monotonic() < deadline:
                polled = consumer.poll(timeout_ms=500, max_records=self.max_records)
                for tp, records in polled.items():
                    for record in records:
                        if record.offset >= end[tp] or len(changes) >= self.max_records:
                            break
                        position = f"{tp.topic}:{tp.partition}:{record.offset}"
                        change = parse_debezium(record.value, position)
                        if change is not None:
                            changes.append(change)
                        next_offsets[f"{tp.topic}:{tp.partition}"] = record.offset + 1
                for tp in list(todo):
                    if next_offsets.get(f"{tp.topic}:{tp.partition}", beginning[tp]) >= end[tp]:
                        todo.discard(tp)
            return changes, next_offsets
        finally:
            consumer.close(autocommit=False)


@dataclass
class LogicalReplicationReader:
    """Reads `app.comments`' changes from a logical replication slot (pgoutput) directly.

    `after` maps the slot name to the end LSN of the last transaction consumed; transactions
    up to it are skipped (the slot replays from its confirmed position, which only
    `acknowledge` advances, after a publish). A batch ends once the server's WAL position as of
    the call is reached, at whole transactions past `max_changes`, or at `timeout_s`."""

    dsn: str
    slot: str = EMBEDDED_SLOT
    publication: str = PUBLICATION
    max_changes: int = 10_000
    timeout_s: float = 30.0

    def ensure_slot(self) -> None:
        import psycopg2

        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
            if cur.fetchone() is None:
                cur.execute(
                    "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,)
                )
        conn.close()

    def _connect(self):
        import psycopg2
        import psycopg2.extras

        return psycopg2.connect(
            self.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
        )

    def read_batch(self, after: Mapping[str, int]) -> tuple[list[CommentChange], dict[str, int]]:
        import psycopg2

        self.ensure_slot()
        with psycopg2.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()")
            target = lsn_from_text(cur.fetchone()[0])
        conn.close()
        done = int(after.get(self.slot, 0))
        next_offsets = {key: int(value) for key, value in after.items()}
        changes: list[CommentChange] = []
        for end_lsn, txn in self._transactions(target):
            if end_lsn <= done:
                continue  # consumed and published already: a redelivery changes nothing
            changes.extend(txn)
            next_offsets[self.slot] = end_lsn
            if len(changes) >= self.max_changes:
                break
        return changes, next_offsets

    def _transactions(self, target: int) -> Iterator[tuple[int, list[CommentChange]]]:
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.start_replication(
                slot_name=self.slot,
                decode=False,
                options={"proto_version": "1", "publication_names": self.publication},
            )
            decoder = PgOutputDecoder()
            deadline = time.monotonic() + self.timeout_s
            in_txn = False
            asked_at = 0.0
            while time.monotonic() < deadline:
                msg = cur.read_message()
                if msg is not None:
                    kind = msg.payload[:1]
                    in_txn = kind != b"C" and (in_txn or kind == b"B")
                    result = decoder.feed(msg.payload, msg.data_start)
                    if result is not None:
                        yield result
                    continue
                # Caught up with the WAL written before the call (keepalives move wal_end).
                if not in_txn and cur.wal_end >= target:
                    return
                if time.monotonic() - asked_at > 1.0:
                    cur.send_feedback(reply=True)  # a keepalive now, no flush position moved
                    asked_at = time.monotonic()
                select.select([cur], [], [], 0.5)
        finally:
            conn.close()

    def acknowledge(self, lsn: int) -> None:
        """Lets the slot free WAL up to `lsn` (call after the publish recorded it)."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.start_replication(
                slot_name=self.slot,
                decode=False,
                start_lsn=lsn,
                options={"proto_version": "1", "publication_names": self.publication},
            )
            cur.send_feedback(flush_lsn=lsn, force=True)
        finally:
            conn.close()

"""Parsing of Debezium envelopes and pgoutput messages into CommentChange records."""

import json
import struct
from datetime import UTC, datetime, timedelta

import pytest

from dfp.stack.services import (
    connect_worker_properties,
    debezium_connector_properties,
    kafka_cluster_id,
    kafka_server_properties,
)
from dfp.toxic.cdc import (
    DDL,
    PG_EPOCH,
    CDCError,
    PgOutputDecoder,
    lsn_from_text,
    lsn_to_text,
    parse_debezium,
    publication_sql,
)
from dfp.toxic.records import CommentChange

ID = "0b9c2f0e-8d1e-4f5a-9c3b-2a1d0e9f8c7b"
TS_MS = 1_764_670_000_123
WHEN = datetime.fromtimestamp(TS_MS / 1000, tz=UTC)


def envelope(op, before=None, after=None, table="comments", ts_ms=TS_MS):
    return {
        "before": before,
        "after": after,
        "source": {"schema": "app", "table": table, "ts_ms": ts_ms, "lsn": 123, "db": "dfp_app"},
        "op": op,
        "ts_ms": ts_ms,
    }


ROW = {"id": ID, "comment_text": "you are nice", "labels": 0, "updated_at": None}


@pytest.mark.parametrize("op", ["c", "r", "u"])
def test_create_snapshot_read_and_update_are_upserts(op):
    before = {**ROW, "labels": 1} if op == "u" else None
    value = json.dumps(envelope(op, before=before, after=ROW)).encode()
    assert parse_debezium(value, "t:0:7") == CommentChange(
        "upsert", ID, "you are nice", 0, WHEN, "t:0:7"
    )


def test_delete_takes_the_key_from_before():
    value = json.dumps(envelope("d", before=ROW)).encode()
    assert parse_debezium(value, "t:0:8") == CommentChange("delete", ID, None, None, WHEN, "t:0:8")


def test_delete_with_key_only_before_image():
    """REPLICA IDENTITY DEFAULT gives only the key: still a valid delete."""
    value = envelope("d", before={"id": ID, "comment_text": None, "labels": None})
    assert parse_debezium(value, "p").op == "delete"


@pytest.mark.parametrize("value", [None, b"", "null"])
def test_tombstones_are_skipped(value):
    assert parse_debezium(value, "t:0:9") is None


def test_schema_wrapped_envelope():
    """value.converter.schemas.enable=true wraps the envelope with its schema."""
    wrapped = {"schema": {"type": "struct"}, "payload": envelope("c", after=ROW)}
    assert parse_debezium(json.dumps(wrapped), "p").comment_text == "you are nice"
    assert parse_debezium(json.dumps({"schema": {}, "payload": None}), "p") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\xff{not json", r"change at t:0:3: not a JSON Debezium envelope"),
        (b"[1, 2]", r"change at t:0:3: the envelope must be a JSON object"),
        (envelope("x", after=ROW), r"field 'op' must be one of c/r/u/d, got 'x'"),
        ({**envelope("c", after=ROW), "source": None}, r"field 'source' is missing"),
        (envelope("c", after=ROW, table="users"), r"change of table 'app.users'"),
        (envelope("c", after=None), r"'after' must be an object"),
        (envelope("c", after={**ROW, "id": ""}), r"after.id must be a non-empty string"),
        (envelope("c", after={**ROW, "labels": "1"}), r"after.labels must be an integer"),
        (envelope("c", after={**ROW, "labels": True}), r"after.labels must be an integer"),
        (envelope("u", after={**ROW, "comment_text": None}), r"after.comment_text must be"),
        (envelope("d", before=None), r"'before' must be an object"),
        (envelope("c", after=ROW, ts_ms="soon"), r"source.ts_ms must be a number"),
    ],
)
def test_bad_envelopes_name_position_and_field(value, message):
    if isinstance(value, dict):
        value = json.dumps(value).encode()
    with pytest.raises(CDCError, match=message):
        parse_debezium(value, "t:0:3")


# -- pgoutput ------------------------------------------------------------------------------
def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def relation(oid: int, schema: str, name: str, columns: list[str]) -> bytes:
    body = struct.pack("!i", oid) + cstr(schema) + cstr(name) + b"f"
    body += struct.pack("!h", len(columns))
    for i, column in enumerate(columns):
        body += bytes([1 if i == 0 else 0]) + cstr(column) + struct.pack("!ii", 25, -1)
    return b"R" + body


def tuple_data(values: list[str | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        else:
            raw = value.encode()
            out += b"t" + struct.pack("!i", len(raw)) + raw
    return out


def pg_ts(when: datetime) -> int:
    return (when - PG_EPOCH) // timedelta(microseconds=1)


COMMIT_TIME = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)
COLUMNS = ["id", "comment_text", "labels", "updated_at"]


def transaction(*changes: bytes, end_lsn: int = 0x2000) -> list[bytes]:
    begin = b"B" + struct.pack("!qqi", 0x1F00, pg_ts(COMMIT_TIME), 77)
    commit = b"C" + struct.pack("!bqqq", 0, 0x1F00, end_lsn, pg_ts(COMMIT_TIME))
    return [begin, *changes, commit]


def decode(messages: list[bytes], decoder=None):
    decoder = decoder or PgOutputDecoder()
    results = [decoder.feed(m, 0x1000 + i * 0x10) for i, m in enumerate(messages)]
    return [r for r in results if r is not None]


def test_pgoutput_insert_update_delete():
    row = [ID, "hello", "1", None]
    messages = [
        relation(16400, "app", "comments", COLUMNS),
        *transaction(
            b"I" + struct.pack("!i", 16400) + b"N" + tuple_data(row),
            b"U"
            + struct.pack("!i", 16400)
            + b"O"
            + tuple_data(row)
            + b"N"
            + tuple_data([ID, "hello!", "0", None]),
            b"D" + struct.pack("!i", 16400) + b"O" + tuple_data([ID, "hello!", "0", None]),
        ),
    ]
    [(end_lsn, changes)] = decode(messages)
    assert end_lsn == 0x2000
    assert changes == [
        CommentChange("upsert", ID, "hello", 1, COMMIT_TIME, lsn_to_text(0x1020)),
        CommentChange("upsert", ID, "hello!", 0, COMMIT_TIME, lsn_to_text(0x1030)),
        CommentChange("delete", ID, None, None, COMMIT_TIME, lsn_to_text(0x1040)),
    ]


def test_pgoutput_ignores_other_tables_and_key_only_deletes_work():
    messages = [
        relation(1, "app", "other", ["id", "x"]),
        relation(2, "app", "comments", COLUMNS),
        *transaction(
            b"I" + struct.pack("!i", 1) + b"N" + tuple_data(["7", "y"]),
            b"D" + struct.pack("!i", 2) + b"K" + tuple_data([ID, None, None, None]),
        ),
    ]
    [(_, changes)] = decode(messages)
    assert [(c.op, c.id) for c in changes] == [("delete", ID)]


def test_pgoutput_errors_are_clear():
    with pytest.raises(CDCError, match="before its Relation"):
        decode(transaction(b"I" + struct.pack("!i", 9) + b"N" + tuple_data(["a"])))
    with pytest.raises(CDCError, match="malformed"):
        decode([b"B\x00\x01"])
    bad_label = [
        relation(3, "app", "comments", COLUMNS),
        *transaction(b"I" + struct.pack("!i", 3) + b"N" + tuple_data([ID, "t", "x", None])),
    ]
    with pytest.raises(CDCError, match="column labels is not an integer: 'x'"):
        decode(bad_label)


def test_lsn_text_round_trip():
    assert lsn_to_text(0x16B3748) == "0/16B3748"
    assert lsn_to_text((3 << 32) + 0xA) == "3/A"
    assert lsn_from_text("3/A") == (3 << 32) + 0xA
    with pytest.raises(CDCError, match="not an LSN"):
        lsn_from_text("123")


# -- DDL and service configuration ---------------------------------------------------------
def test_ddl_and_publication():
    assert "REPLICA IDENTITY FULL" in DDL
    assert "gen_random_uuid()" in DDL
    assert "CREATE PUBLICATION dfp_comments FOR TABLE app.comments" in publication_sql()


def test_service_properties(tmp_path):
    server = kafka_server_properties(9092, 9094, tmp_path)
    assert "process.roles=broker,controller\n" in server
    assert "controller.quorum.voters=1@127.0.0.1:9094\n" in server
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9094\n" in server
    worker = connect_worker_properties("127.0.0.1:9092", 8083, tmp_path / "o.dat")
    assert "value.converter.schemas.enable=false\n" in worker
    assert "listeners=http://127.0.0.1:8083\n" in worker
    connector = debezium_connector_properties(5433, "dfp_app", "dfp", "pw")
    for line in (
        "plugin.name=pgoutput",
        "slot.name=dfp",
        "publication.name=dfp_comments",
        "table.include.list=app.comments",
        "topic.prefix=dfp",
    ):
        assert line + "\n" in connector
    with pytest.raises(Exception, match="newlines"):
        debezium_connector_properties(5433, "dfp_app", "dfp", "a\nb")


def test_kafka_cluster_id_never_reads_as_an_option(monkeypatch):
    import uuid

    # 0xf8 encodes to a leading "-" in base64url: `kafka-storage format -t -…` failed on it.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    cluster_id = kafka_cluster_id()
    assert cluster_id == "AQAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22


# -- offsets in lakeFS commit metadata -----------------------------------------------------
def test_offsets_round_trip_through_commit_metadata():
    from dfp.toxic.cdc import OFFSETS_METADATA_KEY, offsets_metadata, published_offsets

    recorded = offsets_metadata({"dfp.app.comments:1": 7, "dfp.app.comments:0": 12})
    assert recorded == {OFFSETS_METADATA_KEY: '{"dfp.app.comments:0":12,"dfp.app.comments:1":7}'}
    older = offsets_metadata({"dfp.app.comments:0": 3})
    log = [{"dfp.run_id": "x"}, None, recorded, older]  # newest first
    assert published_offsets(log) == {"dfp.app.comments:0": 12, "dfp.app.comments:1": 7}
    assert published_offsets([{}, None]) == {}
    with pytest.raises(CDCError, match="must be a JSON object of integer offsets"):
        published_offsets([{OFFSETS_METADATA_KEY: '{"t:0": "12"}'}])
    with pytest.raises(CDCError, match="must be a JSON object"):
        published_offsets([{OFFSETS_METADATA_KEY: "not json"}])


# -- the sensor's wait for the run in flight ------------------------------------------------
def _cdc_sensor_tick(instance, monkeypatch):
    import dagster as dg

    from dfp_assets.toxic.cdc_sensor import comments_cdc_sensor
    from dfp_resources.lakefs import LakeFSResource

    monkeypatch.setenv("DFP_CDC_DSN", "postgresql://app@127.0.0.1:1/dfp_app")
    lakefs = LakeFSResource(endpoint="http://127.0.0.1:1", access_key_id="k", secret_access_key="s")
    context = dg.build_sensor_context(instance=instance, resources={"lakefs": lakefs})
    return comments_cdc_sensor(context)


def _in_flight_run(instance):
    import dagster as dg

    from dfp_assets.toxic.cdc_sensor import SENSOR_NAME, TRIGGER_TAG

    @dg.op
    def noop():
        pass

    @dg.job(name="apply_comment_changes")
    def apply_comment_changes():
        noop()

    run = instance.create_run_for_job(
        apply_comment_changes,
        tags={TRIGGER_TAG: SENSOR_NAME},
        status=dg.DagsterRunStatus.STARTED,
    )
    return run


def test_the_sensor_waits_within_its_tick_for_the_run_in_flight_then_skips(monkeypatch):
    import time

    import dagster as dg

    monkeypatch.setattr("dfp_assets.toxic.cdc_sensor.LONG_POLL_S", 0.6)
    with dg.instance_for_test() as instance:
        run = _in_flight_run(instance)
        began = time.monotonic()
        result = _cdc_sensor_tick(instance, monkeypatch)
        assert time.monotonic() - began >= 0.6
        assert isinstance(result, dg.SkipReason)
        assert run.run_id in result.skip_message


def test_the_sensor_goes_on_reading_once_the_run_in_flight_ends(monkeypatch):
    import threading

    import dagster as dg

    monkeypatch.setattr("dfp_assets.toxic.cdc_sensor.LONG_POLL_S", 60.0)
    monkeypatch.setattr("dfp.lake.lakefs_client.CONNECT_RETRIES", 1)  # fail fast
    with dg.instance_for_test() as instance:
        run = _in_flight_run(instance)
        ends = threading.Timer(0.5, instance.report_run_failed, (run,))
        ends.start()
        try:
            # Past the wait it reads the published offsets from lakeFS, unreachable here.
            with pytest.raises(Exception, match="lakeFS at http://127.0.0.1:1 is unreachable"):
                _cdc_sensor_tick(instance, monkeypatch)
        finally:
            ends.join()

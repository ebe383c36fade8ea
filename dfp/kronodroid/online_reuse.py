"""Reuse a Feast online store: fill one branch's project by copying another project's rows.

Materializing the full offline table takes ~33 s; when another branch's project holds the
rows of an identical offline table (same `dfp.kronodroid.features.offline_digest`), copying them is
much cheaper. Each project carries a marker (`OnlineState`) saying what its rows are, so a
caller can find such a source and tell whether it changed during the copy:

* SQLite: table `dfp_online_state` (one row, JSON) in the project's own database file;
* Redis: key `dfp:online_state:<project>` (JSON).

The protocol (the caller's): `clear_state(target)` before writing any row, then materialize
or `copy_online`, then `write_state(target, ...)`; a target without a marker is unknown.
Pure logic, no Dagster.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, ValidationError

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView
    from redis import Redis

STATE_TABLE = "dfp_online_state"
STATE_KEY_PREFIX = "dfp:online_state:"
#: Entities per Redis pipeline (DUMP, then RESTORE): ~2 KB each at Kronodroid size.
REDIS_BATCH = 2_000


class OnlineState(BaseModel):
    """What a project's online rows are: the offline table and window they were written from."""

    project: str
    offline_digest: str
    window_start: AwareDatetime
    window_end: AwareDatetime
    complete: bool
    rows: int
    run_id: str
    nonce: str
    written_at: AwareDatetime


# -- where a store lives --------------------------------------------------------------------
def _kind(store: FeatureStore) -> str:
    kind = store.config.online_store.type
    if kind not in ("sqlite", "redis"):
        raise ValueError(f"online store type {kind!r} of {store.project} is not sqlite or redis")
    return kind


def _sqlite_path(store: FeatureStore) -> Path:
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    return Path(SqliteOnlineStore._get_db_path(store.config))


@contextlib.contextmanager
def _sqlite(path: Path, mode: str) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode (transactions are explicit); `mode` ro/rw/rwc."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True)
    conn.isolation_level = None
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def _redis(store: FeatureStore) -> Iterator[Redis]:
    """A client built by Feast's own RedisOnlineStore from the store's connection string."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    client = RedisOnlineStore()._get_client(store.config.online_store)
    try:
        yield client
    finally:
        client.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the marker -----------------------------------------------------------------------------
def read_state(store: FeatureStore) -> OnlineState | None:
    """The marker of `store.project`; None if absent or unreadable (then the rows are unknown)."""
    if _kind(store) == "sqlite":
        path = _sqlite_path(store)
        if not path.exists():
            return None
        try:
            with _sqlite(path, "ro") as conn:
                row = conn.execute(f"SELECT state FROM {STATE_TABLE}").fetchone()
        except sqlite3.OperationalError:  # no marker table (yet)
            return None
        raw = row[0] if row else None
    else:
        with _redis(store) as client:
            raw = client.get(STATE_KEY_PREFIX + store.project)
    if raw is None:
        return None
    try:
        state = OnlineState.model_validate_json(raw)
    except ValidationError:
        return None
    return state if state.project == store.project else None


def clear_state(store: FeatureStore) -> None:
    """Remove the marker: call it before writing any row, so a failed write leaves none."""
    if _kind(store) == "sqlite":
        path = _sqlite_path(store)
        if path.exists():
            with _sqlite(path, "rw") as conn:
                conn.execute(f"DROP TABLE IF EXISTS {STATE_TABLE}")
    else:
        with _redis(store) as client:
            client.delete(STATE_KEY_PREFIX + store.project)


def write_state(store: FeatureStore, state: OnlineState) -> None:
    """Set the marker of `store.project` (raises ValueError if `state` is another project's)."""
    if state.project != store.project:
        raise ValueError(f"state of project {state.project} given for {store.project}")
    raw = state.model_dump_json()
    if _kind(store) == "sqlite":
        path = _sqlite_path(store)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _sqlite(path, "rwc") as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)"
            )
            conn.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} (id, state) VALUES (1, ?)", (raw,))
    else:
        with _redis(store) as client:
            client.set(STATE_KEY_PREFIX + store.project, raw)


# -- copying rows ---------------------------------------------------------------------------
def _join_keys(views: list[FeatureView]) -> dict[str, Any]:
    """The join keys (name -> Feast ValueType) as `write_to_online_store` builds entity keys
    (passthrough provider: `entity_columns` with `dtype.to_value_type()`). Every view must
    have the same ones: a Redis hash holds all views of one entity."""
    found = {tuple((c.name, c.dtype.to_value_type()) for c in v.entity_columns) for v in views}
    if len(found) != 1:
        raise ValueError(f"the feature views do not share one set of join keys: {sorted(found)}")
    return dict(found.pop())


def _entity_keys(entities: pa.Table, join_keys: dict[str, Any]) -> list[Any]:
    """One EntityKeyProto per distinct row of `entities`, built by Feast's own helpers."""
    from feast.utils import _build_entity_keys, _columns_to_proto_values

    missing = [k for k in join_keys if k not in entities.column_names]
    if missing:
        raise ValueError(f"entities lack join key column(s) {missing}")
    table = entities.select(list(join_keys)).group_by(list(join_keys)).aggregate([])
    values = _columns_to_proto_values(table, list(join_keys.items()))
    return _build_entity_keys(table.num_rows, join_keys, values)


def _example(key: Any) -> dict[str, Any]:
    from feast.type_map import feast_value_type_to_python_type

    return {
        k: feast_value_type_to_python_type(v)
        for k, v in zip(key.join_keys, key.entity_values, strict=True)
    }


def copy_online(source: FeatureStore, target: FeatureStore, entities: pa.Table) -> int:
    """Copy the online rows of `entities` (a table with the join keys, e.g. sha256 and
    capture of the offline table) from `source.project` to `target.project`, for every
    feature view of `target`. Returns the number of distinct entities copied (= Redis keys
    restored = entity keys per SQLite table). Raises ValueError, before writing anything,
    if the source lacks any of them (it must be complete), on another store kind or Redis,
    or if it is the same project.

    * SQLite: in one transaction, each of the target's tables is emptied and refilled with
      the source rows of `entities`: afterwards the target serves exactly those.
    * Redis: each entity's hash (all views of the project) is DUMPed from the source key and
      RESTOREd over the target key; target keys of other entities are left untouched (as a
      materialization leaves them), and no keyspace scan is made.
    """
    kind = _kind(source)
    if _kind(target) != kind:
        raise ValueError(
            f"cannot copy between online stores of different kinds: {source.project} "
            f"({kind}) -> {target.project} ({_kind(target)})"
        )
    if source.project == target.project:
        raise ValueError(f"source and target are the same project {source.project}")
    if kind == "redis":
        _check_same_redis(source, target)
    views = target.list_feature_views()
    if not views:
        raise ValueError(f"target project {target.project} has no feature views (apply first)")
    keys = _entity_keys(entities, _join_keys(views))
    if kind == "sqlite":
        _copy_sqlite(source, target, views, keys)
    else:
        _copy_redis(source, target, views, keys)
    return len(keys)


def _copy_sqlite(
    source: FeatureStore, target: FeatureStore, views: list[FeatureView], keys: list[Any]
) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.sqlite import _table_id

    version = target.config.entity_key_serialization_version
    serialized = [(serialize_entity_key(k, version),) for k in keys]
    source_path, target_path = _sqlite_path(source), _sqlite_path(target)
    if not source_path.exists():
        raise ValueError(f"no SQLite online store for {source.project} at {source_path}")
    if not target_path.exists():
        raise ValueError(f"no SQLite online store for {target.project} at {target_path}")
    with _sqlite(target_path, "rw") as conn:
        conn.execute("ATTACH DATABASE ? AS src", (f"{source_path.resolve().as_uri()}?mode=ro",))
        conn.execute("CREATE TEMP TABLE dfp_keys (key BLOB PRIMARY KEY)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO temp.dfp_keys VALUES (?)", serialized)
            for view in views:
                names = [
                    _table_id(
                        p.project, view, p.config.registry.enable_online_feature_view_versioning
                    )
                    for p in (source, target)
                ]
                _copy_table(conn, *names)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _copy_table(conn: sqlite3.Connection, source_table: str, target_table: str) -> None:
    """Replace `target_table`'s rows by those of `source_table` (attached as src) whose
    entity key is in temp.dfp_keys, after checking the source has every key."""
    src, dst = f"src.{_quote(source_table)}", f"main.{_quote(target_table)}"
    columns = {
        db: [r[1] for r in conn.execute(f"PRAGMA {db}.table_info({_quote(t)})")]
        for db, t in (("src", source_table), ("main", target_table))
    }
    if not columns["src"]:
        raise ValueError(f"source SQLite table {source_table} does not exist")
    if not columns["main"]:
        raise ValueError(f"target SQLite table {target_table} does not exist (apply first)")
    absent = conn.execute(
        "SELECT COUNT(*), MIN(k.key) FROM temp.dfp_keys k "
        f"WHERE NOT EXISTS (SELECT 1 FROM {src} s WHERE s.entity_key = k.key)"
    ).fetchone()
    if absent[0]:
        from feast.infra.key_encoding_utils import deserialize_entity_key

        raise ValueError(
            f"source table {source_table} lacks {absent[0]} of the entities, "
            f"e.g. {_example(deserialize_entity_key(absent[1]))}"
        )
    shared = ", ".join(_quote(c) for c in columns["main"] if c in set(columns["src"]))
    conn.execute(f"DELETE FROM {dst}")
    conn.execute(
        f"INSERT INTO {dst} ({shared}) SELECT {shared} FROM {src} "
        "WHERE entity_key IN (SELECT key FROM temp.dfp_keys)"
    )


def _check_same_redis(source: FeatureStore, target: FeatureStore) -> None:
    """DUMP/RESTORE stays within one server and db: both must use the same connection."""
    configs = (source.config.online_store, target.config.online_store)
    if len({(c.connection_string, c.redis_type) for c in configs}) > 1:
        hosts = [c.connection_string.split(",")[0] for c in configs]  # no password shown
        raise ValueError(
            f"{source.project} (Redis {hosts[0]}) and {target.project} (Redis {hosts[1]}) "
            "use different Redis connections (connection_string / redis_type): copy needs one"
        )


def _copy_redis(
    source: FeatureStore, target: FeatureStore, views: list[FeatureView], keys: list[Any]
) -> None:
    from feast.infra.online_stores.helpers import _redis_key
    from feast.infra.online_stores.redis import _versioned_fv_name

    target_config = target.config.online_store
    known = {v.name for v in source.list_feature_views()}
    lacking = [v.name for v in views if v.name not in known]
    if lacking:
        raise ValueError(f"source project {source.project} has no feature view(s) {lacking}")
    stamps = [f"_ts:{_versioned_fv_name(v, source.config)}" for v in views]
    ttl_ms = (target_config.key_ttl_seconds or 0) * 1000
    pairs = [
        (
            _redis_key(source.project, k, source.config.entity_key_serialization_version),
            _redis_key(target.project, k, target.config.entity_key_serialization_version),
        )
        for k in keys
    ]
    with _redis(target) as client:
        # Check first that every source key holds every view (the event-time field Feast
        # writes per view), so an incomplete source writes nothing.
        absent: list[int] = []
        for start in range(0, len(pairs), REDIS_BATCH):
            with client.pipeline(transaction=False) as pipe:
                for source_key, _ in pairs[start : start + REDIS_BATCH]:
                    pipe.hmget(source_key, stamps)  # type: ignore[arg-type]  # bytes keys
                found = pipe.execute()
            absent += [start + i for i, got in enumerate(found) if None in got]
        if absent:
            raise ValueError(
                f"source project {source.project} lacks {len(absent)} of {len(pairs)} "
                f"entities (or some of their views) in Redis, e.g. {_example(keys[absent[0]])}"
            )
        for start in range(0, len(pairs), REDIS_BATCH):
            batch = pairs[start : start + REDIS_BATCH]
            with client.pipeline(transaction=False) as pipe:
                for source_key, _ in batch:
                    pipe.dump(source_key)
                dumps = pipe.execute()
            vanished = sum(d is None for d in dumps)
            if vanished:
                raise ValueError(f"{vanished} source keys of {source.project} vanished mid-copy")
            with client.pipeline(transaction=False) as pipe:
                for (_, target_key), data in zip(batch, dumps, strict=True):
                    pipe.restore(target_key, ttl_ms, data, replace=True)
                pipe.execute()

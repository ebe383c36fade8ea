"""The Feast layer's pure logic: feature groups, the mart -> Feast table conversion, project
names, settings and the definitions (no services)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import SecretStr, ValidationError

from dfp.kronodroid import features
from dfp.kronodroid.schema import sql_feature_columns

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def small_mart(
    n: int = 12, *, seed: int = 0, offset: int = 0, null_every: int = 4, scale: int = 1
) -> pa.Table:
    """A hand-built `marts.mart_app_features`: app i has a real-device row and, for even i,
    an emulator row too; every `null_every`-th row has a null event_date and nulls in the
    nullable static columns. `scale` multiplies the feature values (to tell versions apart)."""
    rng = np.random.default_rng(seed)
    sha, capture = [], []
    for i in range(n):
        sha.append(f"{i + offset:064x}")
        capture.append("real_device")
        if i % 2 == 0:
            sha.append(f"{i + offset:064x}")
            capture.append("emulator")
    rows = len(sha)
    nulls = np.arange(rows) % null_every == 0
    columns: dict[str, pa.Array] = {
        "app_capture_id": pa.array([f"{s}:{c}" for s, c in zip(sha, capture, strict=True)]),
        "sha256": pa.array(sha),
        "capture": pa.array(capture),
        "event_date": pa.array(
            [None if nulls[i] else date(2012, 1, 1 + i % 28) for i in range(rows)], pa.date32()
        ),
        "label": pa.array(rng.integers(0, 2, rows), pa.int64()),
    }
    nullable = set(features.FEATURE_GROUPS["static_metadata"][:3])
    for column in sql_feature_columns():
        values = rng.integers(0, 1000, rows) * scale
        mask = nulls if column in nullable else None
        columns[column] = pa.array(values, pa.int64(), mask=mask)
    return pa.table(columns)


# -- groups ---------------------------------------------------------------------------------
def test_groups_cover_every_feature_column_exactly_once_in_schema_order():
    groups = features.FEATURE_GROUPS
    assert list(groups) == ["syscalls", "permissions", "static_metadata"]
    flat = [c for columns in groups.values() for c in columns]
    assert sorted(flat) == sorted(sql_feature_columns())
    assert len(flat) == len(set(flat)) == 476
    order = {c: i for i, c in enumerate(sql_feature_columns())}
    for columns in groups.values():
        assert [order[c] for c in columns] == sorted(order[c] for c in columns)
    assert features.model_feature_order() == tuple(flat)
    assert [len(c) for c in groups.values()] == [289, 173, 14]
    assert groups["syscalls"][-1] == "nr_syscalls"
    assert "REBOOT_permission" in groups["permissions"] and "reboot" in groups["syscalls"]
    assert groups["permissions"][-1] == "total_perm"


# -- the Feast table ------------------------------------------------------------------------
def test_mart_to_feast_table_values_nulls_dates_and_order():
    mart = small_mart()
    table = features.mart_to_feast_table(mart, created_at=CREATED)
    assert table.schema == features.FEAST_SCHEMA
    assert table.num_rows == mart.num_rows
    assert table.column("sha256").to_pylist() == mart.column("sha256").to_pylist()
    assert table.column("capture").to_pylist() == mart.column("capture").to_pylist()
    assert table.column("label").to_pylist() == mart.column("label").to_pylist()
    assert set(table.column("created_timestamp").to_pylist()) == {CREATED}

    stamps = table.column("event_timestamp").to_pylist()
    for stamp, day in zip(stamps, mart.column("event_date").to_pylist(), strict=True):
        if day is None:
            assert stamp == features.NULL_EVENT_TIMESTAMP == datetime(1970, 1, 1, tzinfo=UTC)
        else:
            assert stamp == datetime(day.year, day.month, day.day, tzinfo=UTC)

    mart_rows = mart.to_pylist()
    for i, row in enumerate(mart_rows):
        for group, columns in features.FEATURE_GROUPS.items():
            vector = table.column(group)[i].values.to_numpy()
            assert vector.dtype == np.float32 and len(vector) == len(columns)
            expected = np.array([row[c] if row[c] is not None else 0 for c in columns], np.float32)
            np.testing.assert_array_equal(vector, expected)
    # nulls became 0 (row 0 has nulls in the nullable static columns)
    first_static = table.column("static_metadata")[0].values.to_numpy()
    assert mart_rows[0][features.FEATURE_GROUPS["static_metadata"][0]] is None
    assert first_static[0] == 0.0

    matrix = features.feature_matrix(table.select(list(features.FEATURE_GROUPS)).to_pydict())
    assert matrix.shape == (mart.num_rows, 476) and matrix.dtype == np.float32
    expected_first = [mart_rows[1][c] or 0 for c in features.model_feature_order()]
    np.testing.assert_array_equal(matrix[1], np.array(expected_first, np.float32))


def test_timestamp_event_dates_are_accepted():
    mart = small_mart(3).slice(0, 3)
    stamps = pa.array([datetime(2015, 5, 6, 7, 8), None, datetime(2016, 1, 1)], pa.timestamp("ms"))
    mart = mart.set_column(mart.schema.get_field_index("event_date"), "event_date", stamps)
    table = features.mart_to_feast_table(mart, created_at=CREATED)
    assert table.column("event_timestamp").to_pylist() == [
        datetime(2015, 5, 6, 7, 8, tzinfo=UTC),
        features.NULL_EVENT_TIMESTAMP,
        datetime(2016, 1, 1, tzinfo=UTC),
    ]


def test_missing_mart_column_is_named():
    mart = small_mart(3)
    broken = mart.drop(["REBOOT_permission"])
    with pytest.raises(features.FeatureDataError, match="REBOOT_permission"):
        features.mart_to_feast_table(broken)
    with pytest.raises(features.FeatureDataError, match="event_date"):
        features.mart_to_feast_table(mart.drop(["event_date"]))


def test_bad_keys_and_types_are_refused():
    mart = small_mart(3)
    duplicated = pa.concat_tables([mart, mart.slice(0, 1)])
    with pytest.raises(features.FeatureDataError, match="1 duplicate"):
        features.mart_to_feast_table(duplicated)
    index = mart.schema.get_field_index("capture")
    odd = mart.set_column(index, "capture", pa.array(["phone"] * mart.num_rows))
    with pytest.raises(features.FeatureDataError, match="phone"):
        features.mart_to_feast_table(odd)
    index = mart.schema.get_field_index("nr_syscalls")
    text = mart.set_column(index, "nr_syscalls", pa.array(["1"] * mart.num_rows))
    with pytest.raises(features.FeatureDataError, match="nr_syscalls"):
        features.mart_to_feast_table(text)
    with pytest.raises(features.FeatureDataError, match="timezone"):
        features.mart_to_feast_table(mart, created_at=datetime(2026, 1, 1))


def test_feature_matrix_refuses_unknown_entities():
    with pytest.raises(features.FeatureDataError, match="syscalls"):
        features.feature_matrix({"syscalls": [None], "permissions": [[0.0]], "static": [[0]]})


# -- projects and settings ------------------------------------------------------------------
def test_project_names_are_valid_and_distinct_per_branch():
    from feast.repo_operations import is_valid_name

    branches = ["main", "exp-1", "exp_1", "exp.1", "EXP-1", "exp--1", "a" * 200]
    names = [features.branch_project("kronodroid", b) for b in branches]
    assert len(set(names)) == len(names)
    assert names[0] == features.branch_project("kronodroid", "main")  # deterministic
    assert features.branch_project("other", "main") != names[0]
    for name in names:
        assert is_valid_name(name) and name[0].isalpha() and len(name) <= 70, name
        assert all(c.isalnum() or c == "_" for c in name), name


def test_offline_uri_names_the_branch():
    assert (
        features.offline_uri("kronodroid", "exp-1")
        == "s3://kronodroid/exp-1/feast/app_features.parquet"
    )


def test_redis_url_becomes_feasts_connection_string():
    from feast.infra.online_stores.redis import RedisOnlineStore

    online = features.RedisOnline(url=SecretStr("redis://:dfpabc123@127.0.0.1:6380/2"))
    conn = online.connection_string()
    assert conn == "127.0.0.1:6380,password=dfpabc123,db=2"
    nodes, params = RedisOnlineStore._parse_connection_string(conn)
    assert nodes == [{"host": "127.0.0.1", "port": "6380"}]
    assert params == {"password": "dfpabc123", "db": 2}
    assert "dfpabc123" not in repr(online)
    assert features.RedisOnline(url=SecretStr("rediss://h:1")).connection_string() == (
        "h:1,ssl=true"
    )
    assert online.feast_config("p")["skip_dedup"] is True
    for bad in ("http://h:1", "redis://h", "redis://:pa,ss@h:1"):
        with pytest.raises(ValidationError):
            features.RedisOnline(url=SecretStr(bad))


def test_redis_online_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    monkeypatch.delenv("DFP_REDIS_URL", raising=False)
    with pytest.raises(RuntimeError, match="DFP_STACK_SERVICES=lakefs,redis"):
        features.RedisOnline.from_env()
    monkeypatch.setenv("DFP_REDIS_URL", "redis://:x1@127.0.0.1:7000/0")
    assert features.RedisOnline.from_env().connection_string() == "127.0.0.1:7000,password=x1,db=0"


def test_sqlite_online_has_one_file_per_project(tmp_path):
    online = features.SqliteOnline(directory=tmp_path)
    assert online.feast_config("p1")["path"] != online.feast_config("p2")["path"]
    assert online.feast_config("p1")["path"].startswith(str(tmp_path.resolve()))


# -- definitions ----------------------------------------------------------------------------
def test_definitions_one_vector_field_per_group(tmp_path):
    from feast.types import Array, Float32

    source = features.offline_source(str(tmp_path / "app_features.parquet"))
    assert source.path == str((tmp_path / "app_features.parquet").resolve())
    module = features.definitions_module()
    defs = module.build_definitions(source)
    assert [e.join_key for e in defs.entities] == ["sha256", "capture"]
    assert [v.name for v in defs.feature_views] == list(features.FEATURE_GROUPS)
    for view in defs.feature_views:
        assert [f.name for f in view.features] == [view.name]
        assert view.features[0].dtype == Array(Float32)
        assert json.loads(view.tags[module.COLUMNS_TAG]) == list(features.FEATURE_GROUPS[view.name])
        assert sorted(view.entities) == ["app", "capture"]
        assert view.batch_source.timestamp_field == "event_timestamp"
    service = defs.feature_service
    assert service.name == features.SERVICE_NAME
    assert [p.name for p in service.feature_view_projections] == list(features.FEATURE_GROUPS)


def test_s3_sources_carry_a_connection_ref_but_no_secret():
    gateway = features.S3Gateway(
        endpoint="http://127.0.0.1:1", access_key_id="AKIA1", secret_access_key=SecretStr("s3cr")
    )
    source = features.offline_source("s3://repo/main/feast/app_features.parquet", gateway)
    assert source.s3_endpoint_override == "http://127.0.0.1:1"
    assert "s3cr" not in source.to_proto().SerializeToString().decode(errors="replace")
    creds = source.resolve_credentials()
    assert creds == {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr"}


def test_store_config_is_per_branch(tmp_path):
    common = dict(
        repository="kronodroid",
        online=features.SqliteOnline(directory=tmp_path / "online"),
        registry_dir=tmp_path / "registry",
        offline_path=str(tmp_path / "x.parquet"),
    )
    main = features.feature_store("main", **common)
    exp = features.feature_store("exp-1", **common)
    assert main.project == features.branch_project("kronodroid", "main")
    assert main.config.registry.path != exp.config.registry.path
    assert main.config.online_store.path != exp.config.online_store.path
    assert main.config.entity_key_serialization_version == 3
    assert main.dfp_branch == "main" and exp.dfp_branch == "exp-1"
    assert Path(main.config.registry.path).parent == (tmp_path / "registry").resolve()


def test_materialize_window_and_latest_row_per_key(tmp_path):
    """dfp's arrow materialization on a local table and SQLite: only rows inside
    [start, end], the latest per key, and the interval recorded in Feast's registry."""
    import pyarrow.parquet as pq

    mart = small_mart(4)
    table = features.mart_to_feast_table(mart, created_at=CREATED)
    # a newer version of row 1 (same key, later created_timestamp, other values)
    newer = features.mart_to_feast_table(
        small_mart(4, seed=9).slice(1, 1), created_at=datetime(2026, 2, 1, tzinfo=UTC)
    )
    newer = newer.set_column(
        2, table.schema.field(2), table.column("event_timestamp").slice(1, 1).combine_chunks()
    )
    pq.write_table(pa.concat_tables([table, newer]), tmp_path / "t.parquet")
    store = features.feature_store(
        "main",
        repository="r",
        online=features.SqliteOnline(directory=tmp_path / "online"),
        registry_dir=tmp_path / "registry",
        offline_path=str(tmp_path / "t.parquet"),
    )
    features.apply_definitions(store)
    start, end = datetime(2012, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    written = features.materialize(store, start, end)
    rows = mart.to_pylist()
    assert written == sum(r["event_date"] is not None for r in rows)

    keys = [{"sha256": r["sha256"], "capture": r["capture"]} for r in rows]
    answer = features.online_features(store, keys)
    for i, row in enumerate(rows):
        got = answer["syscalls"][i]
        if row["event_date"] is None:  # 1970-01-01: outside the window
            assert got is None
        elif i == 1:
            assert got == newer.column("syscalls")[0].as_py()
        else:
            assert got == table.column("syscalls")[i].as_py()
    view = store.get_feature_view("syscalls")
    assert view.materialization_intervals == [(start, end)]
    with pytest.raises(ValueError, match="timezone"):
        features.materialize(store, datetime(2012, 1, 1), end)


def test_materialized_rows_are_the_bytes_feasts_own_conversion_writes(tmp_path):
    """The vectorised online rows (keys, value protos, timestamps) are byte for byte what
    Feast's `write_to_online_store` stores for the same table, in every view's SQLite table."""
    import sqlite3

    import pyarrow.parquet as pq

    table = features.mart_to_feast_table(small_mart(9, seed=4), created_at=CREATED)
    pq.write_table(table, tmp_path / "t.parquet")
    stores = {}
    for how in ("dfp", "feast"):
        stores[how] = features.feature_store(
            "main",
            repository="r",
            online=features.SqliteOnline(directory=tmp_path / how),
            registry_dir=tmp_path / f"registry-{how}",
            offline_path=str(tmp_path / "t.parquet"),
        )
        features.apply_definitions(stores[how])
    assert features.materialize(stores["dfp"], features.EARLIEST_EVENT, CREATED) == table.num_rows
    for view in stores["feast"].list_feature_views():
        columns = [*features.ENTITY_KEYS, "event_timestamp", "created_timestamp", view.name]
        stores["feast"].write_to_online_store(view.name, table.select(columns).to_pandas())

    def rows(store, view: str) -> list[tuple]:
        with sqlite3.connect(store.config.online_store.path) as db:
            name = f"{store.project}_{view}"
            return db.execute(f"SELECT * FROM {name} ORDER BY entity_key, feature_name").fetchall()

    for view in features.FEATURE_GROUPS:
        written = rows(stores["dfp"], view)
        assert len(written) == table.num_rows
        assert written == rows(stores["feast"], view)


def test_offline_digest_ignores_row_order_and_snapshot_time():
    from datetime import UTC, datetime

    from dfp.kronodroid.features import FEAST_SCHEMA, offline_digest

    def table(rows, created):
        data = {
            "sha256": [r[0] for r in rows],
            "capture": ["real_device"] * len(rows),
            "event_timestamp": [datetime(2020, 1, 1, tzinfo=UTC)] * len(rows),
            "created_timestamp": [created] * len(rows),
            "label": [r[1] for r in rows],
        }
        for field in FEAST_SCHEMA:
            if field.name not in data:
                data[field.name] = [[float(r[1])] * 3 for r in rows]
        return pa.table(data).cast(FEAST_SCHEMA)

    rows = [("a" * 64, 1), ("b" * 64, 0), ("c" * 64, 1)]
    t1 = datetime(2026, 1, 1, tzinfo=UTC)
    t2 = datetime(2026, 2, 1, tzinfo=UTC)
    base = offline_digest(table(rows, t1))
    assert offline_digest(table(list(reversed(rows)), t2)) == base
    assert offline_digest(table([("a" * 64, 0), *rows[1:]], t1)) != base

"""The Feast layer on real lakeFS branches: the mart (Iceberg) -> Feast table on the branch ->
apply + materialize into SQLite / Redis -> online and point-in-time reads, isolated per branch."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from dfp.kronodroid import features
from dfp.lake.iceberg import BranchTables
from dfp.lake.lakefs_client import LakeFSClient
from tests.unit.test_features import small_mart

pytestmark = pytest.mark.integration

MART = ("marts", "mart_app_features")


@pytest.fixture(params=["sqlite", "redis"])
def online(request, tmp_path) -> features.SqliteOnline | features.RedisOnline:
    if request.param == "sqlite":
        return features.SqliteOnline(directory=tmp_path / "online")
    return features.RedisOnline(url=request.getfixturevalue("redis_url"))


@pytest.fixture
def tables(lakefs: LakeFSClient, tmp_path) -> BranchTables:
    return BranchTables(lakefs, f"sqlite:///{tmp_path / 'catalog.db'}")


def write_mart(lakefs: LakeFSClient, tables: BranchTables, branch: str, mart: pa.Table) -> None:
    tables.write(mart, schema=MART[0], table=MART[1], target_branch=branch)
    lakefs.commit(branch, f"mart for {branch}")


def branches_with_marts(lakefs: LakeFSClient, tables: BranchTables) -> dict[str, pa.Table]:
    """main: 6 apps; exp-1 (from main): the same apps with other values, plus 2 new apps."""
    main = small_mart(6, seed=1)
    write_mart(lakefs, tables, "main", main)
    lakefs.create_branch("exp-1", "main")
    exp = pa.concat_tables([small_mart(6, seed=2, scale=3), small_mart(2, seed=3, offset=1000)])
    write_mart(lakefs, tables, "exp-1", exp)
    return {"main": main, "exp-1": exp}


def branch_store(
    lakefs: LakeFSClient,
    tables: BranchTables,
    branch: str,
    online: features.SqliteOnline | features.RedisOnline,
    registry_dir: Path,
    *,
    materialize: bool = True,
    offline_engine: features.OfflineEngine = "duckdb",
):
    """What the Dagster assets will do per partition: mart -> Feast table on the branch ->
    a store for the branch -> apply (+ materialize)."""
    mart = tables.load(branch, *MART).scan().to_arrow()
    uri = features.export_offline(lakefs, branch, features.mart_to_feast_table(mart))
    assert uri == f"s3://{lakefs.repository}/{branch}/feast/app_features.parquet"
    lakefs.commit(branch, "feast offline table")
    store = features.feature_store(
        branch,
        repository=lakefs.repository,
        online=online,
        registry_dir=registry_dir,
        s3=features.S3Gateway.from_lakefs(lakefs.settings),
        offline_engine=offline_engine,
    )
    features.apply_definitions(store)
    if materialize:
        features.materialize(store, features.EARLIEST_EVENT, datetime.now(UTC))
    return store


def expected_vectors(mart: pa.Table, sha256: str, capture: str) -> dict[str, np.ndarray]:
    rows = [r for r in mart.to_pylist() if r["sha256"] == sha256 and r["capture"] == capture]
    assert len(rows) == 1
    return {
        group: np.array([rows[0][c] or 0 for c in columns], np.float32)
        for group, columns in features.FEATURE_GROUPS.items()
    }


def test_branch_stores_serve_their_own_mart(lakefs, tables, online, tmp_path):
    marts = branches_with_marts(lakefs, tables)
    stores = {
        b: branch_store(lakefs, tables, b, online, tmp_path / "registry") for b in ("main", "exp-1")
    }
    assert stores["main"].project != stores["exp-1"].project

    shared = f"{2:064x}"  # on both branches, with both captures, different values
    undated = f"{0:064x}"  # row 0 of each mart: null event_date (-> 1970-01-01)
    only_exp = f"{1000:064x}"
    rows = [
        {"sha256": shared, "capture": "real_device"},
        {"sha256": shared, "capture": "emulator"},
        {"sha256": undated, "capture": "real_device"},
        {"sha256": only_exp, "capture": "real_device"},
    ]
    answers = {b: features.online_features(s, rows) for b, s in stores.items()}
    for branch, answer in answers.items():
        # dfp's read path (the store's online_read) answers what Feast's own API does
        service = stores[branch].get_feature_service(features.SERVICE_NAME)
        feast_answer = stores[branch].get_online_features(features=service, entity_rows=rows)
        assert answer == feast_answer.to_dict()
        assert answer["sha256"] == [r["sha256"] for r in rows]
        for i, row in enumerate(rows[:3]):
            want = expected_vectors(marts[branch], row["sha256"], row["capture"])
            for group, vector in want.items():
                got = np.asarray(answer[group][i], dtype=np.float32)
                np.testing.assert_array_equal(got, vector, err_msg=f"{branch} {row} {group}")
        matrix = features.feature_matrix({g: answer[g][:3] for g in features.FEATURE_GROUPS})
        assert matrix.shape == (3, 476)

    # the row written only on exp-1 is invisible through main, and values differ per branch
    assert all(answers["main"][g][3] is None for g in features.FEATURE_GROUPS)
    np.testing.assert_array_equal(
        np.asarray(answers["exp-1"]["syscalls"][3], np.float32),
        expected_vectors(marts["exp-1"], only_exp, "real_device")["syscalls"],
    )
    assert answers["main"]["syscalls"][0] != answers["exp-1"]["syscalls"][0]

    # lineage id: stable for a store, re-apply and materialize; different per branch
    version = features.registry_version(stores["main"])
    features.apply_definitions(stores["main"])
    features.materialize(stores["main"], features.EARLIEST_EVENT, datetime.now(UTC))
    assert features.registry_version(stores["main"]) == version
    assert features.registry_version(stores["exp-1"]) != version
    assert version.startswith("sha256:")


def test_historical_features_are_point_in_time_per_branch(lakefs, tables, tmp_path):
    marts = branches_with_marts(lakefs, tables)
    online = features.SqliteOnline(directory=tmp_path / "online")
    stores = {
        b: branch_store(lakefs, tables, b, online, tmp_path / "registry", materialize=False)
        for b in ("main", "exp-1")
    }
    mart = marts["main"].to_pylist()
    dated = next(r for r in mart if r["event_date"] is not None and r["capture"] == "emulator")
    undated = next(r for r in mart if r["event_date"] is None)
    day = pd.Timestamp(dated["event_date"], tz="UTC")
    entity_df = pd.DataFrame(
        {
            "sha256": [dated["sha256"], dated["sha256"], undated["sha256"], f"{1000:064x}"],
            "capture": [dated["capture"], dated["capture"], undated["capture"], "real_device"],
            "event_timestamp": [
                day + pd.Timedelta(days=1),
                day - pd.Timedelta(days=1),  # before the row's event time: no features yet
                pd.Timestamp("1990-01-01", tz="UTC"),  # undated rows count as 1970-01-01
                pd.Timestamp("2030-01-01", tz="UTC"),  # only on exp-1
            ],
            "label": [7, 8, 9, 10],
        }
    )

    main = features.historical_features(stores["main"], entity_df)
    assert list(main["label"]) == [7, 8, 9, 10]  # every row, in the entity_df's order
    assert list(main["sha256"]) == list(entity_df["sha256"])
    for group in features.FEATURE_GROUPS:
        want_dated = expected_vectors(marts["main"], dated["sha256"], dated["capture"])[group]
        np.testing.assert_array_equal(np.asarray(main[group][0], np.float32), want_dated)
        assert main[group][1] is None
        want_undated = expected_vectors(marts["main"], undated["sha256"], undated["capture"])
        np.testing.assert_array_equal(np.asarray(main[group][2], np.float32), want_undated[group])
        assert main[group][3] is None

    # Feast's own materialization (its file offline store) reads the branch too; its DuckDB
    # store cannot (no httpfs), and says so
    with pytest.raises(ValueError, match="needs offline_engine='file'"):
        features.materialize(
            stores["main"], features.EARLIEST_EVENT, datetime.now(UTC), engine="feast"
        )
    file_store = branch_store(
        lakefs,
        tables,
        "main",
        online,
        tmp_path / "file-registry",
        materialize=False,
        offline_engine="file",
    )
    features.materialize(file_store, features.EARLIEST_EVENT, datetime.now(UTC), engine="feast")
    online = features.online_features(
        file_store, [{"sha256": dated["sha256"], "capture": dated["capture"]}]
    )
    want = expected_vectors(marts["main"], dated["sha256"], dated["capture"])["permissions"]
    np.testing.assert_array_equal(np.asarray(online["permissions"][0], np.float32), want)

    exp = features.historical_features(stores["exp-1"], entity_df)
    for group in features.FEATURE_GROUPS:
        want = expected_vectors(marts["exp-1"], f"{1000:064x}", "real_device")[group]
        np.testing.assert_array_equal(np.asarray(exp[group][3], np.float32), want)
        assert not np.array_equal(np.asarray(exp[group][0]), np.asarray(main[group][0]))


def test_duckdb_and_file_offline_stores_join_the_same_rows(lakefs, tables, tmp_path):
    """The same branch's table through Feast's DuckDB store (from a staged copy) and its file
    (Dask) store (in place on lakeFS): every entity row, in the entity frame's order, with
    the same vectors, including rows with no features yet and unknown apps."""
    from dfp.kronodroid.training import build_training_set, entity_frame, training_set_digest

    mart = pa.concat_tables([small_mart(10, seed=4), small_mart(3, seed=5, offset=500)])
    write_mart(lakefs, tables, "main", mart)
    online = features.SqliteOnline(directory=tmp_path / "online")
    stores = {
        engine: branch_store(
            lakefs,
            tables,
            "main",
            online,
            tmp_path / engine,
            materialize=False,
            offline_engine=engine,
        )
        for engine in ("duckdb", "file")
    }
    assert {e: features.offline_engine(s) for e, s in stores.items()} == {
        "duckdb": "duckdb",
        "file": "file",
    }
    table = features.read_offline(stores["file"])
    entities = entity_frame(table)
    early = entities[entities["event_timestamp"] > features.NULL_EVENT_TIMESTAMP].head(4).copy()
    early["event_timestamp"] -= pd.Timedelta(days=1)  # before their only version: no features
    unknown = entities.head(2).assign(sha256=[f"{9999:064x}", f"{9998:064x}"])
    entity_df = pd.concat([entities, early, unknown]).sample(frac=1.0, random_state=3)
    entity_df = entity_df.reset_index(drop=True)

    joined = {e: features.historical_features(s, entity_df) for e, s in stores.items()}
    for frame in joined.values():
        assert len(frame) == len(entity_df)
        assert list(frame["sha256"]) == list(entity_df["sha256"])
        assert list(frame["event_timestamp"]) == list(entity_df["event_timestamp"])
    for group in features.FEATURE_GROUPS:
        duck, dask = joined["duckdb"][group], joined["file"][group]
        assert [v is None for v in duck] == [v is None for v in dask]
        assert sum(v is None for v in duck) == len(early) + len(unknown)
        for a, b in zip(duck, dask, strict=True):
            if a is not None:
                assert np.asarray(a).dtype == np.float32
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b, np.float32))

    # The training sets (entity order) are the same bytes, whichever store joined them.
    sets = {e: build_training_set(s, table) for e, s in stores.items()}
    assert list(sets["duckdb"]["sha256"]) == sorted(table.column("sha256").to_pylist())
    groups = list(features.FEATURE_GROUPS)
    assert training_set_digest(sets["duckdb"], groups) == training_set_digest(sets["file"], groups)


def test_a_new_export_is_read_by_the_same_store(lakefs, tables, tmp_path):
    """The offline table of a branch changes with each run; a long-lived process (the Dagster
    code server) must read the new object, not a cached listing or size of the old one."""
    online = features.SqliteOnline(directory=tmp_path / "online")
    write_mart(lakefs, tables, "main", small_mart(4, seed=1))
    store = branch_store(lakefs, tables, "main", online, tmp_path / "registry")
    key = {"sha256": f"{1:064x}", "capture": "real_device"}
    before = features.online_features(store, [key])["syscalls"][0]

    bigger = small_mart(40, seed=5, scale=7)
    write_mart(lakefs, tables, "main", bigger)
    store = branch_store(lakefs, tables, "main", online, tmp_path / "registry")
    after = features.online_features(store, [key])["syscalls"][0]
    want = expected_vectors(bigger, key["sha256"], key["capture"])["syscalls"]
    np.testing.assert_array_equal(np.asarray(after, np.float32), want)
    assert after != before
    entity_df = pd.DataFrame(
        {**{k: [v] for k, v in key.items()}, "event_timestamp": ["2030-01-01"]}
    )
    history = features.historical_features(store, entity_df)
    np.testing.assert_array_equal(np.asarray(history["syscalls"][0], np.float32), want)

"""The online store's write-audit-publish: run project names, the pointer, the sweep's
choice, Redis outages, and dropping a project on a real SQLite file."""

from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from feast.repo_operations import is_valid_name
from pydantic import SecretStr

from dfp.kronodroid import features, online_publish
from dfp.lake import outages
from tests.unit.test_features import CREATED, small_mart

RUN_A = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
RUN_B = "ffeeddcc-bbaa-4988-8776-655443322110"


def test_run_projects_are_per_run_and_tell_their_run():
    main = features.branch_project("kronodroid", "main")
    a, b = (online_publish.run_project("kronodroid", "main", r) for r in (RUN_A, RUN_B))
    assert a != b and a.startswith(main) and b.startswith(main)
    assert online_publish.run_key_of(a) == "0a1b2c3d4e5f"
    assert online_publish.run_key_of(main) is None  # a branch's own project is no run's
    long = online_publish.run_project("k" * 80, "feature/" + "x" * 80, RUN_A)
    assert is_valid_name(long) and is_valid_name(a)
    assert long.startswith(online_publish.repository_prefix("k" * 80))
    assert not a.startswith(online_publish.repository_prefix("kronodroid2"))
    with pytest.raises(ValueError, match="hex"):
        online_publish.run_project("kronodroid", "main", "not-a-run")


def test_a_pointer_for_another_store_kind_is_not_followed():
    own = features.branch_project("kronodroid", "exp-1")
    pointer = online_publish.OnlinePointer(project="dfp_p_r" + "0" * 12, run_id=RUN_A, kind="redis")
    assert online_publish.served_project(pointer, "kronodroid", "exp-1", "redis") == pointer.project
    assert online_publish.served_project(pointer, "kronodroid", "exp-1", "sqlite") == own
    assert online_publish.served_project(None, "kronodroid", "exp-1", "redis") == own


def test_the_sweep_drops_only_unnamed_projects_of_finished_runs():
    a, b, c = (
        online_publish.run_project("kronodroid", "main", r) for r in (RUN_A, RUN_B, "1" * 32)
    )
    own = features.branch_project("kronodroid", "main")
    chosen = online_publish.orphaned_projects([a, b, c, own], named=[b], live_run_ids=["1" * 32])
    assert chosen == [a]  # b is served, c's run is in flight, own is a branch's, not a run's


def test_redis_down_fails_bounded_naming_redis_and_the_operation(monkeypatch, tmp_path):
    monkeypatch.setattr(outages, "BACKOFF_S", 0.01)
    online = features.RedisOnline(url=SecretStr("redis://:s3cret-pw@127.0.0.1:1/0"))
    calls = []

    def write():
        import redis

        calls.append(1)
        redis.Redis.from_url(online.url.get_secret_value(), socket_connect_timeout=1).ping()

    with pytest.raises(online_publish.RedisUnavailable) as caught:
        online_publish.with_online_retries(online, "feast_online writing project p", write, 2)
    message = str(caught.value)
    assert "Redis at 127.0.0.1:1" in message and "feast_online writing project p" in message
    assert "after 2 connection retries" in message and "s3cret" not in message
    assert len(calls) == 3
    # Anything but an unreachable server fails at once; SQLite is never retried.
    with pytest.raises(ZeroDivisionError):
        online_publish.with_online_retries(online, "op", lambda: 1 / 0)
    sqlite = features.SqliteOnline(directory=tmp_path)
    refused = []

    def refuse():
        refused.append(1)
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        online_publish.with_online_retries(sqlite, "op", refuse)
    assert refused == [1]


def test_dropping_a_sqlite_project_leaves_the_others(tmp_path):
    table = features.mart_to_feast_table(small_mart(4), created_at=CREATED)
    pq.write_table(table, tmp_path / "t.parquet")
    online = features.SqliteOnline(directory=tmp_path / "online")
    registry = tmp_path / "registry"
    stores = {}
    for run in (RUN_A, RUN_B):
        project = online_publish.run_project("r", "main", run)
        stores[run] = features.feature_store(
            "main",
            repository="r",
            online=online,
            registry_dir=registry,
            offline_path=str(tmp_path / "t.parquet"),
            project=project,
        )
        features.apply_definitions(stores[run])
        features.materialize(stores[run], features.EARLIEST_EVENT, datetime(2030, 1, 1, tzinfo=UTC))
    a, b = (stores[r].project for r in (RUN_A, RUN_B))
    assert online_publish.list_projects(online, "r") == sorted([a, b])
    assert online_publish.list_projects(online, "other") == []
    key = [{"sha256": table["sha256"][0].as_py(), "capture": table["capture"][0].as_py()}]
    assert features.online_features(stores[RUN_A], key)["syscalls"][0] is not None

    assert online_publish.drop_project(online, a, registry)
    assert not (tmp_path / "online" / f"{a}.db").exists()
    assert not (registry / f"{a}.db").exists()
    assert online_publish.list_projects(online, "r") == [b]
    assert features.online_features(stores[RUN_B], key)["syscalls"][0] is not None
    assert not online_publish.drop_project(online, a, registry)  # already gone

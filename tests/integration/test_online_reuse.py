"""Reusing a Feast online store: a branch's project filled by copying the rows of another
branch's project with the same offline table, on real lakeFS branches and a real Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import lakefs_sdk
import numpy as np
import pyarrow.compute as pc
import pytest

from dfp.kronodroid import features
from dfp.kronodroid.online_reuse import (
    OnlineState,
    clear_state,
    copy_online,
    read_state,
    write_state,
)
from tests.integration import test_features
from tests.integration.test_features import (
    branch_store,
    branches_with_marts,
    expected_vectors,
    write_mart,
)
from tests.unit.test_features import small_mart

pytestmark = pytest.mark.integration

# the fixtures of test_features: `online` (sqlite, redis) and `tables`
online = test_features.online
tables = test_features.tables

GROUPS = tuple(features.FEATURE_GROUPS)
ONLY_EXP = f"{1000:064x}"  # an app of exp-1 only


def entity_rows(mart) -> list[dict[str, str]]:
    return [{"sha256": r["sha256"], "capture": r["capture"]} for r in mart.to_pylist()]


def assert_serves(store, mart, rows=None) -> None:
    """`store` serves `mart`'s vectors for every (app, capture) of `rows` (default: all)."""
    rows = rows or entity_rows(mart)
    answer = features.online_features(store, rows)
    for i, row in enumerate(rows):
        for group, want in expected_vectors(mart, row["sha256"], row["capture"]).items():
            got = np.asarray(answer[group][i], np.float32)
            np.testing.assert_array_equal(got, want, err_msg=f"{store.project} {row} {group}")


def entities_of(store):
    return features.read_offline(store, features.ENTITY_KEYS)


def test_copy_serves_the_source_and_leaves_other_projects(lakefs, tables, online, tmp_path):
    marts = branches_with_marts(lakefs, tables)
    registry = tmp_path / "registry"
    main = branch_store(lakefs, tables, "main", online, registry)
    exp1 = branch_store(lakefs, tables, "exp-1", online, registry)
    lakefs.create_branch("exp-copy", "main")
    copy = branch_store(lakefs, tables, "exp-copy", online, registry, materialize=False)
    rows = entity_rows(marts["main"])
    assert all(v is None for v in features.online_features(copy, rows)["syscalls"])

    entities = entities_of(main)
    assert copy_online(main, copy, entities) == entities.num_rows == len(rows)

    unknown = {"sha256": f"{999:064x}", "capture": "real_device"}
    answers = {s.project: features.online_features(s, [*rows, unknown]) for s in (main, copy)}
    assert answers[main.project] == answers[copy.project]
    assert_serves(copy, marts["main"])
    assert all(answers[copy.project][g][-1] is None for g in GROUPS)
    # the third project (and the source) still serve their own mart
    assert_serves(exp1, marts["exp-1"])
    assert_serves(main, marts["main"])


def test_copy_replaces_the_targets_rows(lakefs, tables, online, tmp_path):
    marts = branches_with_marts(lakefs, tables)
    registry = tmp_path / "registry"
    main = branch_store(lakefs, tables, "main", online, registry)
    exp1 = branch_store(lakefs, tables, "exp-1", online, registry)
    only_exp = {"sha256": ONLY_EXP, "capture": "real_device"}
    before = features.online_features(exp1, [only_exp])

    assert copy_online(main, exp1, entities_of(main)) == marts["main"].num_rows
    assert_serves(exp1, marts["main"])  # main's values for the apps of main
    after = features.online_features(exp1, [only_exp])
    if isinstance(online, features.SqliteOnline):
        # each table now holds exactly the copied entities
        assert all(after[g][0] is None for g in GROUPS)
    else:
        # Redis keys of other entities are left as they were (a materialization does too)
        assert after == before
        assert_serves(exp1, marts["exp-1"], [only_exp])


def test_state_marker_per_project(lakefs, tables, online, tmp_path):
    write_mart(lakefs, tables, "main", small_mart(2, seed=1))
    registry = tmp_path / "registry"
    main = branch_store(lakefs, tables, "main", online, registry, materialize=False)
    lakefs.create_branch("exp-1", "main")
    exp = branch_store(lakefs, tables, "exp-1", online, registry, materialize=False)
    assert read_state(main) is None
    clear_state(main)  # nothing to clear: fine

    now = datetime.now(UTC)
    state = OnlineState(
        project=main.project,
        offline_digest=features.offline_digest(features.read_offline(main)),
        window_start=features.EARLIEST_EVENT,
        window_end=now,
        complete=True,
        rows=3,
        run_id="run-1",
        nonce=uuid.uuid4().hex,
        written_at=now,
    )
    write_state(main, state)
    assert read_state(main) == state
    assert read_state(exp) is None  # another project does not see it
    rewritten = state.model_copy(update={"nonce": uuid.uuid4().hex, "rows": 4})
    write_state(main, rewritten)
    assert read_state(main) == rewritten

    with pytest.raises(ValueError, match="state of project"):
        write_state(exp, state)
    assert read_state(exp) is None
    with pytest.raises(ValueError, match="timezone"):
        OnlineState(**{**state.model_dump(), "window_end": now.replace(tzinfo=None)})

    clear_state(main)
    assert read_state(main) is None
    # the marker is not a feature row: the store still reads (nothing materialized)
    key = {"sha256": f"{0:064x}", "capture": "real_device"}
    assert features.online_features(main, [key])["syscalls"] == [None]


def test_copy_refuses_an_incomplete_or_foreign_source(lakefs, tables, online, tmp_path):
    mart = small_mart(3, seed=1)
    write_mart(lakefs, tables, "main", mart)
    registry = tmp_path / "registry"
    empty = branch_store(lakefs, tables, "main", online, registry, materialize=False)
    lakefs.create_branch("exp-1", "main")
    target = branch_store(lakefs, tables, "exp-1", online, registry, materialize=False)
    entities = entities_of(empty)

    with pytest.raises(ValueError, match="lacks 5 of"):  # applied, never materialized
        copy_online(empty, target, entities)
    with pytest.raises(ValueError, match="same project"):
        copy_online(target, target, entities)

    # a store with other definitions (never applied): no tables / no views
    lakefs.create_branch("exp-2", "main")
    bare = features.feature_store(
        "exp-2",
        repository=lakefs.repository,
        online=online,
        registry_dir=registry,
        s3=features.S3Gateway.from_lakefs(lakefs.settings),
    )
    with pytest.raises(ValueError, match="no SQLite online store|no feature view"):
        copy_online(bare, target, entities)

    # once materialized, the copy works; a partial source is refused before any write
    features.materialize(empty, features.EARLIEST_EVENT, datetime.now(UTC))
    more = small_mart(4, seed=1)  # app 3 is not in the source
    with pytest.raises(ValueError, match=f"lacks 1 of .*{3:064x}"):
        copy_online(empty, target, more.select(list(features.ENTITY_KEYS)))
    # app 3 written for one view only (a materialization that stopped half-way): refused too
    app3 = features.mart_to_feast_table(more).filter(pc.field("sha256") == f"{3:064x}")
    empty.write_to_online_store("syscalls", app3.drop_columns(["label"]).to_pandas())
    half = features.online_features(empty, [{"sha256": f"{3:064x}", "capture": "real_device"}])
    assert half["syscalls"][0] is not None and half["permissions"][0] is None
    with pytest.raises(ValueError, match=f"lacks 1 of .*{3:064x}"):
        copy_online(empty, target, more.select(list(features.ENTITY_KEYS)))
    key = {"sha256": f"{0:064x}", "capture": "real_device"}
    assert features.online_features(target, [key])["syscalls"] == [None]
    assert copy_online(empty, target, entities) == 5
    assert_serves(target, mart)

    # SQLite -> Redis (or Redis -> SQLite): refused
    other = (
        # only the URL's syntax matters: the kinds are compared before any connection
        features.RedisOnline(url="redis://:x@127.0.0.1:1/0")
        if isinstance(online, features.SqliteOnline)
        else features.SqliteOnline(directory=tmp_path / "online-sqlite")
    )
    foreign = features.feature_store(
        "exp-1",
        repository=lakefs.repository,
        online=other,
        registry_dir=tmp_path / "registry-other",
        s3=features.S3Gateway.from_lakefs(lakefs.settings),
    )
    with pytest.raises(ValueError, match="different kinds"):
        copy_online(empty, foreign, entities)
    with pytest.raises(ValueError, match="different kinds"):
        copy_online(foreign, empty, entities)


def test_copy_refuses_another_redis(lakefs, tables, redis_url, tmp_path):
    write_mart(lakefs, tables, "main", small_mart(2, seed=1))
    registry = tmp_path / "registry"
    main = branch_store(
        lakefs, tables, "main", features.RedisOnline(url=redis_url), registry, materialize=False
    )
    elsewhere = features.feature_store(
        "exp-1",
        repository=lakefs.repository,
        online=features.RedisOnline(url="redis://:secret@127.0.0.1:1/3"),
        registry_dir=registry,
        s3=features.S3Gateway.from_lakefs(lakefs.settings),
    )
    with pytest.raises(ValueError, match="different Redis connections") as error:
        copy_online(main, elsewhere, entities_of(main))
    assert "secret" not in str(error.value)


def test_a_publish_drops_the_replaced_project_only_when_no_branch_serves_it(lakefs, tmp_path):
    """The online participant's commit, after a merge, on real lakeFS pointers (SQLite files):
    a project another branch's pointer names stays, so does one a recent commit's pointer named
    (a lakeFS revert serves it again), the rest of what the run replaced goes; the sweep drops
    a replaced project once RETAINED_COMMITS commits have passed."""
    from dfp.kronodroid import online_publish
    from dfp.lake.lakefs_client import LakeFSClient
    from dfp.lake.wap import Staged

    online = features.SqliteOnline(directory=tmp_path / "online")
    online.directory.mkdir()
    repo = lakefs.repository
    shared, alone, new, failed = (
        online_publish.run_project(repo, "main", uuid.uuid4().hex) for _ in range(4)
    )
    fallback = features.branch_project(repo, "exp-1")  # exp-1's own, from before pointers
    for project in (shared, alone, new, failed, fallback):
        (online.directory / f"{project}.db").write_bytes(b"")

    def point(branch: str, project: str) -> str:
        pointer = online_publish.OnlinePointer(project=project, run_id="r", kind="sqlite")
        online_publish.write_pointer(lakefs, branch, pointer)
        return lakefs.commit(branch, f"serve {project}")

    point("main", shared)
    lakefs.create_branch("exp-1", "main")  # serves `shared` too, until it publishes
    lakefs.create_branch("exp-2", "main")
    point("exp-2", alone)
    # exp-1 and exp-2 publish runs that wrote `new` (as their merges would leave the pointers).
    point("exp-1", new)
    published = point("exp-2", new)
    publisher = online_publish.FeastOnlinePublisher(
        online, tmp_path / "registry", lambda: LakeFSClient(lakefs.settings)
    )
    staged = [
        Staged(online_publish.SYSTEM, new, shared),
        Staged(online_publish.SYSTEM, new, alone),
        Staged(online_publish.SYSTEM, new, fallback),
    ]
    dropped = publisher.prepare(staged).commit()
    # main still serves `shared`; exp-2 served `alone` one commit ago
    assert dropped == [fallback]
    left = sorted(p.stem for p in online.directory.glob("*.db"))
    assert left == sorted([shared, alone, new, failed])
    # A run that does not publish drops what it wrote; the sweep finds nothing else to drop.
    publisher.discard([Staged(online_publish.SYSTEM, failed, shared)])
    assert online_publish.list_projects(online, repo) == sorted([shared, alone, new])
    assert online_publish.sweep(lakefs, online, tmp_path / "registry", []) == []

    # A lakeFS revert of exp-2's publish serves `alone` again, whose rows are still there.
    lakefs.branches.revert_branch(
        repo, "exp-2", lakefs_sdk.RevertCreation(ref=published, parent_number=0)
    )
    pointer = online_publish.read_pointer(lakefs, "exp-2")
    assert pointer is not None and pointer.project == alone
    assert (online.directory / f"{alone}.db").exists()
    # exp-2 publishes `new` again and moves on: once `alone` is older than its last
    # RETAINED_COMMITS commits, the sweep drops it.
    point("exp-2", new)
    assert online_publish.sweep(lakefs, online, tmp_path / "registry", []) == []
    for i in range(online_publish.RETAINED_COMMITS):
        lakefs.upload("exp-2", f"_dfp/test/{i}", b"x")
        lakefs.commit("exp-2", f"later change {i}")
    assert online_publish.sweep(lakefs, online, tmp_path / "registry", []) == [alone]
    assert online_publish.list_projects(online, repo) == sorted([shared, new])

"""Iceberg tables on lakeFS branches: isolation, merges, conflicts and snapshot expiry."""

import pyarrow as pa
import pytest

from dfp.lake import wap
from dfp.lake.iceberg import BranchTables, pointer_path
from dfp.lake.lakefs_client import LakeFSError

pytestmark = pytest.mark.integration


def apps(n: int, offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "sha256": pa.array([f"{i + offset:064x}" for i in range(n)]),
            "Malware": pa.array([(i + offset) % 2 for i in range(n)], pa.int64()),
            "nr_syscalls": pa.array([10 * (i + offset) for i in range(n)], pa.int64()),
        }
    )


@pytest.fixture(params=["sqlite", "postgres"])
def tables(request, lakefs, tmp_path) -> BranchTables:
    """The same flows on the embedded (SQLite) and the real (Postgres) catalog."""
    if request.param == "sqlite":
        return BranchTables(lakefs, f"sqlite:///{tmp_path / 'catalog.db'}")
    return BranchTables(lakefs, request.getfixturevalue("postgres_url"))


def publish(lakefs, tables: BranchTables, target: str, data: pa.Table, run_id: str) -> None:
    """Write for `target` on a hidden run branch, commit, merge: write-audit-publish."""
    run_branch = wap.run_branch_name(run_id)
    lakefs.create_branch(run_branch, target, hidden=True)
    tables.write(data, schema="staging", table="apps", target_branch=target, io_ref=run_branch)
    lakefs.commit(run_branch, f"write apps for {target}")
    lakefs.merge(run_branch, target, f"publish {run_id}", {"dagster_run_id": run_id})
    lakefs.delete_branch(run_branch)
    tables.forget(run_branch)


def rows(table) -> pa.Table:
    return table.scan().to_arrow().sort_by("sha256")


def data_paths(table) -> set[str]:
    return {task.file.file_path for task in table.scan().plan_files()}


def test_branches_see_only_their_own_table_versions(lakefs, tables):
    publish(lakefs, tables, "main", apps(100), "r1")
    main_v1 = tables.load("main", "staging", "apps")
    v1_snapshot = main_v1.current_snapshot().snapshot_id
    assert rows(main_v1).equals(apps(100).sort_by("sha256"))

    lakefs.create_branch("exp-1", "main")
    lakefs.create_branch("exp-old", "main")  # a branch made before main moves on
    publish(lakefs, tables, "exp-1", apps(150, offset=1000), "r2")

    main_after = tables.load("main", "staging", "apps")
    assert main_after.current_snapshot().snapshot_id == v1_snapshot
    assert rows(main_after).num_rows == 100
    exp = tables.load("exp-1", "staging", "apps")
    assert rows(exp).equals(apps(150, offset=1000).sort_by("sha256"))
    # Files written for exp-1 carry exp-1's logical paths (readable by path-based engines).
    repo = lakefs.repository
    assert all(p.startswith(f"s3://{repo}/exp-1/iceberg/staging/apps/") for p in data_paths(exp))
    assert all(p.startswith(f"s3://{repo}/main/") for p in data_paths(main_after))

    # A lakeFS merge carries the table: main's table then equals exp-1's.
    lakefs.merge("exp-1", "main", "merge exp-1", {})
    merged = tables.load("main", "staging", "apps")
    assert merged.metadata_location == exp.metadata_location
    assert merged.current_snapshot().snapshot_id == exp.current_snapshot().snapshot_id
    assert rows(merged).equals(rows(exp))

    # Expire main's old snapshot and delete the files only it referenced, on main.
    merged.maintenance.expire_snapshots().by_id(v1_snapshot).commit()
    tables.refresh_pointer("main", "staging", "apps")
    v1_files = data_paths(main_v1)
    for path in v1_files:
        key = path.split(f"s3://{repo}/main/", 1)[1]
        lakefs.objects.delete_object(repo, "main", key)
    lakefs.commit("main", "expire v1 and delete its files")
    assert v1_snapshot not in {
        s.snapshot_id for s in tables.load("main", "staging", "apps").snapshots()
    }
    assert rows(tables.load("main", "staging", "apps")).equals(rows(exp))

    # The branch made earlier still reads v1: its reads stay on its own objects.
    old = tables.load("exp-old", "staging", "apps")
    assert old.current_snapshot().snapshot_id == v1_snapshot
    assert rows(old).equals(apps(100).sort_by("sha256"))


def test_concurrent_changes_to_one_table_conflict_instead_of_dropping_commits(lakefs, tables):
    publish(lakefs, tables, "main", apps(10), "base")
    lakefs.create_branch("exp-a", "main")
    lakefs.create_branch("exp-b", "main")
    publish(lakefs, tables, "exp-a", apps(20, offset=100), "ra")
    publish(lakefs, tables, "exp-b", apps(30, offset=200), "rb")

    lakefs.merge("exp-a", "main", "merge a", {})
    head = lakefs.head("main")
    with pytest.raises(LakeFSError, match="409|conflict"):
        lakefs.merge("exp-b", "main", "merge b", {})
    assert lakefs.head("main") == head
    assert rows(tables.load("main", "staging", "apps")).num_rows == 20


def test_catalog_index_follows_lakefs(lakefs, tables):
    publish(lakefs, tables, "main", apps(5), "r1")
    assert tables.sync("main") == {"registered": 1, "updated": 0, "dropped": 0}
    assert tables.sync("main") == {"registered": 0, "updated": 0, "dropped": 0}
    catalog = tables.catalog("main")
    assert catalog.list_tables(("main", "staging")) == [("main", "staging", "apps")]
    # Removing the table in lakeFS removes it from the branch's catalog namespace on sync.
    lakefs.delete_prefix("main", "iceberg/staging/apps/")
    lakefs.commit("main", "drop apps")
    assert tables.sync("main")["dropped"] == 1
    assert not catalog.table_exists(("main", "staging", "apps"))
    assert not list(lakefs.list_objects("main", pointer_path("staging", "apps")))

"""dbt staging and mart as Iceberg tables on lakeFS branches (DuckDB engine unless noted)."""

import os
import urllib.parse

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dfp.kronodroid.schema import LABEL_LEAKING_COLUMNS, Release, sql_feature_columns
from dfp.kronodroid.synthetic import generate_release
from dfp.lake import wap
from dfp.lake.iceberg import BranchTables
from tests.integration.jobs import build_staging

pytestmark = pytest.mark.integration

SMALL = {"source": "synthetic", "synthetic_scale": 0.02}
MART = ("marts", "mart_app_features")
DBT_ASSETS = [
    dg.AssetKey(["staging", "stg_kronodroid_real_device"]),
    dg.AssetKey(["staging", "stg_kronodroid_emulator"]),
    dg.AssetKey(["staging", "stg_kronodroid_apps"]),
    dg.AssetKey(["marts", "mart_app_features"]),
]


@pytest.fixture
def tables(lakefs) -> BranchTables:
    return BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])


def test_staging_on_branches_isolated_then_merged(lakefs, instance, tables):
    result = build_staging(instance, "main", {**SMALL, "synthetic_seed": 1})
    assert result.success
    mart_main = tables.load("main", *MART)
    main_snapshot = mart_main.current_snapshot().snapshot_id
    main_rows = mart_main.scan().to_arrow()
    expected_rows = round(78_137 * 0.02) + round(63_991 * 0.02)
    # Deduplication removes at most the injected conflicting pairs.
    assert expected_rows - 4 <= main_rows.num_rows <= expected_rows
    # Label-leaking scanner columns never reach the mart; every feature does.
    assert not set(LABEL_LEAKING_COLUMNS) & set(main_rows.column_names)
    assert set(sql_feature_columns()) <= set(main_rows.column_names)
    assert len({c.lower() for c in main_rows.column_names}) == main_rows.num_columns
    # Materializations carry the Iceberg snapshot of each model.
    mats = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
    }
    assert mats["marts/mart_app_features"]["iceberg_snapshot_id"].value == str(main_snapshot)
    assert mats["marts/mart_app_features"]["dagster/row_count"].value == main_rows.num_rows
    # ... and link to the table's files in lakeFS's UI: on the partition branch, since dbt
    # reports each model before the build's lineage commit; the published branch holds them.
    objects = urllib.parse.urlsplit(mats["marts/mart_app_features"]["lakefs_objects_url"].value)
    assert objects.path == f"/repositories/{lakefs.repository}/objects"
    query = urllib.parse.parse_qs(objects.query)
    assert query == {"ref": ["main"], "path": ["iceberg/marts/mart_app_features/"]}
    written = {o.path for o in lakefs.list_objects("main", query["path"][0])}
    assert any(p.endswith(".metadata.json") for p in written)
    assert any(p.endswith(".parquet") for p in written)
    assert "lakefs_commit_url" not in mats["marts/mart_app_features"]

    # The run branch's catalog index was dropped with the run.
    assert not [ns for ns in tables.catalog("main").list_namespaces() if wap.is_run_branch(ns[0])]

    # Change raw data on exp-1 only, then build staging there.
    lakefs.create_branch("exp-1", "main")
    assert build_staging(
        instance, "exp-1", {**SMALL, "synthetic_seed": 2, "synthetic_scale": 0.03}
    ).success
    assert tables.load("main", *MART).current_snapshot().snapshot_id == main_snapshot
    assert tables.load("main", *MART).scan().to_arrow().num_rows == main_rows.num_rows
    exp = tables.load("exp-1", *MART)
    exp_rows = exp.scan().to_arrow()
    assert exp_rows.num_rows > main_rows.num_rows
    assert not set(pc.unique(exp_rows["sha256"]).to_pylist()) & set(
        pc.unique(main_rows["sha256"]).to_pylist()
    )

    # After a lakeFS merge of exp-1 into main, main's tables equal exp-1's.
    lakefs.merge("exp-1", "main", "merge exp-1", {})
    merged = tables.load("main", *MART)
    assert merged.current_snapshot().snapshot_id == exp.current_snapshot().snapshot_id
    assert (
        merged.scan()
        .to_arrow()
        .sort_by("app_capture_id")
        .equals(exp_rows.sort_by("app_capture_id"))
    )


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_failing_dbt_test_blocks_and_publishes_nothing(
    lakefs, instance, tables, engine, monkeypatch
):
    monkeypatch.setenv("DFP_DBT_TARGET", engine)
    # Raw files pushed to a branch without dfp's raw checks (as lakectl would): one negative
    # syscall total, which only the dbt test `non_negative` on stg_kronodroid_apps catches.
    lakefs.create_branch("pushed", "main")
    table = generate_release(Release.REAL_DEVICE, 300, seed=5)
    values = table.column("nr_syscalls").to_pylist()
    values[3] = -1
    table = table.set_column(
        table.schema.get_field_index("nr_syscalls"), "nr_syscalls", pa.array(values, pa.int64())
    )
    import io

    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table.append_column("_source_file", pa.array(["pushed.parquet"] * 300)), sink)
    lakefs.upload("pushed", "raw/kronodroid/real_device/pushed.parquet", sink.getvalue())
    lakefs.commit("pushed", "raw files pushed outside dfp")
    head = lakefs.head("pushed")

    result = build_staging(instance, "pushed", asset_selection=DBT_ASSETS)

    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["non_negative_stg_kronodroid_apps_nr_syscalls"] is False
    # dbt skipped the mart: its staging input failed a test.
    materialized = {
        e.event_specific_data.materialization.asset_key
        for e in result.get_asset_materialization_events()
    }
    assert dg.AssetKey(["marts", "mart_app_features"]) not in materialized
    assert lakefs.head("pushed") == head
    assert tables.describe("pushed") == {}
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_real_sample_through_staging(
    lakefs, instance, tables, shared_sample_dir, engine, monkeypatch
):
    monkeypatch.setenv("DFP_DBT_TARGET", engine)
    result = build_staging(
        instance, "main", {"source": "local", "local_dir": str(shared_sample_dir)}
    )
    assert result.success
    mart = tables.load("main", *MART).scan().to_arrow()
    assert mart.num_rows == 1622
    assert set(mart["capture"].to_pylist()) == {"real_device"}
    assert pc.sum(mart["label"]).as_py() == 169
    # The subset's ISO Highest-date becomes the event date.
    assert mart["event_date"].null_count == 0
    # The sample has no emulator release: its staging table is empty, typed like the other.
    assert_empty_like(
        tables, result, "main", "stg_kronodroid_emulator", "stg_kronodroid_real_device"
    )


def assert_empty_like(
    tables: BranchTables, result, branch: str, empty_model: str, like_model: str
) -> None:
    """`staging.<empty_model>` on `branch` has no rows, the columns and types of `like_model`,
    an Iceberg snapshot of 0 records, and Dagster reported 0 rows for it."""
    empty = tables.load(branch, "staging", empty_model)
    like = tables.load(branch, "staging", like_model)
    rows = empty.scan().to_arrow()
    assert rows.num_rows == 0, rows.slice(0, 1).to_pylist()
    assert [(f.name, f.field_type) for f in empty.schema().fields] == [
        (f.name, f.field_type) for f in like.schema().fields
    ]
    assert empty.current_snapshot().summary.additional_properties["total-records"] == "0"
    reported = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
    }
    assert reported[f"staging/{empty_model}"]["dagster/row_count"].value == 0


def test_branch_with_one_release_has_an_empty_table_for_the_other(
    lakefs, instance, tables, tmp_path
):
    # Regression: dbt-duckdb writes an empty model's file as one all-NULL row (its own view
    # filters it, so the not_null tests passed); that row reached the Iceberg table.
    import pyarrow.parquet as pq

    pq.write_table(
        generate_release(Release.REAL_DEVICE, 1200, seed=7), tmp_path / "kronodroid-real-v1.parquet"
    )
    result = build_staging(instance, "main", {"source": "local", "local_dir": str(tmp_path)})
    assert result.success
    assert_empty_like(
        tables, result, "main", "stg_kronodroid_emulator", "stg_kronodroid_real_device"
    )
    apps = tables.load("main", "staging", "stg_kronodroid_apps").scan().to_arrow()
    real = tables.load("main", "staging", "stg_kronodroid_real_device").scan().to_arrow()
    assert apps.num_rows == real.num_rows > 0
    assert set(apps["capture"].to_pylist()) == {"real_device"}
    assert tables.load("main", *MART).scan().to_arrow().num_rows == real.num_rows

"""The dbt asset plan gives the graph dagster-dbt's `@dbt_assets` would, and is rebuilt when
its manifest changes."""

import json
import shutil

import dagster as dg
import pytest
from dagster_dbt import dbt_assets

from dfp_assets.kronodroid.dbt_cli import DfpDbtTranslator
from dfp_assets.kronodroid.dbt_project import MANIFEST_PATH
from dfp_assets.kronodroid.staging import kronodroid_dbt
from dfp_assets.platform.dbt_plan import (
    StalePlan,
    ensure_plan,
    load_plan,
    plan_path,
    write_plan,
)
from dfp_assets.platform.partitions import lakefs_branch_partitions

_RUNTIME_ONLY = {
    "dagster_dbt/manifest",
    "dagster_dbt/dagster_dbt_translator",
    "dagster_dbt/project",
}


@pytest.fixture
def manifest(tmp_path):
    copy = tmp_path / "target" / "manifest.json"
    copy.parent.mkdir()
    shutil.copyfile(MANIFEST_PATH, copy)
    return copy


def _derived(manifest_path):
    @dbt_assets(manifest=manifest_path, dagster_dbt_translator=DfpDbtTranslator())
    def derived(): ...

    return derived


def test_plan_specs_are_dagster_dbts(manifest):
    write_plan(manifest, DfpDbtTranslator())
    plan = load_plan(manifest, lakefs_branch_partitions)
    derived = _derived(manifest)
    expected = {spec.key: spec for spec in derived.specs}
    assert {spec.key for spec in plan.specs} == set(expected) and len(expected) == 4
    for spec in plan.specs:
        want = expected[spec.key]
        assert {d.asset_key for d in spec.deps} == {d.asset_key for d in want.deps}
        assert (spec.group_name, spec.code_version, spec.description) == (
            want.group_name,
            want.code_version,
            want.description,
        )
        assert spec.tags == want.tags and "dagster/kind/dbt" in spec.tags
        assert spec.metadata == {k: v for k, v in want.metadata.items() if k not in _RUNTIME_ONLY}
        assert spec.partitions_def == lakefs_branch_partitions
    checks = {(c.asset_key, c.name): c for c in plan.check_specs}
    want_checks = {(c.asset_key, c.name): c for c in derived.check_specs}
    assert set(checks) == set(want_checks) and len(checks) == 21
    assert all(c.blocking for c in checks.values())  # the translator's: dbt tests gate
    for key, check in checks.items():
        assert check.metadata == want_checks[key].metadata


def test_the_loaded_asset_is_the_plans():
    plan = load_plan(MANIFEST_PATH, lakefs_branch_partitions)
    assert kronodroid_dbt.keys == {spec.key for spec in plan.specs}
    assert kronodroid_dbt.check_keys == {c.key for c in plan.check_specs}
    assert kronodroid_dbt.can_subset
    assert kronodroid_dbt.partitions_def == lakefs_branch_partitions


def test_a_changed_manifest_makes_the_plan_stale_and_ensure_rebuilds_it(manifest):
    with pytest.raises(StalePlan, match="No such file"):
        load_plan(manifest, None)
    write_plan(manifest, DfpDbtTranslator())
    data = json.loads(manifest.read_text())
    node = data["nodes"]["model.dfp.mart_app_features"]
    node["description"] = "edited"
    manifest.write_text(json.dumps(data))
    with pytest.raises(StalePlan, match="another manifest.json"):
        load_plan(manifest, None)
    plan = ensure_plan(manifest, None, DfpDbtTranslator)
    mart = next(s for s in plan.specs if s.key == dg.AssetKey(["marts", "mart_app_features"]))
    assert mart.description.startswith("edited")


def test_a_plan_of_another_format_is_stale(manifest):
    write_plan(manifest, DfpDbtTranslator())
    path = plan_path(manifest)
    plan = json.loads(path.read_text())
    path.write_text(json.dumps({**plan, "format": 0}))
    with pytest.raises(StalePlan, match="format 0"):
        load_plan(manifest, None)

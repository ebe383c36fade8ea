"""The prepared Kronodroid manifest, pointed at a run's branch (dfp.kronodroid.dbt_build)."""

import shutil

import pytest

from dfp.dbt_inprocess import PARTIAL_PARSE_FILE, parsed_manifest
from dfp.kronodroid.dbt_build import PREPARED_ENGINE, PROJECT_DIR, location_root, run_manifest

TARGET = PROJECT_DIR / "target"


@pytest.fixture(scope="module")
def prepared():
    if not (TARGET / PARTIAL_PARSE_FILE).exists():
        pytest.fail(f"{TARGET / PARTIAL_PARSE_FILE} is missing: run `uv run dfp dbt prepare`")
    return TARGET


def _models(manifest):
    return [n for n in manifest.nodes.values() if n.resource_type == "model"]


def test_the_location_template_is_dbt_project_ymls(prepared):
    # Parsed with the default vars: each model's location_root as dbt rendered it.
    models = _models(parsed_manifest(prepared, PREPARED_ENGINE))
    assert {n.config.schema for n in models} == {"staging", "marts"}
    for node in models:
        repository = node.config["location_root"].split("/")[2]
        assert node.config["location_root"] == location_root(repository, "main", node.config.schema)


def test_a_run_manifest_writes_for_the_run_branch_and_leaves_the_prepared_one(prepared):
    manifest = run_manifest("repo-x", "feature-1")
    assert {n.config["location_root"] for n in _models(manifest)} == {
        "s3://repo-x/feature-1/iceberg/staging",
        "s3://repo-x/feature-1/iceberg/marts",
    }
    again = parsed_manifest(prepared, PREPARED_ENGINE)
    assert all("/main/iceberg/" in n.config["location_root"] for n in _models(again))


def test_a_manifest_of_another_engine_is_not_used(tmp_path, prepared):
    shutil.copy(prepared / PARTIAL_PARSE_FILE, tmp_path / PARTIAL_PARSE_FILE)
    assert parsed_manifest(tmp_path, PREPARED_ENGINE) is not None
    assert parsed_manifest(tmp_path, "spark") is None  # its configs are duckdb's

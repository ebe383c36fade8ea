"""The prepared dbt manifests, retargeted at a run's relations (dfp.dbt_inprocess): the
toxic-comment project's schemas, the Kronodroid project's branch (dfp.kronodroid.dbt_build)."""

import shutil

import pytest

from dfp.dbt_inprocess import PARTIAL_PARSE_FILE, parsed_manifest
from dfp.kronodroid import dbt_build as kronodroid
from dfp.toxic.dbt_build import PROJECT_DIR, dbt_vars, run_manifest

TARGET = PROJECT_DIR / "target"


def _prepared_target(target):
    if not (target / PARTIAL_PARSE_FILE).exists():
        pytest.fail(f"{target / PARTIAL_PARSE_FILE} is missing: run `uv run dfp dbt prepare`")
    return target


@pytest.fixture(scope="module")
def prepared():
    return _prepared_target(TARGET)


@pytest.fixture(scope="module")
def kronodroid_prepared():
    return _prepared_target(kronodroid.PROJECT_DIR / "target")


def _relations(manifest):
    sources = {s.unique_id: (s.database, s.schema, s.identifier) for s in manifest.sources.values()}
    models = {
        n.unique_id: (n.database, n.schema, n.relation_name)
        for n in manifest.nodes.values()
        if n.resource_type == "model"
    }
    return sources, models


def test_a_run_manifest_names_the_run_schemas_and_the_profile_database(prepared):
    manifest = run_manifest(
        dbt_vars("staging__run_ab12", "production__run_ab12", "tc_x"), "dagster"
    )
    sources, models = _relations(manifest)
    assert sources == {
        "source.toxic_comments.staging.text_comments": ("dagster", "staging__run_ab12", "tc_x")
    }
    assert models == {
        "model.toxic_comments.table_clean": (
            "dagster",
            "production__run_ab12",
            '"dagster"."production__run_ab12"."table_clean"',
        )
    }


def test_each_run_gets_its_own_copy(prepared):
    run_manifest(dbt_vars("staging__run_one", "production__run_one"), "dagster")
    sources, models = _relations(parsed_manifest(prepared))
    # the prepared defaults (dbt_project.yml's vars), untouched by the run before
    assert {s[1] for s in sources.values()} == {"staging__main"}
    assert {m[1] for m in models.values()} == {"production__main"}


def test_bad_schema_names_are_refused_before_dbt(prepared):
    with pytest.raises(ValueError, match="production schema 'x; drop'"):
        run_manifest(dbt_vars("staging__a", "x; drop"), "dagster")


def test_no_prepared_manifest_means_dbt_parses(tmp_path, prepared):
    assert parsed_manifest(tmp_path) is None
    shutil.copy(prepared / PARTIAL_PARSE_FILE, tmp_path / PARTIAL_PARSE_FILE)
    assert parsed_manifest(tmp_path) is not None
    (tmp_path / PARTIAL_PARSE_FILE).write_bytes(b"\x81\xa8metadata\x81\xabdbt_version\xa60.0.1")
    assert parsed_manifest(tmp_path) is None  # another dbt's: not trusted


_WARM_UP_PROBE = """
import inspect, threading, time
from dfp.dbt_inprocess import _load
from dfp.toxic.dbt_build import warm_up
began = time.perf_counter()
warm_up()
first = time.perf_counter() - began
began = time.perf_counter()
warm_up()
again = time.perf_counter() - began
# what a forked run then finds done: the manifest cached, inspect's module table filled
print(_load.cache_info().currsize, len(inspect._filesbymodname) > 100, threading.active_count())
print(f"{first:.3f} {again:.3f}")
"""


def test_warm_up_leaves_dbt_ready_in_this_process_and_starts_no_thread(prepared):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _WARM_UP_PROBE], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    # A thread left behind would stop the warm run launcher's server from forking.
    assert out[0] == "1 True 1"
    first, again = map(float, out[1].split())
    assert again < first  # the costs are paid once


def _models(manifest):
    return [n for n in manifest.nodes.values() if n.resource_type == "model"]


def test_the_kronodroid_location_template_is_dbt_project_ymls(kronodroid_prepared):
    # Parsed with the default vars: each model's location_root as dbt rendered it.
    models = _models(parsed_manifest(kronodroid_prepared, kronodroid.PREPARED_ENGINE))
    assert {n.config.schema for n in models} == {"staging", "marts"}
    for node in models:
        repository = node.config["location_root"].split("/")[2]
        assert node.config["location_root"] == kronodroid.location_root(
            repository, "main", node.config.schema
        )


def test_a_kronodroid_run_manifest_writes_for_the_run_branch_and_leaves_the_prepared_one(
    kronodroid_prepared,
):
    manifest = kronodroid.run_manifest("repo-x", "feature-1")
    assert {n.config["location_root"] for n in _models(manifest)} == {
        "s3://repo-x/feature-1/iceberg/staging",
        "s3://repo-x/feature-1/iceberg/marts",
    }
    again = parsed_manifest(kronodroid_prepared, kronodroid.PREPARED_ENGINE)
    assert all("/main/iceberg/" in n.config["location_root"] for n in _models(again))


def test_a_kronodroid_manifest_of_another_engine_is_not_used(tmp_path, kronodroid_prepared):
    shutil.copy(kronodroid_prepared / PARTIAL_PARSE_FILE, tmp_path / PARTIAL_PARSE_FILE)
    assert parsed_manifest(tmp_path, kronodroid.PREPARED_ENGINE) is not None
    assert parsed_manifest(tmp_path, "spark") is None  # its configs are duckdb's

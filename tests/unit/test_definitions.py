"""The real Definitions: loads, validates, and wires every asset into the lakeFS branch
partitions, blocking checks and the write-audit-publish executor."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from dfp.settings import PROJECT_ROOT
from dfp_assets.definitions import defs
from dfp_assets.platform.partitions import lakefs_branch_partitions


def test_dagster_definitions_validate():
    dagster = Path(sys.executable).with_name("dagster")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # an ephemeral home
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "dfp_assets.definitions"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_every_asset_is_branch_partitioned():
    graph = defs.resolve_asset_graph()
    keys = list(graph.get_all_asset_keys())
    assert dg.AssetKey("kronodroid_raw") in keys
    for key in keys:
        assert graph.get(key).partitions_def == lakefs_branch_partitions, key


def test_raw_checks_are_blocking():
    graph = defs.resolve_asset_graph()
    specs = list(graph.get(dg.AssetKey("kronodroid_raw")).check_keys)
    names = {k.name for k in specs}
    assert names == {"raw_schema", "sha256_label_conflicts", "row_count_floor", "label_balance"}
    for check_key in specs:
        assert graph.get_check_spec(check_key).blocking, check_key


def test_jobs_use_the_write_audit_publish_executor():
    job = defs.resolve_job_def("ingest_kronodroid")
    assert job.executor_def.name == "lakefs_wap_executor"


def test_mobile_exports_follow_the_model_behind_blocking_parity_checks():
    graph = defs.resolve_asset_graph()
    model = dg.AssetKey("malware_model")
    exports = {dg.AssetKey(f"model_{f}") for f in ("executorch", "tflite", "onnx")}
    for key in exports:
        node = graph.get(key)
        assert node.parent_keys == {model}, key
        (check,) = node.check_keys
        assert check.name == "parity" and graph.get_check_spec(check).blocking
    benchmarks = graph.get(dg.AssetKey("device_benchmarks"))
    assert not benchmarks.is_materializable  # only devices report it
    assert benchmarks.parent_keys == exports
    report = graph.get(dg.AssetKey("device_benchmark_report"))
    assert report.parent_keys == {dg.AssetKey("device_benchmarks")}
    build_all = defs.resolve_job_def("build_all")
    assert exports <= set(build_all.asset_layer.selected_asset_keys)
    assert defs.resolve_sensor_def("device_benchmark_sensor")


def test_toxicity_exports_follow_the_model_behind_blocking_parity_checks():
    graph = defs.resolve_asset_graph()
    exports = {dg.AssetKey(f"toxicity_model_{f}") for f in ("executorch", "tflite", "onnx")}
    for key in exports:
        node = graph.get(key)
        assert node.parent_keys == {dg.AssetKey("toxicity_model")}, key
        (check,) = node.check_keys
        assert check.name == "parity" and graph.get_check_spec(check).blocking
    job = defs.resolve_job_def("export_toxicity_model")
    assert set(job.asset_layer.selected_asset_keys) == exports
    assert job.executor_def.name == "lakefs_wap_executor"


def test_downstream_assets_follow_their_parents_and_raw_follows_commits():
    from dfp_assets.platform.automation import FOLLOW_PARENTS

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        condition = graph.get(key).automation_condition
        if key.to_user_string() in (
            "kronodroid_raw",
            "comments_raw",
            "device_benchmarks",
            "cross_branch_evaluation",
            "branch_comparison",
            "comment_embeddings",
            "toxicity_model",
            "toxicity_model_executorch",
            "toxicity_model_tflite",
            "toxicity_model_onnx",
        ):
            # raw: the commit sensor / change capture; benchmarks: devices; a cross-branch
            # evaluation and a comparison answer a user's question about another branch;
            # the toxic model (minutes of encoding) and its exports are built by their jobs,
            # not by each CDC batch
            assert condition is None, key
        else:
            assert condition == FOLLOW_PARENTS, key
    sensors = {s.name: s for s in defs.sensors}
    assert {"lakefs_commit_sensor", "dfp_automation", "device_benchmark_sensor"} <= set(sensors)
    assert sensors["dfp_automation"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["lakefs_commit_sensor"].default_status == dg.DefaultSensorStatus.RUNNING


def test_f1_floor_default_comes_from_the_deployment(monkeypatch):
    import pytest

    from dfp.settings import reload_settings
    from dfp_assets.kronodroid.model import _default_f1_floor

    monkeypatch.delenv("DFP_F1_FLOOR", raising=False)
    reload_settings()
    assert _default_f1_floor() == 0.8
    monkeypatch.setenv("DFP_F1_FLOOR", "0.65")
    reload_settings()
    assert _default_f1_floor() == 0.65
    for bad in ("high", "1.5", "-0.1"):
        monkeypatch.setenv("DFP_F1_FLOOR", bad)
        reload_settings()
        with pytest.raises(ValueError, match="DFP_F1_FLOOR"):
            _default_f1_floor()


#: Libraries only asset bodies need; loading the definitions (every step worker does) must not.
LAZY_LIBRARIES = (
    "torch",
    "pyiceberg",
    "dlt",
    "pandera",
    "pandas",
    "sqlalchemy",
    "pyspark",
    "feast",
    "executorch",
    "onnxruntime",
    "ai_edge_litert",
    "litert_torch",
    "sklearn",
    "mlflow",
    "matplotlib",
    "kagglehub",
    "duckdb",
    "polars",
    "dagster_dbt",  # the dbt assets load from their plan (dfp_assets/platform/dbt_plan.py)
    "dbt",
    "lakefs_sdk",
)

# Dagster's own import runs `file` (platform.architecture, in its vendored croniter): the hook
# goes in after it, so what is recorded is what loading dfp's definitions spawns.
_LOAD_IN_CHILD = """
import json, sys
import dagster
spawned = []
sys.addaudithook(lambda event, args: spawned.append(repr(args[:2])) if event in (
    "subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork") else None)
import dfp_assets.definitions
print(json.dumps({"modules": sorted(sys.modules), "spawned": spawned}))
"""


def test_loading_definitions_imports_no_heavy_library_and_spawns_no_process():
    import json

    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_CHILD], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    tops = {name.split(".")[0] for name in loaded["modules"]}
    assert not tops & set(LAZY_LIBRARIES), sorted(tops & set(LAZY_LIBRARIES))
    assert loaded["spawned"] == []  # no `dbt parse` (nor anything else) while loading


def test_jobs_default_to_the_settings_executor():
    from dfp.settings import get_settings

    job = defs.resolve_job_def("build_all")
    default = job.executor_def.config_schema.as_field().default_value
    assert default == {get_settings().executor(): {}}


def test_toxic_staging_and_production_checks_are_blocking():
    """Great Expectations on comments_tokenized (one check per expectation) and every dbt test
    of table_clean gate write-audit-publish, and build_comments runs them all."""
    from dfp.toxic.expectations import EXPECTATION_NAMES

    graph = defs.resolve_asset_graph()
    tokenized, table_clean = dg.AssetKey("comments_tokenized"), dg.AssetKey("table_clean")
    assert graph.get(table_clean).parent_keys == {tokenized}
    assert graph.get(tokenized).parent_keys == {dg.AssetKey("comments_raw")}
    ge = graph.get(tokenized).check_keys
    assert {k.name for k in ge} == {f"ge_{name}" for name in EXPECTATION_NAMES}
    dbt_tests = graph.get(table_clean).check_keys
    assert {"unique_table_clean_id", "not_null_table_clean_labels"} <= {k.name for k in dbt_tests}
    assert any(k.name.startswith("valid_token_arrays_table_clean") for k in dbt_tests)
    for check_key in [*ge, *dbt_tests]:
        assert graph.get_check_spec(check_key).blocking, check_key

    job = defs.resolve_job_def("build_comments")
    assert job.executor_def.name == "lakefs_wap_executor"
    assert set(job.asset_layer.selected_asset_keys) == {
        dg.AssetKey("comments_raw"),
        tokenized,
        table_clean,
    }
    assert {*ge, *dbt_tests} <= set(job.asset_layer.asset_graph.asset_check_keys)


def test_the_platform_layer_imports_no_domain_module():
    import ast

    domain = ("dfp.kronodroid", "dfp.toxic", "dfp_assets.kronodroid", "dfp_assets.toxic")
    domain += ("dfp_resources.feast", "dfp_resources.postgres_staging", "dfp_resources.mlflow")
    found = []
    for path in sorted((PROJECT_ROOT / "dfp_assets" / "platform").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path}: {n}" for n in names if n.startswith(domain)]
    assert not found


def test_the_run_branch_cleanup_reaches_every_publish_participant():
    from dfp_assets.definitions import WAP_PARTICIPANTS, resources

    sensor = defs.resolve_sensor_def("lakefs_run_branch_cleanup")
    assert sensor.required_resource_keys == {"lakefs", "iceberg", *WAP_PARTICIPANTS.values()}
    for key in WAP_PARTICIPANTS.values():
        participant = resources[key]
        assert callable(participant.discard_orphans) and participant.orphans_name

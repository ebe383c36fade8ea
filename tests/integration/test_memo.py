"""Unchanged inputs skip work: a branch made from main with no data change reuses main's
raw objects, dbt tables and test results, training set, model and exports (memos travel with
the data); any change recomputes."""

import os

import pyarrow.parquet as pq
import pytest

from dfp.kronodroid import online_publish, online_reuse
from dfp.kronodroid.features import online_features
from dfp.kronodroid.synthetic import write_release_files
from dfp.kronodroid.training import TRAINING_SET_OBJECT
from dfp.lake import memo
from dfp.lake.iceberg import BranchTables
from dfp_resources.feast import FeastResource
from tests.integration.jobs import build_staging, export_models, materialize_raw, train_model

pytestmark = pytest.mark.integration

DATA = {"source": "synthetic", "synthetic_scale": 0.03, "synthetic_seed": 21}
FAST = {"epochs": 3, "f1_floor": 0.5}
MART = ("marts", "mart_app_features")


def _metadata(result) -> dict[str, dict]:
    return {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
        for e in result.get_asset_materialization_events()
        for m in [e.event_specific_data.materialization]
    }


def _mart_snapshot(lakefs, branch: str) -> str:
    tables = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"])
    return str(tables.load(branch, *MART).current_snapshot().snapshot_id)


def _shuffled_copy(tmp_path) -> dict:
    """DATA's synthetic files with their rows in another order: the same apps, other bytes."""
    files = write_release_files(tmp_path / "ordered", scale=0.03, seed=21, fmt="parquet")
    out = tmp_path / "shuffled"
    out.mkdir()
    for paths in files.values():
        for path in paths:
            table = pq.read_table(path)
            pq.write_table(table.take(list(range(table.num_rows))[::-1]), out / path.name)
    return {"source": "local", "local_dir": str(out)}


def _assert_share_warnings(model: dict, factor: float) -> None:
    """The splits that warn are those whose test/train malware shares are more than `factor`
    apart (the temporal split's differ at all here, so factor 1 warns on it)."""
    ratios = {}
    for name, split in model["splits"].items():
        train, test = split["train"], split["test"]
        shares = sorted(
            side["malware"] / (side["benign"] + side["malware"]) for side in (train, test)
        )
        ratios[name] = shares[1] / shares[0]
    warned = {line.split(" split:")[0] for line in model["share_warnings"]}
    assert warned == {name for name, ratio in ratios.items() if ratio > factor}, ratios
    assert model["metrics"].count("**Warning:**") == len(warned)
    if factor == 1.0:
        assert "temporal" in warned, ratios


def test_new_branch_reuses_and_changes_recompute(lakefs, instance, tmp_path):
    staged = build_staging(instance, "main", DATA)
    assert staged.success
    cold = train_model(instance, "main", FAST)
    assert cold.success
    assert export_models(instance, "main").success
    built = _metadata(cold)
    assert "reused_from_run" not in built["training_set"]
    assert not any("reused_from_run" in m for m in _metadata(staged).values())
    main_mart = _mart_snapshot(lakefs, "main")

    lakefs.create_branch("exp-same", "main")
    # The same source files: raw objects, dbt tables and test results are main's.
    restaged = build_staging(instance, "exp-same", DATA)
    assert restaged.success
    staging = _metadata(restaged)
    assert set(staging) == set(_metadata(staged))
    for asset, values in staging.items():
        assert values["reused_from_run"] == staged.run_id, asset
    checks = restaged.get_asset_check_evaluations()
    assert len(checks) == len(staged.get_asset_check_evaluations()) > 20
    assert all(c.passed for c in checks)
    reused_checks = [c for c in checks if "reused_from_run" in c.metadata]
    assert len(reused_checks) == 25  # every dbt test and the 4 raw audit checks
    assert _mart_snapshot(lakefs, "exp-same") == main_mart
    assert lakefs.read("exp-same", "_dfp/memo/kronodroid_dbt.json") == lakefs.read(
        "main", "_dfp/memo/kronodroid_dbt.json"
    )

    # A report setting is not a training input: the model is reused, its report redone.
    warm = train_model(instance, "exp-same", {**FAST, "share_warning_factor": 1.0})
    assert warm.success
    reused = _metadata(warm)
    for asset in ("training_set", "malware_model"):
        assert reused[asset]["reused_from_run"] == cold.run_id, asset
    assert reused["malware_model"]["model_digest"] == built["malware_model"]["model_digest"]
    _assert_share_warnings(built["malware_model"], 1.5)
    _assert_share_warnings(reused["malware_model"], 1.0)
    assert reused["malware_model"]["splits"] == built["malware_model"]["splits"]
    assert all(c.passed for c in warm.get_asset_check_evaluations())
    # The new branch's online store: the project main serves, which its inherited pointer
    # names, kept instead of materialized (no row written, no pointer rewritten).
    assert "materialize_seconds" in built["feast_online"]
    assert reused["feast_online"]["online_rows_from"].startswith("kept")
    assert reused["feast_online"]["feast_project"] == built["feast_online"]["feast_project"]
    assert reused["feast_online"]["reused_from_run"] == cold.run_id
    feast = FeastResource(home=os.environ["DFP_FEAST_HOME"])
    mart = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"]).load("main", *MART)
    keys = mart.scan(selected_fields=("sha256", "capture")).to_arrow().slice(0, 25).to_pylist()
    on_main = online_features(feast.store(lakefs, "main"), keys)
    assert all(v is not None for v in on_main["syscalls"])
    assert online_features(feast.store(lakefs, "exp-same"), keys) == on_main
    exports = export_models(instance, "exp-same")
    assert exports.success
    for asset, values in _metadata(exports).items():
        assert values.get("reused_from_run"), asset
        assert "0 class mismatches" in values["parity"]  # the reused file is checked again

    # Another config: the model is trained again (the training set is still reused).
    again = _metadata(train_model(instance, "exp-same", {**FAST, "epochs": 4}))
    assert "reused_from_run" in again["training_set"]
    assert again["feast_online"]["online_rows_from"].startswith("kept")
    # Kept twice: no project but the one main published (and exp-same's pointer names).
    served = online_publish.read_pointer(lakefs, "exp-same")
    assert served == online_publish.read_pointer(lakefs, "main")
    projects = online_publish.list_projects(feast.online_settings(), lakefs.repository)
    assert projects == [served.project]
    assert "reused_from_run" not in again["malware_model"]
    assert again["malware_model"]["model_digest"] != built["malware_model"]["model_digest"]

    # The same apps in another row order: raw is loaded and dbt runs again (new snapshots),
    # but the offline table has the same content, so the training set and model are reused.
    lakefs.create_branch("exp-shuffled", "main")
    shuffled = build_staging(instance, "exp-shuffled", _shuffled_copy(tmp_path))
    assert shuffled.success
    assert not any("reused_from_run" in m for m in _metadata(shuffled).values())
    mart = _mart_snapshot(lakefs, "exp-shuffled")
    assert mart != main_mart
    rebuilt = _metadata(train_model(instance, "exp-shuffled", FAST))
    assert rebuilt["feast_online"]["online_rows_from"].startswith("kept")
    assert rebuilt["training_set"]["reused_from_run"] == cold.run_id
    assert rebuilt["malware_model"]["reused_from_run"] == cold.run_id
    # Lineage names this branch's rebuilt mart, not the snapshot of the reused build.
    assert rebuilt["training_set"]["iceberg_snapshot_id"] == mart
    assert (
        rebuilt["training_set"]["training_set_digest"]
        == (built["training_set"]["training_set_digest"])
    )

    # A source whose online rows are no longer known (its marker cleared, as a
    # materialization in progress does) is not copied: the new branch materializes.
    online_reuse.clear_state(feast.store(lakefs, "main"))
    lakefs.create_branch("exp-unknown-online", "main")
    fresh = _metadata(train_model(instance, "exp-unknown-online", FAST))["feast_online"]
    assert "materialize_seconds" in fresh and "reused_from_run" not in fresh
    assert online_features(feast.store(lakefs, "exp-unknown-online"), keys) == on_main

    # An output rewritten behind dfp's back is not trusted: the join runs again.
    lakefs.create_branch("exp-tampered", "main")
    lakefs.upload("exp-tampered", TRAINING_SET_OBJECT, b"not the training set")
    lakefs.commit("exp-tampered", "overwrite the training set by hand")
    inputs = memo.Memo.model_validate_json(lakefs.read("main", memo.memo_path("training_set")))
    assert memo.lookup(lakefs, "exp-tampered", "training_set", inputs.input_version) is None
    assert memo.lookup(lakefs, "main", "training_set", inputs.input_version) is not None
    rebuilt = train_model(instance, "exp-tampered", FAST)
    assert rebuilt.success
    assert "reused_from_run" not in _metadata(rebuilt)["training_set"]


def test_raw_is_reloaded_when_its_objects_are_not_the_memos(lakefs, instance):
    small = DATA
    first = materialize_raw(instance, "main", small)
    assert first.success
    assert not any("reused_from_run" in c.metadata for c in first.get_asset_check_evaluations())
    repeated = materialize_raw(instance, "main", small)
    again = _metadata(repeated)["kronodroid_raw"]
    assert again["reused_from_run"] == first.run_id
    assert again["dagster/row_count"] == _metadata(first)["kronodroid_raw"]["dagster/row_count"]
    # The same raw objects and thresholds: the audit's outcomes are the first run's.
    audited = {c.check_name: c for c in first.get_asset_check_evaluations()}
    reused_checks = {c.check_name: c for c in repeated.get_asset_check_evaluations()}
    assert set(reused_checks) == set(audited) and len(audited) == 4
    for name, check in reused_checks.items():
        assert check.passed and check.metadata["reused_from_run"].value == first.run_id, name
        shown = {
            k: v for k, v in check.metadata.items() if k not in ("reused_from_run", "lakefs_commit")
        }
        assert shown == {k: v for k, v in audited[name].metadata.items() if k != "lakefs_commit"}

    # Other thresholds audit again: a memo of passing outcomes does not pass a stricter check.
    strict = materialize_raw(instance, "main", small, check_config={"min_rows_per_release": 10**9})
    assert not strict.success
    failed = {c.check_name: c for c in strict.get_asset_check_evaluations()}
    assert not failed["row_count_floor"].passed
    assert not any("reused_from_run" in c.metadata for c in failed.values())

    # A stray object beside the load: the dataset is replaced as a whole, so reload.
    lakefs.create_branch("exp-stray", "main")
    lakefs.upload("exp-stray", "raw/kronodroid/emulator/stray.parquet", b"not dlt's")
    lakefs.commit("exp-stray", "a file pushed by hand")
    stray = materialize_raw(instance, "exp-stray", small)
    reloaded = _metadata(stray)["kronodroid_raw"]
    assert "reused_from_run" not in reloaded
    assert not any("reused_from_run" in c.metadata for c in stray.get_asset_check_evaluations())
    paths = [o.path for o in lakefs.list_objects("exp-stray", "raw/kronodroid/")]
    assert "raw/kronodroid/emulator/stray.parquet" not in paths

    # The run tag dfp/reuse=off recomputes (and a bad value is refused, naming the tag).
    forced = materialize_raw(instance, "main", small, tags={"dfp/reuse": "off"})
    assert forced.success
    assert "reused_from_run" not in _metadata(forced)["kronodroid_raw"]
    assert not any("reused_from_run" in c.metadata for c in forced.get_asset_check_evaluations())
    refused = materialize_raw(instance, "main", small, tags={"dfp/reuse": "maybe"})
    assert not refused.success
    failure = next(e for e in refused.all_events if e.is_step_failure)
    assert "dfp/reuse='maybe'" in failure.event_specific_data.error.message

    # Other source files (another seed): loaded again.
    other = _metadata(materialize_raw(instance, "main", {**small, "synthetic_seed": 22}))
    assert "reused_from_run" not in other["kronodroid_raw"]

"""Unchanged inputs skip work: a branch made from main with no data change reuses main's
training set, model and exports (memos travel with the data); any change recomputes."""

import os

import pytest

from dfp import memo
from dfp.iceberg import BranchTables
from dfp.training import TRAINING_SET_OBJECT
from tests.integration.jobs import build_staging, export_models, train_model

pytestmark = pytest.mark.integration

DATA = {"source": "synthetic", "synthetic_scale": 0.03, "synthetic_seed": 21}
FAST = {"epochs": 3, "f1_floor": 0.5}


def _metadata(result) -> dict[str, dict]:
    return {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
        for e in result.get_asset_materialization_events()
        for m in [e.event_specific_data.materialization]
    }


def test_new_branch_reuses_and_changes_recompute(lakefs, instance):
    assert build_staging(instance, "main", DATA).success
    cold = train_model(instance, "main", FAST)
    assert cold.success
    assert export_models(instance, "main").success
    built = _metadata(cold)
    assert "reused_from_run" not in built["training_set"]

    lakefs.create_branch("exp-same", "main")
    # Rebuilding raw and staging gives the mart new Iceberg snapshots but the same content.
    assert build_staging(instance, "exp-same", DATA).success
    warm = train_model(instance, "exp-same", FAST)
    assert warm.success
    reused = _metadata(warm)
    for asset in ("training_set", "malware_model"):
        assert reused[asset]["reused_from_run"] == cold.run_id, asset
    assert reused["malware_model"]["model_digest"] == built["malware_model"]["model_digest"]
    assert (
        reused["training_set"]["training_set_digest"]
        == (built["training_set"]["training_set_digest"])
    )
    assert all(c.passed for c in warm.get_asset_check_evaluations())
    # Lineage names this branch's rebuilt mart, not the snapshot of the reused build.
    mart = BranchTables(lakefs, os.environ["DFP_ICEBERG_CATALOG_URI"]).load(
        "exp-same", "marts", "mart_app_features"
    )
    current = str(mart.current_snapshot().snapshot_id)
    assert reused["training_set"]["iceberg_snapshot_id"] == current
    assert current != built["training_set"]["iceberg_snapshot_id"]
    exports = export_models(instance, "exp-same")
    assert exports.success
    for asset, values in _metadata(exports).items():
        assert values.get("reused_from_run"), asset
        assert "0 class mismatches" in values["parity"]  # the reused file is checked again

    # Another config: the model is trained again (the training set is still reused).
    again = _metadata(train_model(instance, "exp-same", {**FAST, "epochs": 4}))
    assert "reused_from_run" in again["training_set"]
    assert "reused_from_run" not in again["malware_model"]
    assert again["malware_model"]["model_digest"] != built["malware_model"]["model_digest"]

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

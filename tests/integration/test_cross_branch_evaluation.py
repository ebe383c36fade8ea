"""Cross-branch evaluation through the real Definitions: `main`'s published model scored on a
branch with other data, every figure checked against one computed here with sklearn; the same
from `dfp evaluate`; unknown branches and branches without a model refused by name."""

import io
import json
import os
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from sklearn import metrics as sk

from dfp import tracking
from dfp.cli import main
from dfp.kronodroid.features import FEATURE_GROUPS
from dfp.kronodroid.model import temporal_split
from dfp.kronodroid.training import MODEL_OBJECT, TRAINING_SET_OBJECT
from dfp.lake import wap
from dfp_assets.kronodroid.evaluation import evaluation_object
from tests.integration.jobs import build_staging, evaluate_branch, train_model
from tests.integration.test_model_pipeline import DATA, FAST, load_model_bytes

pytestmark = pytest.mark.integration

BRANCH = "exp-2026"
NO_MODEL = "mart-only"


def _materialization(result, asset: str) -> dict:
    (found,) = [
        e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == asset
    ]
    return {k: v.value for k, v in found.items()}


def _independent(model, features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """sklearn's figures for `model` on these rows (threshold 0.5)."""
    with torch.no_grad():
        p = model(torch.from_numpy(features)).reshape(-1).numpy().astype(np.float64)
    predicted = (p >= 0.5).astype(int)
    (tn, fp), (fn, tp) = sk.confusion_matrix(labels, predicted, labels=[0, 1])
    return {
        "f1": sk.f1_score(labels, predicted, zero_division=0),
        "precision": sk.precision_score(labels, predicted, zero_division=0),
        "recall": sk.recall_score(labels, predicted, zero_division=0),
        "roc_auc": sk.roc_auc_score(labels, p),
        "accuracy": sk.accuracy_score(labels, predicted),
        "n": len(labels),
        "n_positive": int(labels.sum()),
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
    }


def _failure(result) -> str:
    (failure,) = result.get_step_failure_events()
    return failure.step_failure_data.user_failure_data.description


def test_main_model_on_a_branch_with_other_data(lakefs, instance):
    assert build_staging(instance, "main", DATA).success
    lakefs.create_branch(NO_MODEL, "main")  # a mart and no model
    main_run = train_model(instance, "main", FAST)
    assert main_run.success
    main_mlflow = _materialization(main_run, "malware_model")["mlflow_run_id"]
    lakefs.create_branch(BRANCH, "main")
    # Other apps on the branch (another seed), its own features and model.
    assert build_staging(instance, BRANCH, {**DATA, "synthetic_seed": 22}).success
    own_run = train_model(instance, BRANCH, FAST)
    assert own_run.success
    own_mlflow = _materialization(own_run, "malware_model")["mlflow_run_id"]
    main_head = lakefs.head("main")

    result = evaluate_branch(instance, BRANCH, "main")
    assert result.success
    shown = _materialization(result, "cross_branch_evaluation")

    # Independently: the two published models and the branch's training set, read from lakeFS.
    main_model = load_model_bytes(lakefs.read("main", MODEL_OBJECT))
    own_model = load_model_bytes(lakefs.read(BRANCH, MODEL_OBJECT))
    frame = pq.read_table(io.BytesIO(lakefs.read(BRANCH, TRAINING_SET_OBJECT))).to_pandas()
    main_frame = pq.read_table(io.BytesIO(lakefs.read("main", TRAINING_SET_OBJECT))).to_pandas()
    assert set(frame["sha256"]) != set(main_frame["sha256"])  # the data differ
    features = np.concatenate(
        [np.stack(frame[g].to_numpy()).astype(np.float32) for g in FEATURE_GROUPS], axis=1
    )
    labels = frame["label"].to_numpy().astype(int)
    _, test = temporal_split(frame["event_timestamp"], 0.2, labels=labels)
    assert 0 < len(test) < len(frame)

    for subset, rows in (("all", np.arange(len(frame))), ("temporal_test", test)):
        of_main = _independent(main_model, features[rows], labels[rows])
        of_own = _independent(own_model, features[rows], labels[rows])
        for key, value in of_main.items():
            assert shown[f"{subset}_{key}"] == pytest.approx(value, abs=1e-9), (subset, key)
            assert shown[f"{subset}_own_{key}"] == pytest.approx(of_own[key], abs=1e-9)
            delta = value - of_own[key]
            assert shown[f"{subset}_delta_{key}"] == pytest.approx(delta, abs=1e-9), key
        assert shown["rows"][subset] == len(rows)
    # On its temporal test side the branch's own model has the figures its training recorded.
    recorded = tracking.Tracker(os.environ["MLFLOW_TRACKING_URI"]).read(own_mlflow).metrics
    for key in ("f1", "precision", "recall", "roc_auc", "tp", "fp"):
        assert shown[f"temporal_test_own_{key}"] == pytest.approx(recorded[f"temporal_{key}"])

    # Lineage: which models and which training set.
    assert shown["model_from"] == "main"
    assert shown["model_from_commit"] == main_head
    assert shown["model_from_mlflow_run_id"] == main_mlflow
    assert shown["own_mlflow_run_id"] == own_mlflow
    assert "| temporal_test (" in shown["evaluation"]
    # The report was published to the branch (one merge), main untouched, no run branch left.
    report = json.loads(lakefs.read(BRANCH, evaluation_object("main")))
    assert report["metrics"]["all_f1"] == pytest.approx(shown["all_f1"])
    assert lakefs.head("main") == main_head
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]

    # The command line prints the same figures.
    cli = CliRunner().invoke(main, ["evaluate", "--model-from", "main", "--on", BRANCH])
    assert cli.exit_code == 0, cli.output
    print(cli.output)  # the table, for the reader of `pytest -s`
    assert f"model of main: commit {main_head[:12]}" in cli.output
    for subset in ("all", "temporal_test"):
        (line,) = [
            line
            for line in cli.output.splitlines()
            if re.match(rf"{subset} \(\d+ rows\) +f1 ", line)
        ]
        assert line.split()[-3:] == [
            f"{shown[f'{subset}_f1']:.4f}",
            f"{shown[f'{subset}_own_f1']:.4f}",
            f"{shown[f'{subset}_delta_f1']:+.4f}",
        ]

    # Bad input: named, nothing published.
    head = lakefs.head(BRANCH)
    for model_from, message in (
        ("no-such-branch", "lakeFS branch 'no-such-branch' does not exist"),
        (NO_MODEL, f"branch '{NO_MODEL}' has no published model: {MODEL_OBJECT}"),
    ):
        refused = evaluate_branch(instance, BRANCH, model_from)
        assert not refused.success
        assert message in _failure(refused)
        assert lakefs.head(BRANCH) == head
        cli = CliRunner().invoke(main, ["evaluate", "--model-from", model_from, "--on", BRANCH])
        assert cli.exit_code == 1 and message in cli.output, cli.output
    cli = CliRunner().invoke(main, ["evaluate", "--on", "no-such-branch"])
    assert cli.exit_code == 1 and "'no-such-branch' does not exist" in cli.output, cli.output
    # A branch with a model but no training set of its own data cannot be scored on.
    lakefs.create_branch("empty", lakefs.log("main")[-1].id)
    cli = CliRunner().invoke(main, ["evaluate", "--on", "empty"])
    assert cli.exit_code == 1 and "branch 'empty' has no training set" in cli.output, cli.output

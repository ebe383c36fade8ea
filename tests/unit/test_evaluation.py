"""Cross-branch evaluation's pure parts: deltas, the two subsets, the table, bad input."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from dfp.kronodroid.evaluation import (
    CrossBranchEvaluation,
    EvaluationError,
    PublishedModel,
    TrainingData,
    metric_deltas,
    score_subsets,
)
from dfp.kronodroid.model import MalwareClassifier, temporal_split
from tests.unit.test_training import _frame  # the same small training set

GROUPS = ("g1", "g2")


def _model(seed: int, n_features: int = 6) -> MalwareClassifier:
    torch.manual_seed(seed)
    return MalwareClassifier(n_features, hidden_sizes=(8,)).eval()


def _matrix(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([np.stack(frame[g].to_numpy()) for g in GROUPS], axis=1)
    return x.astype(np.float32), frame["label"].to_numpy()


def _probabilities(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).reshape(-1).numpy()


def test_deltas_are_model_from_minus_own_and_nan_stays_nan():
    deltas = metric_deltas(
        {"f1": 0.75, "tp": 10.0, "roc_auc": math.nan}, {"f1": 0.5, "tp": 12.0, "roc_auc": 0.9}
    )
    assert deltas["f1"] == pytest.approx(0.25)
    assert deltas["tp"] == -2.0
    assert math.isnan(deltas["roc_auc"])


def test_deltas_of_metrics_with_other_names_are_an_error_naming_them():
    with pytest.raises(ValueError, match=r"only model_from \['mcc'\], only own \['f2'\]"):
        metric_deltas({"f1": 1.0, "mcc": 0.1}, {"f1": 1.0, "f2": 0.2})


def test_both_models_on_every_row_and_on_the_temporal_test_side():
    frame = _frame()
    other, own = _model(1), _model(2)
    # Rows in any order: the subsets do not depend on it.
    scores = {
        s.subset: s
        for s in score_subsets(
            other, own, frame.sample(frac=1, random_state=3), vector_columns=GROUPS
        )
    }
    assert set(scores) == {"all", "temporal_test"}

    x, y = _matrix(frame)
    p_other, p_own = _probabilities(other, x), _probabilities(own, x)
    _, test = temporal_split(frame["event_timestamp"], 0.2, labels=y)
    for subset, rows in (("all", np.arange(len(y))), ("temporal_test", test)):
        s = scores[subset]
        assert s.rows == len(rows)
        for metrics, p in ((s.model_from, p_other), (s.own, p_own)):
            predicted = (p[rows] >= 0.5).astype(int)
            assert metrics.f1 == pytest.approx(f1_score(y[rows], predicted, zero_division=0))
            assert metrics.roc_auc == pytest.approx(roc_auc_score(y[rows], p[rows]))
            assert metrics.tp == int(((predicted == 1) & (y[rows] == 1)).sum())
        assert s.delta["f1"] == pytest.approx(s.model_from.f1 - s.own.f1)
        assert s.delta["fp"] == s.model_from.fp - s.own.fp
    assert scores["temporal_test"].rows == len(test) < len(frame)


def test_without_an_own_model_there_is_no_delta():
    (everything, _) = score_subsets(_model(1), None, _frame(), vector_columns=GROUPS)
    assert everything.own is None and everything.delta is None


def test_a_model_of_other_features_is_an_error_naming_the_branches():
    with pytest.raises(
        EvaluationError, match=r"model of 'main' takes 7 features, but branch 'exp'"
    ):
        score_subsets(
            _model(1, 7), None, _frame(), names=("main", "exp"), on="exp", vector_columns=GROUPS
        )
    with pytest.raises(EvaluationError, match=r"model of 'exp' takes 5 features"):
        score_subsets(
            _model(1),
            _model(2, 5),
            _frame(),
            names=("main", "exp"),
            on="exp",
            vector_columns=GROUPS,
        )


def test_an_empty_training_set_is_an_error_naming_the_branch():
    with pytest.raises(EvaluationError, match=r"branch 'exp'.*no rows"):
        score_subsets(_model(1), None, _frame().iloc[:0], on="exp", vector_columns=GROUPS)


def test_a_training_set_with_a_missing_vector_names_the_column():
    frame = _frame()
    frame.loc[3, "g2"] = None
    with pytest.raises(ValueError, match=r"no 'g2' features"):
        score_subsets(_model(1), None, frame, vector_columns=GROUPS)


def _evaluation(own: bool) -> CrossBranchEvaluation:
    frame = _frame()
    other, mine = _model(1), _model(2)
    subsets = score_subsets(other, mine if own else None, frame, vector_columns=GROUPS)
    source = PublishedModel("main", "main", "c" * 64, "sum", "run-a", other)
    return CrossBranchEvaluation(
        model_from=source,
        own=PublishedModel("exp", "exp", "d" * 64, "sum2", None, mine) if own else None,
        data=TrainingData("exp", "exp", "e" * 64, "sha256:" + "0" * 64, frame),
        subsets=subsets,
    )


def test_table_has_a_row_per_metric_of_the_metric_function_and_subset():
    result = _evaluation(own=True)
    header, rows = result.table()
    assert header == ["subset", "metric", "model of main", "model of exp", "delta"]
    names = list(result.subsets[0].model_from.as_dict())  # whatever Metrics reports
    assert [r[1] for r in rows] == names * 2
    f1 = next(r for r in rows if r[0].startswith("temporal_test") and r[1] == "f1")
    s = result.subsets[1]
    assert f1[2:] == [f"{s.model_from.f1:.4f}", f"{s.own.f1:.4f}", f"{s.delta['f1']:+.4f}"]
    figures = result.metrics()
    assert figures["all_f1"] == result.subsets[0].model_from.f1
    assert figures["temporal_test_own_f1"] == s.own.f1
    assert figures["temporal_test_delta_tp"] == s.model_from.tp - s.own.tp
    assert len(result.markdown().splitlines()) == 2 + len(rows)
    assert "MLflow run run-a" in result.summary() and "MLflow run unknown" in result.summary()


def test_table_without_an_own_model_says_so():
    result = _evaluation(own=False)
    header, rows = result.table()
    assert header[3] == "(no own model)"
    assert all(r[3] == "-" and r[4] == "-" for r in rows)
    assert not [k for k in result.metrics() if "_own_" in k or "_delta_" in k]
    assert "model of exp: none published" in result.summary()
    text = result.text().splitlines()
    assert len(text) == 1 + len(rows)
    assert len({len(line) for line in text}) == 1  # aligned columns

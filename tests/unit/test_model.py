"""Pure model logic: classifier, deterministic training, splits, metrics and persistence."""

from __future__ import annotations

import ast
import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import dfp.kronodroid.model
from dfp.kronodroid.model import (
    MalwareClassifier,
    Metrics,
    TrainConfig,
    evaluate,
    load_model,
    model_digest,
    random_split,
    save_model,
    temporal_split,
    train,
)
from dfp.kronodroid.model.classifier import STD_FLOOR

# Small and fast: a few hundred rows, a few hundred optimizer steps.
FAST = TrainConfig(hidden_sizes=(16, 8), epochs=20, batch_size=32, learning_rate=1e-2, seed=0)


def easy_data(n: int = 600, n_noise: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Counts where malware <=> column 0 > column 1 (never equal), plus noise columns.

    log1p is monotone, so the rule is a linear boundary in the model's normalized input:
    cleanly separable, and any working classifier should get it (almost) all right.
    """
    rng = np.random.default_rng(seed)
    a = rng.poisson(4, size=n * 2)
    b = rng.poisson(4, size=n * 2)
    keep = np.flatnonzero(a != b)[:n]
    noise = rng.poisson(1.0, size=(keep.size, n_noise))
    x = np.column_stack([a[keep], b[keep], noise]).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    return x, y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return easy_data()


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_same_digest_and_metrics_different_seed_differs(data) -> None:
    x, y = data
    first = train(x, y, FAST)
    second = train(x, y, FAST)
    other = train(x, y, FAST.model_copy(update={"seed": 1}))

    assert model_digest(first.model) == model_digest(second.model)
    assert first.loss_history == second.loss_history
    assert evaluate(first.model, x, y) == evaluate(second.model, x, y)
    assert model_digest(other.model) != model_digest(first.model)
    assert len(first.loss_history) == len(first.epoch_seconds) == FAST.epochs


def test_train_restores_threads_and_deterministic_flag(data) -> None:
    x, y = data
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    config = FAST.model_copy(update={"epochs": 1, "threads": threads + 1})
    result = train(x, y, config)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert not result.model.training


def test_balanced_pos_weight_is_benign_over_malware(data) -> None:
    x, y = data
    result = train(
        x[:100], y[:100], FAST.model_copy(update={"epochs": 1, "pos_weight": "balanced"})
    )
    n_pos = int(y[:100].sum())
    assert result.pos_weight == pytest.approx((100 - n_pos) / n_pos)
    assert result.n_positive == n_pos


# --- folded normalization, save/load, exportability ---------------------------------------


def test_forward_equals_manual_log1p_standardize_then_mlp(data) -> None:
    x, _ = data
    torch.manual_seed(0)
    model = MalwareClassifier.from_training_data(x, hidden_sizes=(16, 8)).eval()
    z = np.log1p(x.astype(np.float64))
    np.testing.assert_allclose(model.mean.numpy(), z.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.std.numpy(), z.std(axis=0), rtol=1e-5, atol=1e-6)

    rows = torch.from_numpy(x[:50]).clone()
    rows[0, 0] = -3.0  # negative counts are clamped to 0 by the model
    by_hand = (torch.log1p(torch.clamp(rows, min=0)) - model.mean) / model.std
    with torch.no_grad():
        expected = torch.sigmoid(model.mlp(by_hand))
        got = model(rows)
    assert got.shape == (50, 1)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(model.logits(rows), model.mlp(by_hand))


def test_constant_column_is_centred_not_divided_by_zero() -> None:
    x = np.zeros((20, 3), dtype=np.float32)
    x[:, 1] = np.arange(20)
    x[:, 2] = 7.0
    model = MalwareClassifier.from_training_data(x, hidden_sizes=(4,)).eval()
    assert model.std[0].item() == 1.0 and model.std[2].item() == 1.0
    unseen = torch.tensor([[5.0, 3.0, 1e6]])
    normalized = model.normalize(unseen)
    assert torch.isfinite(normalized).all()
    assert normalized[0, 0].item() == pytest.approx(math.log1p(5.0))
    # A hand-zeroed std is floored, not a division by zero.
    model.std.zero_()
    assert torch.isfinite(model.normalize(unseen)).all()
    assert model.normalize(torch.tensor([[1.0, 0, 0]]))[0, 0].item() == pytest.approx(
        math.log1p(1.0) / STD_FLOOR, rel=1e-4
    )


def test_saved_model_reloads_with_identical_outputs(data, tmp_path) -> None:
    x, y = data
    model = train(x, y, FAST.model_copy(update={"epochs": 2, "dropout": 0.1})).model
    path = save_model(model, tmp_path / "nested" / "model.pt")
    loaded = load_model(path)

    assert isinstance(loaded, MalwareClassifier) and not loaded.training
    assert (loaded.n_features, loaded.hidden_sizes, loaded.dropout) == (10, (16, 8), 0.1)
    assert model_digest(loaded) == model_digest(model)
    rows = torch.from_numpy(x[:64])
    with torch.no_grad():
        torch.testing.assert_close(loaded(rows), model(rows), rtol=0, atol=0)
    assert not any(p.name.endswith(".partial") for p in path.parent.iterdir())


def test_load_rejects_a_foreign_file(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a saved dfp.malware_classifier model"):
        load_model(path)


def test_exported_graph_uses_only_simple_ops(data) -> None:
    x, _ = data
    model = MalwareClassifier.from_training_data(x, hidden_sizes=(8, 4)).eval()
    exported = torch.export.export(model, (torch.from_numpy(x[:4]),))
    ops = {
        str(node.target).split(".")[1]
        for node in exported.graph.nodes
        if node.op == "call_function"
    }
    assert ops <= {"clamp", "log1p", "sub", "div", "linear", "relu", "sigmoid"}, ops
    assert {"log1p", "sigmoid"} <= ops


def test_model_package_imports_no_dagster() -> None:
    """Statically: no module of dfp/kronodroid/model imports dagster, nor any dfp module
    outside it but the platform's shared model logic (dfp.ml)."""
    package = Path(dfp.kronodroid.model.__file__).parent
    offenders = []
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if "dagster" in name or (
                    name.startswith("dfp")
                    and not name.startswith(("dfp.kronodroid.model", "dfp.ml."))
                ):
                    offenders.append(f"{source.name}: {name}")
    assert len(list(package.glob("*.py"))) >= 6
    assert offenders == []


# --- learning ------------------------------------------------------------------------------


def test_learns_an_easy_rule_on_held_out_rows(data) -> None:
    x, y = data
    train_idx, test_idx = random_split(y, test_fraction=0.25, seed=0)
    model = train(x[train_idx], y[train_idx], FAST).model
    metrics = evaluate(model, x[test_idx], y[test_idx])
    # Chance F1 with ~50% malware is ~0.5; the rule is linear in log1p space, so a working
    # model separates (nearly) all 150 held-out rows. 0.95 leaves room for a few boundary
    # rows while failing any model that did not learn the rule.
    assert metrics.f1 > 0.95, metrics
    assert metrics.roc_auc > 0.98, metrics


# --- temporal split ------------------------------------------------------------------------


def _dates(days: list[int | None]) -> list[dt.date | None]:
    start = dt.date(2019, 1, 1)
    return [None if d is None else start + dt.timedelta(days=d) for d in days]


def test_temporal_split_newest_rows_in_test_nulls_in_train() -> None:
    rng = np.random.default_rng(0)
    days: list[int | None] = [int(d) for d in rng.integers(0, 30, size=200)]
    for i in (3, 50, 199):
        days[i] = None
    dates = _dates(days)
    train_idx, test_idx = temporal_split(dates, test_fraction=0.2)

    assert np.intersect1d(train_idx, test_idx).size == 0
    assert np.array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(200))
    assert {3, 50, 199} <= set(train_idx.tolist())
    train_days = [days[i] for i in train_idx if days[i] is not None]
    test_days = [days[i] for i in test_idx]
    assert None not in test_days
    assert max(train_days) < min(test_days)  # every train date older than every test date
    assert abs(test_idx.size - 40) <= 10  # ~20%, up to the size of a day's tie group


def test_temporal_split_keeps_ties_together_on_the_closer_side() -> None:
    # 10 rows: days 0..5 once each, then day 6 four times. Target test size 3 (0.3 * 10):
    # all four day-6 rows (|4 - 3| = 1) beat day 5 onwards (5 rows, |5 - 3| = 2).
    days = [0, 1, 2, 3, 4, 5, 6, 6, 6, 6]
    train_idx, test_idx = temporal_split(pd.Series(_dates(days)), test_fraction=0.3)
    assert test_idx.tolist() == [6, 7, 8, 9]
    # Target 5: day 5 onwards is exactly 5 rows, so the day-5 row joins the day-6 rows.
    _, test_idx = temporal_split(_dates(days), test_fraction=0.5)
    assert test_idx.tolist() == [5, 6, 7, 8, 9]


def test_temporal_split_tie_in_distance_prefers_the_smaller_test_side() -> None:
    # Day 1 has 2 rows, day 2 has 2 rows; target 3 of 8 rows (0.375): 2 or 4 test rows are
    # equally close, the smaller (newest date only) wins.
    days = [0, 0, 0, 0, 1, 1, 2, 2]
    _, test_idx = temporal_split(_dates(days), test_fraction=0.375)
    assert test_idx.tolist() == [6, 7]


def test_temporal_split_accepts_strings_timestamps_and_nat() -> None:
    dates = pd.Series(["2020-01-03", None, "2020-01-01", "2020-01-02", "2020-01-04"])
    train_idx, test_idx = temporal_split(pd.to_datetime(dates), test_fraction=0.2)
    assert test_idx.tolist() == [4] and train_idx.tolist() == [0, 1, 2, 3]
    assert temporal_split(dates.to_numpy(), test_fraction=0.2)[1].tolist() == [4]


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ([5, 5, 5, 5], "share the date 2019-01-06"),
        ([None, None, None], "all 3 rows have a null date"),
        ([], "there are no rows"),
    ],
)
def test_temporal_split_errors_when_a_side_would_be_empty(days, message) -> None:
    with pytest.raises(ValueError, match=f"would leave a side empty: .*{message}"):
        temporal_split(_dates(days), test_fraction=0.2)


def test_temporal_split_all_equal_dates_with_a_null_puts_dated_rows_in_test() -> None:
    train_idx, test_idx = temporal_split(_dates([None, 5, 5, 5]), test_fraction=0.2)
    assert train_idx.tolist() == [0] and test_idx.tolist() == [1, 2, 3]


def test_temporal_split_errors_on_a_single_class_side_with_counts() -> None:
    days = list(range(10))
    labels = [0, 1, 0, 1, 0, 1, 0, 1, 1, 1]  # the two newest rows are both malware
    with pytest.raises(ValueError, match="single class on the test side") as error:
        temporal_split(_dates(days), test_fraction=0.2, labels=labels)
    assert "train 8 rows (benign 4, malware 4" in str(error.value)
    assert "test 2 rows (benign 0, malware 2)" in str(error.value)
    # Mixed labels in the newest rows split fine.
    labels[9] = 0
    assert temporal_split(_dates(days), test_fraction=0.2, labels=labels)[1].tolist() == [8, 9]


def test_temporal_split_rejects_a_bad_fraction() -> None:
    with pytest.raises(ValueError, match="test_fraction must be in"):
        temporal_split(_dates([1, 2]), test_fraction=1.0)


# --- random split --------------------------------------------------------------------------


def test_random_split_is_stratified_and_reproducible() -> None:
    y = np.array([1] * 90 + [0] * 410)
    train_idx, test_idx = random_split(y, test_fraction=0.2, seed=7)
    assert test_idx.size == 100 and train_idx.size == 400
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert y[test_idx].mean() == pytest.approx(0.18, abs=0.01)
    assert y[train_idx].mean() == pytest.approx(0.18, abs=0.01)

    again = random_split(y, test_fraction=0.2, seed=7)
    assert np.array_equal(again[0], train_idx) and np.array_equal(again[1], test_idx)
    other = random_split(y, test_fraction=0.2, seed=8)
    assert not np.array_equal(other[1], test_idx)


def test_random_split_rejects_a_single_class() -> None:
    with pytest.raises(ValueError, match="needs both classes"):
        random_split(np.ones(10), test_fraction=0.2)


# --- metrics -------------------------------------------------------------------------------


class FixedProbabilities(nn.Module):
    """Returns column 0 of its input as the probability; records the mode it was called in."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return x[:, :1]


def test_evaluate_on_a_hand_built_case() -> None:
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    probs = [0.9, 0.8, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4, 0.05, 0.5]
    # threshold 0.5 (inclusive): predicted 1 1 1 0 | 1 0 0 0 0 1 -> tp 3, fn 1, fp 2, tn 4.
    features = np.column_stack([probs, np.zeros(10)]).astype(np.float32)
    model = FixedProbabilities().train()
    metrics = evaluate(model, features, labels, threshold=0.5, batch_size=3)

    assert metrics.confusion_matrix == [[4, 2], [1, 3]]
    assert (metrics.tn, metrics.fp, metrics.fn, metrics.tp) == (4, 2, 1, 3)
    assert metrics.precision == pytest.approx(3 / 5)
    assert metrics.recall == pytest.approx(3 / 4)
    assert metrics.f1 == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    assert metrics.accuracy == pytest.approx(7 / 10)
    # Of the 4 x 6 (malware, benign) pairs, 19 rank the malware row higher.
    assert metrics.roc_auc == pytest.approx(19 / 24, rel=1e-6)
    # Ranked by probability the malware rows come 1st, 2nd, 4th and 8th: average precision
    # (1/1 + 2/2 + 3/4 + 4/8) / 4; MCC (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)).
    assert metrics.pr_auc == pytest.approx((1 + 1 + 3 / 4 + 4 / 8) / 4, rel=1e-6)
    assert metrics.mcc == pytest.approx((3 * 4 - 2 * 1) / math.sqrt(5 * 4 * 6 * 5), rel=1e-9)
    assert (metrics.n, metrics.n_positive, metrics.threshold) == (10, 4, 0.5)
    assert model.modes == [False] * 4  # eval mode, batches of 3 -> 4 calls
    assert model.training  # previous mode restored

    flat = metrics.as_dict()
    assert set(flat) == {
        "f1",
        "precision",
        "recall",
        "roc_auc",
        "pr_auc",
        "mcc",
        "accuracy",
        "threshold",
        "n",
        "n_positive",
        "tn",
        "fp",
        "fn",
        "tp",
    }
    assert all(type(v) is float for v in flat.values())
    assert (flat["tp"], flat["fp"], flat["n"]) == (3.0, 2.0, 10.0)

    strict = evaluate(model, features, labels, threshold=0.75)
    assert strict.confusion_matrix == [[6, 0], [2, 2]]
    assert strict.precision == 1.0 and strict.recall == 0.5


def test_evaluate_without_positive_predictions_or_classes() -> None:
    features = np.array([[0.1], [0.2], [0.3]], dtype=np.float32)
    metrics = evaluate(FixedProbabilities(), features, [1, 0, 1])
    assert (metrics.precision, metrics.recall, metrics.f1) == (0.0, 0.0, 0.0)
    one_class = evaluate(FixedProbabilities(), features, [0, 0, 0])
    assert math.isnan(one_class.roc_auc) and one_class.accuracy == 1.0
    assert math.isnan(one_class.pr_auc) and one_class.mcc == 0.0
    assert isinstance(one_class, Metrics)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        evaluate(FixedProbabilities(), features, [0, 2, 1])


# --- training input validation -------------------------------------------------------------


def _valid() -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.array([0, 1] * 5)
    return x, y


def _case(name: str) -> tuple[object, object]:
    x, y = _valid()
    if name == "one_dimensional":
        return x.ravel(), y
    if name == "three_dimensional":
        return x.reshape(10, 2, 2), y
    if name == "zero_rows":
        return x[:0], y[:0]
    if name == "row_mismatch":
        return x, y[:9]
    if name == "nan":
        x[2, 1] = np.nan
        return x, y
    if name == "inf":
        x[7, 3] = -np.inf
        return x, y
    if name == "float32_overflow":
        return np.where(x == 5, 1e300, x.astype(np.float64)), y
    if name == "label_two":
        y = y.copy()
        y[4] = 2
        return x, y
    if name == "label_nan":
        return x, np.where(np.arange(10) == 6, np.nan, y.astype(np.float64))
    if name == "one_class":
        return x, np.ones(10, dtype=np.int64)
    if name == "labels_2d":
        return x, y.reshape(10, 1)
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("one_dimensional", r"features must be a 2-D array .* got shape \(40,\)"),
        ("three_dimensional", r"features must be a 2-D array .* got shape \(10, 2, 2\)"),
        ("zero_rows", r"features has zero rows"),
        ("row_mismatch", r"row count mismatch: features has 10 rows but labels has 9"),
        ("nan", r"1 non-finite values .* positions: \[\(2, 1\)\], values: \[nan\]"),
        ("inf", r"1 non-finite values .* positions: \[\(7, 3\)\], values: \[-inf\]"),
        ("float32_overflow", r"non-finite values \(NaN/inf, or beyond float32 .*\(1, 1\)"),
        ("label_two", r"labels must be 0 \(benign\) or 1 \(malware\); 1 are not.*\[4\].*\[2\]"),
        ("label_nan", r"labels must be 0 .* positions: \[6\], values: \[nan\]"),
        ("one_class", r"single class: all 10 rows are malware"),
        ("labels_2d", r"labels must be a 1-D array"),
    ],
)
def test_train_rejects_bad_inputs_naming_the_problem(name: str, message: str) -> None:
    features, labels = _case(name)
    with pytest.raises(ValueError, match=message):
        train(features, labels, FAST)  # type: ignore[arg-type]


def test_train_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="pos_weight"):
        TrainConfig(pos_weight=-1.0)
    with pytest.raises(ValueError, match="hidden sizes"):
        TrainConfig(hidden_sizes=(8, 0))
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)

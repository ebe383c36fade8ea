"""Honest reports: class counts and date ranges per split, the share warning, PR-AUC and MCC,
the gradient-boosted baseline, and `dfp reproduce` comparing runs recorded before them."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, matthews_corrcoef

from dfp.kronodroid.model import (
    ClassCounts,
    SplitSummary,
    TrainConfig,
    baseline_probabilities,
    class_counts,
    date_range,
    fit_baseline,
    metrics_from_probabilities,
    share_warning,
    summarize_split,
)
from dfp.kronodroid.model.report import report_markdown, share_warnings, split_table
from dfp.kronodroid.training import (
    fit_and_evaluate,
    training_matrix,
)
from dfp.ml.metrics import compare_with_recorded
from tests.unit.test_training import _frame


def _summary(train: tuple[int, int], test: tuple[int, int]) -> SplitSummary:
    return SplitSummary(
        train=ClassCounts(benign=train[0], malware=train[1]),
        test=ClassCounts(benign=test[0], malware=test[1]),
        train_dates=("2015-01-01", "2018-12-31"),
        test_dates=("2019-01-01", "2019-12-31"),
    )


def test_class_counts_and_bad_labels():
    counts = class_counts(np.array([1, 0, 0, 1, 1, 0, 0]))
    assert (counts.benign, counts.malware, counts.n) == (4, 3, 7)
    assert counts.malware_share == pytest.approx(3 / 7)
    assert class_counts([]).n == 0 and math.isnan(class_counts([]).malware_share)
    with pytest.raises(ValueError, match=r"labels must be 0 or 1; 1 are not.*positions \[2\]"):
        class_counts([0, 1, 2])


def test_date_range_ignores_nulls_and_times():
    dates = [dt.datetime(2019, 3, 4, 23, 59), None, "2017-01-02", pd.NaT, dt.date(2018, 5, 6)]
    assert date_range(dates) == ("2017-01-02", "2019-03-04")
    assert date_range([None, pd.NaT]) is None
    utc = pd.Series(pd.to_datetime(["2020-02-01T01:00", "2020-01-01T00:00"], utc=True))
    assert date_range(utc) == ("2020-01-01", "2020-02-01")


def test_summarize_split_counts_each_side():
    labels = np.array([0, 0, 1, 0, 1, 1, 1, 0])
    dates = pd.date_range("2016-01-01", periods=8, freq="MS")
    train_idx, test_idx = np.array([0, 1, 2, 3, 4]), np.array([5, 6, 7])
    summary = summarize_split(labels, dates, train_idx, test_idx)
    assert summary.train == ClassCounts(benign=3, malware=2)
    assert summary.test == ClassCounts(benign=1, malware=2)
    assert summary.train_dates == ("2016-01-01", "2016-05-01")
    assert summary.test_dates == ("2016-06-01", "2016-08-01")
    with pytest.raises(ValueError, match="labels has 8 rows but event_dates has 7"):
        summarize_split(labels, dates[:7], train_idx, test_idx)


def test_share_warning_fires_when_the_test_side_is_far_more_malware():
    # The holdout of issue 15: test 75 % malware, train about 5 %.
    summary = _summary(train=(950, 50), test=(25, 75))
    line = share_warning("temporal", summary, 1.5)
    assert line is not None
    assert line.startswith("temporal split: the test side is 75.0% malware (75 of 100)")
    assert "the train side 5.0% (50 of 1000), 15.00x apart (more than 1.5x)" in line
    assert "The test side holds more malware than training did" in line
    # Far less malware on the test side warns too, naming the other class.
    reverse = share_warning("random", _summary(train=(25, 75), test=(950, 50)))
    assert reverse is not None and "holds less malware than training did" in reverse
    # No malware at all on one side: an infinite ratio.
    assert share_warning("temporal", _summary(train=(90, 10), test=(10, 0))) is not None


def test_share_warning_stays_quiet_within_the_factor():
    # 20 % vs 29 %: 1.45x apart, under the default 1.5.
    close = _summary(train=(800, 200), test=(71, 29))
    assert share_warning("temporal", close) is None
    assert share_warning("temporal", close, factor=1.4) is not None  # the factor is the knob
    assert share_warning("random", _summary(train=(800, 200), test=(200, 50))) is None
    # Exactly at the factor is not "more than" it.
    assert share_warning("random", _summary(train=(80, 20), test=(70, 30))) is None
    with pytest.raises(ValueError, match="share factor must be >= 1, got 0.5"):
        share_warning("random", close, factor=0.5)


def test_pr_auc_and_mcc_agree_with_sklearn_on_small_arrays():
    rng = np.random.default_rng(4)
    for n in (7, 20, 51):
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        probabilities = rng.random(n)
        metrics = metrics_from_probabilities(probabilities, labels, threshold=0.4)
        predicted = (probabilities >= 0.4).astype(int)
        assert metrics.pr_auc == pytest.approx(average_precision_score(labels, probabilities))
        assert metrics.mcc == pytest.approx(matthews_corrcoef(labels, predicted))
    # Perfect and perfectly wrong rankings.
    perfect = metrics_from_probabilities([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert (perfect.pr_auc, perfect.mcc) == (1.0, 1.0)
    wrong = metrics_from_probabilities([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])
    # malware ranked 3rd and 4th: (1/3 + 2/4) / 2
    assert wrong.mcc == -1.0 and wrong.pr_auc == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_baseline_is_deterministic_and_learns_an_easy_rule():
    rng = np.random.default_rng(0)
    features = rng.poisson(3, (400, 5)).astype(np.float32)
    labels = (features[:, 0] > features[:, 1]).astype(np.int64)
    first = fit_baseline(features[:300], labels[:300], seed=3, max_iter=30)
    second = fit_baseline(features[:300], labels[:300], seed=3, max_iter=30)
    p1 = baseline_probabilities(first, features[300:])
    np.testing.assert_array_equal(p1, baseline_probabilities(second, features[300:]))
    assert p1.shape == (100,) and ((p1 >= 0) & (p1 <= 1)).all()
    assert metrics_from_probabilities(p1, labels[300:]).f1 > 0.9
    with pytest.raises(ValueError, match="single class"):
        fit_baseline(features, np.zeros(400, dtype=np.int64))
    with pytest.raises(ValueError, match="non-finite"):
        bad = features.copy()
        bad[3, 2] = np.nan
        fit_baseline(bad, labels)


def test_baseline_gives_the_same_predictions_on_more_threads():
    # The default config fits the baseline on 2 OpenMP threads; 1 gave the figures recorded
    # before that. Rows enough for sklearn's early stopping (above 10,000) and several bins.
    rng = np.random.default_rng(5)
    features = rng.poisson(2, (12_000, 30)).astype(np.float32)
    labels = (features[:, 0] + features[:, 3] + rng.normal(0, 1, 12_000) > 4).astype(np.int64)
    one, two = (
        baseline_probabilities(
            fit_baseline(features[:10_500], labels[:10_500], seed=2, threads=t, max_iter=40),
            features[10_500:],
            threads=t,
        )
        for t in (1, 2)
    )
    np.testing.assert_array_equal(one, two)


def test_outcome_fits_the_baseline_on_its_own_thread_count(monkeypatch):
    import dfp.kronodroid.training as training

    seen = []
    real_fit = training.fit_baseline

    def fit(*args, **kwargs):
        seen.append(kwargs["threads"])
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(training, "fit_baseline", fit)
    frame = _frame()
    features, labels = training_matrix(frame, ["g1", "g2"])
    config = TrainConfig(epochs=1, batch_size=64, baseline_max_iter=5, baseline_threads=3)
    fit_and_evaluate(features, labels, frame["event_timestamp"], config)
    assert seen == [3, 3]  # temporal and random; the MLP keeps `threads` (1)
    assert TrainConfig().baseline_threads == 2


def test_a_config_recorded_before_baseline_threads_reads_as_it_ran():
    from dfp.kronodroid.reproduce import recorded_train_config

    old = TrainConfig(threads=1).model_dump(mode="json")
    del old["baseline_threads"]
    assert recorded_train_config(json.dumps(old)).baseline_threads == 1
    new = TrainConfig(baseline_threads=4).model_dump_json()
    assert recorded_train_config(new) == TrainConfig(baseline_threads=4)


def test_outcome_reports_baseline_metrics_and_class_counts_per_split():
    frame = _frame()
    features, labels = training_matrix(frame, ["g1", "g2"])
    config = TrainConfig(epochs=2, batch_size=64, seed=1, baseline_max_iter=20)
    outcome = fit_and_evaluate(features, labels, frame["event_timestamp"], config)
    metrics = outcome.metrics()
    for split in ("temporal", "random"):
        for name in ("f1", "pr_auc", "mcc", "roc_auc", "tp"):
            assert f"{split}_{name}" in metrics and f"baseline_{split}_{name}" in metrics
        summary = outcome.splits[split]
        assert summary.train.n == outcome.rows[f"{split}_train"]
        assert summary.test.n == outcome.rows[f"{split}_test"]
        assert summary.test.malware == outcome.split_metrics(split).n_positive
        assert outcome.baseline[split].n == summary.test.n
    # The temporal test side is the newest 80 days of the 400 (one row per day).
    days = [d.date().isoformat() for d in frame["event_timestamp"]]
    temporal = outcome.splits["temporal"]
    assert temporal.test_dates == (days[320], days[399])
    assert temporal.train_dates == (days[0], days[319])
    expected_malware = int(labels[320:].sum())
    assert temporal.test.malware == expected_malware
    assert temporal.train == ClassCounts(
        benign=int((labels[:320] == 0).sum()), malware=int(labels[:320].sum())
    )
    assert outcome.baseline["temporal"].f1 > 0.9  # the synthetic rule is easy for trees too
    params = outcome.params()
    assert params["temporal_test_malware"] == str(expected_malware)
    assert params["temporal_test_dates"] == f"{days[320]} to {days[399]}"
    assert params["baseline_max_iter"] == "20"


def test_report_markdown_shows_both_models_counts_and_warnings():
    m = metrics_from_probabilities([0.1, 0.6, 0.8, 0.3], [0, 1, 1, 0])
    b = metrics_from_probabilities([0.2, 0.4, 0.9, 0.1], [0, 1, 1, 0])
    models = {"MLP": {"temporal": m, "random": m}, "baseline": {"temporal": b, "random": b}}
    splits = {"temporal": _summary((950, 50), (25, 75)), "random": _summary((780, 220), (195, 55))}
    text = report_markdown(models, splits, 1.5, note="baseline: trees")
    header = text.splitlines()[0]
    assert header == (
        "| metric | MLP (temporal) | baseline (temporal) | MLP (random) | baseline (random) |"
    )
    assert f"| mcc | {m.mcc:.4f} | {b.mcc:.4f} | {m.mcc:.4f} | {b.mcc:.4f} |" in text
    assert f"| recall | 1.0000 | {b.recall:.4f} | 1.0000 | {b.recall:.4f} |" in text
    assert "| temporal | test | 100 | 25 | 75 | 75.0% | 2019-01-01 to 2019-12-31 |" in text
    assert "| random | train | 1000 | 780 | 220 | 22.0% | 2015-01-01 to 2018-12-31 |" in text
    assert "baseline: trees" in text
    warnings = [line for line in text.splitlines() if line.startswith("**Warning:**")]
    assert warnings == [f"**Warning:** {share_warnings(splits, 1.5)[0]}"]
    assert warnings[0].startswith("**Warning:** temporal split:")
    assert not [ln for ln in report_markdown(models, splits, 20.0).splitlines() if "Warning" in ln]
    undated = SplitSummary(
        train=ClassCounts(benign=1, malware=1),
        test=ClassCounts(benign=1, malware=1),
        train_dates=None,
        test_dates=("2020-01-01", "2020-01-01"),
    )
    assert "| s | train | 2 | 1 | 1 | 50.0% | none dated |" in split_table({"s": undated})
    with pytest.raises(ValueError, match="model 'baseline' has splits \\['temporal'\\]"):
        report_markdown({"MLP": {"temporal": m, "random": m}, "baseline": {"temporal": b}}, {})


def test_reproduce_compares_only_metrics_a_run_recorded_before_them():
    """A run recorded before PR-AUC, MCC and the baseline has only the old names: those are
    compared, the new ones are not differences."""
    old_run = {"temporal_f1": 0.91, "temporal_roc_auc": 0.97, "random_f1": 0.95}
    rerun = {
        **old_run,
        "temporal_pr_auc": 0.93,
        "temporal_mcc": 0.8,
        "baseline_temporal_f1": 0.9,
    }
    compared, differences = compare_with_recorded(old_run, rerun, 1e-6)
    assert compared == old_run and differences == {}
    # A changed old metric is still caught.
    compared, differences = compare_with_recorded(old_run, {**rerun, "random_f1": 0.9}, 1e-6)
    assert differences == {"random_f1": (0.95, 0.9)}
    # A recorded metric this code no longer computes is not compared either.
    compared, differences = compare_with_recorded({**old_run, "gone": 1.0}, rerun, 1e-6)
    assert "gone" not in compared and differences == {}
    # Nothing shared: nothing compared (reproduce refuses that case).
    assert compare_with_recorded({"x": 1.0}, {"y": 1.0}) == ({}, {})


def test_undated_apps_train_and_stay_out_of_date_ranges():
    from dfp.kronodroid.features import NULL_EVENT_TIMESTAMP
    from dfp.kronodroid.training import fit_training_set

    frame = _frame(200, seed=2)
    undated = frame.index % 10 == 0
    frame.loc[undated, "event_timestamp"] = pd.Timestamp(NULL_EVENT_TIMESTAMP)
    config = TrainConfig(epochs=1, batch_size=64, baseline_max_iter=5)
    outcome, _ = fit_training_set(frame, ["g1", "g2"], config)
    temporal = outcome.splits["temporal"]
    dated = frame.loc[~undated, "event_timestamp"].sort_values()
    assert temporal.train_dates[0] == dated.iloc[0].date().isoformat()
    assert temporal.test_dates[1] == dated.iloc[-1].date().isoformat()
    # Every undated row is on the train side.
    test_start = pd.Timestamp(temporal.test_dates[0], tz="UTC")
    on_test = frame["event_timestamp"] >= test_start
    assert temporal.test.n == int(on_test.sum()) and not (on_test & undated).any()
    assert temporal.test.malware == int(frame.loc[on_test, "label"].sum())

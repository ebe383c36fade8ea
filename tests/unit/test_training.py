"""The training run shared by the asset and `dfp reproduce`: matrix, two evaluations,
comparison; plus the MLflow tracking defaults and Dagster's materialization window."""

import io
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dfp.kronodroid.model import TrainConfig
from dfp.kronodroid.training import (
    fit_and_evaluate,
    fit_training_set,
    in_entity_order,
    parity_rows,
    parity_rows_from_parquet,
    training_matrix,
    training_set_digest,
)
from dfp.ml.metrics import compare_metrics
from dfp.tracking import artifact_root, default_tracking_uri


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    a = rng.poisson(3, (n, 4)).astype(np.float32) + labels[:, None] * 6
    b = rng.poisson(1, (n, 2)).astype(np.float32)
    return pd.DataFrame(
        {
            "sha256": [f"{i:064x}" for i in range(n)],
            "capture": ["emulator"] * n,
            "event_timestamp": pd.date_range("2015-01-01", periods=n, freq="D", tz="UTC"),
            "label": labels,
            "g1": list(a),
            "g2": list(b),
        }
    )


class _CountingFile(io.BytesIO):
    """A parquet file that counts the bytes read from it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def _parquet(frame: pd.DataFrame, row_group_size: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), sink, row_group_size=row_group_size
    )
    return sink.getvalue()


def test_parity_batch_of_an_ordered_training_set_is_read_from_its_leading_row_groups():
    frame = in_entity_order(_frame(4000, seed=3))
    # Incompressible vectors, so the file is mostly data (pyarrow reads 64 KiB for the footer).
    noise = np.random.default_rng(0).random((4000, 200), dtype=np.float32)
    frame["g3"] = list(noise)
    expected = parity_rows(frame, ["g1", "g2", "g3"], 16)
    source = _CountingFile(_parquet(frame, row_group_size=200))
    got = parity_rows_from_parquet(source, ["g1", "g2", "g3"], 16)
    np.testing.assert_array_equal(got, expected)
    assert source.bytes_read < len(source.getvalue()) / 4


def test_parity_batch_of_an_unordered_or_one_group_training_set_reads_it_whole():
    frame = in_entity_order(_frame(4000, seed=3))
    expected = parity_rows(frame, ["g1", "g2"], 16)
    shuffled = frame.sample(frac=1.0, random_state=0)
    for data in (_parquet(shuffled, row_group_size=200), _parquet(frame, row_group_size=10_000)):
        source = _CountingFile(data)
        np.testing.assert_array_equal(parity_rows_from_parquet(source, ["g1", "g2"], 16), expected)
        assert source.bytes_read > len(data) / 2


def test_parity_batch_reads_on_while_a_class_is_short():
    # Only benign rows in the first groups: the malware half comes from later groups.
    frame = in_entity_order(_frame(2000, seed=4))
    frame.loc[:1499, "label"] = 0
    expected = parity_rows(frame, ["g1", "g2"], 16)
    assert (expected is not None) and len(expected) == 16
    got = parity_rows_from_parquet(_CountingFile(_parquet(frame, 100)), ["g1", "g2"], 16)
    np.testing.assert_array_equal(got, expected)


def test_parity_batch_reads_the_next_group_when_a_key_spans_two():
    # One sha256 on both sides of a group boundary, its first capture ("emulator") in the
    # second group: the first malware row by (sha256, capture) is there, not in group 0.
    frame = in_entity_order(_frame(400, seed=5))
    frame.loc[:198, "label"] = 0
    frame.loc[199:200, "label"] = 1
    frame.loc[200, "sha256"] = frame.loc[199, "sha256"]
    frame.loc[199, "capture"], frame.loc[200, "capture"] = "real_device", "emulator"
    expected = parity_rows(frame, ["g1", "g2"], 2)
    np.testing.assert_array_equal(
        expected[1], training_matrix(frame.loc[[200]], ["g1", "g2"])[0][0]
    )
    got = parity_rows_from_parquet(_CountingFile(_parquet(frame, 200)), ["g1", "g2"], 2)
    np.testing.assert_array_equal(got, expected)


def test_matrix_concatenates_groups_in_order():
    frame = _frame(10)
    features, labels = training_matrix(frame, ["g1", "g2"])
    assert features.shape == (10, 6) and features.dtype == np.float32
    np.testing.assert_array_equal(features[3, :4], frame["g1"][3])
    np.testing.assert_array_equal(features[3, 4:], frame["g2"][3])
    np.testing.assert_array_equal(labels, frame["label"])


def test_missing_vectors_name_the_entity():
    frame = _frame(10)
    frame.loc[2, "g2"] = None
    with pytest.raises(ValueError, match=r"1 row\(s\) have no 'g2' features.*" + "0" * 63 + "2"):
        training_matrix(frame, ["g1", "g2"])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['g3'\]"):
        training_matrix(frame, ["g1", "g3"])


def test_fit_and_evaluate_is_deterministic_and_reports_both_splits():
    frame = _frame()
    features, labels = training_matrix(frame, ["g1", "g2"])
    config = TrainConfig(epochs=3, batch_size=64, seed=1)
    first = fit_and_evaluate(features, labels, frame["event_timestamp"], config)
    second = fit_and_evaluate(features, labels, frame["event_timestamp"], config)
    assert first.digest == second.digest
    assert first.metrics() == second.metrics()
    assert first.temporal.f1 > 0.9 and first.random.f1 > 0.9
    assert first.rows["temporal_test"] == 80 and first.rows["random_test"] == 80
    assert {"temporal_f1", "random_roc_auc", "temporal_tp"} <= set(first.metrics())
    assert first.params()["hidden_sizes"] == "[128, 64]"


def test_shuffled_rows_train_the_same_model_with_the_same_metrics():
    """Two rebuilds of one training set may return its rows in any order (another offline
    store, a re-run dbt model): trained in entity order, they give one model and one set of
    metrics; the same rows fed in arrival order do not."""
    frame = _frame(300, seed=3)
    frame.loc[frame.index % 3 == 0, "capture"] = "real_device"  # both captures per key order
    frame.loc[frame.index % 5 == 1, "sha256"] = frame["sha256"].shift(1)  # keys with 2 captures
    frame = frame.drop_duplicates(["sha256", "capture"]).reset_index(drop=True)
    shuffled = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert not shuffled["sha256"].equals(frame["sha256"])
    config = TrainConfig(epochs=2, batch_size=32, seed=1)

    first, first_features = fit_training_set(frame, ["g1", "g2"], config)
    second, second_features = fit_training_set(shuffled, ["g1", "g2"], config)
    assert first.digest == second.digest
    assert first.metrics() == second.metrics()
    np.testing.assert_array_equal(first_features, second_features)
    ordered = in_entity_order(shuffled)
    assert list(zip(ordered["sha256"], ordered["capture"], strict=True)) == sorted(
        zip(frame["sha256"], frame["capture"], strict=True)
    )
    assert training_set_digest(ordered, ["g1", "g2"]) == training_set_digest(
        in_entity_order(frame), ["g1", "g2"]
    )

    # The order is what the sort fixes: trained as the rows came, the model differs.
    features, labels = training_matrix(shuffled, ["g1", "g2"])
    arrival = fit_and_evaluate(features, labels, shuffled["event_timestamp"], config)
    assert arrival.digest != first.digest


def test_fit_and_evaluate_reports_each_epoch_of_both_trainings_in_order():
    frame = _frame()
    features, labels = training_matrix(frame, ["g1", "g2"])
    config = TrainConfig(epochs=3, batch_size=64, seed=1)
    epochs: list[tuple[str, int, float, float]] = []
    outcome = fit_and_evaluate(
        features, labels, frame["event_timestamp"], config, on_epoch=lambda *a: epochs.append(a)
    )
    assert [(split, n) for split, n, _, _ in epochs] == [
        ("temporal", 1),
        ("temporal", 2),
        ("temporal", 3),
        ("random", 1),
        ("random", 2),
        ("random", 3),
    ]
    # The reported seconds are the ones the outcome keeps for the published (temporal) model.
    assert [s for split, _, _, s in epochs if split == "temporal"] == outcome.epoch_seconds
    assert all(loss > 0 for _, _, loss, _ in epochs)
    # Reporting changes nothing in the training.
    silent = fit_and_evaluate(features, labels, frame["event_timestamp"], config)
    assert silent.digest == outcome.digest


def test_digest_changes_with_any_value():
    frame = _frame(20)
    digest = training_set_digest(frame, ["g1", "g2"])
    assert digest == training_set_digest(frame.copy(), ["g1", "g2"])
    frame.at[4, "g2"] = frame.at[4, "g2"] + 1
    assert training_set_digest(frame, ["g1", "g2"]) != digest


def test_compare_metrics_tolerance_and_missing():
    assert compare_metrics({"f1": 0.5}, {"f1": 0.5 + 5e-7}) == {}
    assert compare_metrics({"f1": 0.5}, {"f1": 0.51}) == {"f1": (0.5, 0.51)}
    assert compare_metrics({"f1": 0.5}, {}) == {"f1": (0.5, None)}


def test_tracking_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    uri = default_tracking_uri()
    assert uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert artifact_root(uri) == (tmp_path / "mlflow" / "artifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri() == "http://127.0.0.1:5000"
    assert artifact_root("http://127.0.0.1:5000") is None


def test_materialization_window():
    from dfp.kronodroid.features import EARLIEST_EVENT
    from dfp_assets.kronodroid.features import FeastOnlineConfig, _window

    started = datetime(2026, 1, 2, tzinfo=UTC)
    assert _window(FeastOnlineConfig(), started) == (EARLIEST_EVENT, started)
    start, end = _window(FeastOnlineConfig(start="2020-01-01", end="2021-01-01T00:00:00"), started)
    assert start == datetime(2020, 1, 1, tzinfo=UTC) and end == datetime(2021, 1, 1, tzinfo=UTC)
    import dagster as dg

    with pytest.raises(dg.Failure, match="empty materialization window"):
        _window(FeastOnlineConfig(start="2021-01-01", end="2020-01-01"), started)

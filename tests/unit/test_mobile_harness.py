"""The mobile benchmark harness: in process, as a CLI, and in a fresh subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dfp.kronodroid.model import MalwareClassifier, save_model
from mobile.exporters import export_model
from mobile.harness import benchmark_row, main, measure, measure_in_subprocess, peak_rss_bytes

N_FEATURES = 40
KEYS = {
    "format",
    "runtime",
    "runtime_version",
    "model_path",
    "file_size_bytes",
    "load_ms",
    "iterations",
    "warmup",
    "latencies_us",
    "total_seconds",
    "throughput_per_s",
    "peak_rss_bytes",
}


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    train = np.random.default_rng(0).poisson(2.0, size=(128, N_FEATURES)).astype(np.float32)
    model = MalwareClassifier.from_training_data(train, hidden_sizes=(8,))
    out_dir = tmp_path_factory.mktemp("harness")
    paths = {fmt: export_model(model, fmt, out_dir)[0] for fmt in ("onnx", "tflite")}
    paths["pytorch"] = save_model(model, out_dir / "model.pt")
    return paths


def _check_result(result: dict, fmt: str, path: Path, iterations: int, warmup: int) -> None:
    assert set(result) == KEYS
    assert result["format"] == fmt
    assert result["model_path"] == str(path)
    assert result["file_size_bytes"] == path.stat().st_size
    assert (result["iterations"], result["warmup"]) == (iterations, warmup)
    latencies = np.asarray(result["latencies_us"])
    assert latencies.shape == (iterations,)
    assert np.all(latencies > 0)
    assert np.percentile(latencies, 50) > 0 and np.percentile(latencies, 99) > 0
    assert result["load_ms"] > 0
    # The whole run includes load and warmup, so it outlasts the timed calls.
    assert result["total_seconds"] >= latencies.sum() / 1e6
    expected_throughput = iterations / (latencies.sum() / 1e6)
    assert result["throughput_per_s"] == pytest.approx(expected_throughput, rel=1e-9)
    assert result["peak_rss_bytes"] > 10 * 2**20
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize(
    ("fmt", "runtime"), [("onnx", "onnxruntime"), ("tflite", "litert"), ("pytorch", "pytorch")]
)
def test_measure_returns_sane_numbers(model_paths: dict[str, Path], fmt: str, runtime: str) -> None:
    result = measure(fmt, model_paths[fmt], iterations=200, warmup=5)
    _check_result(result, fmt, model_paths[fmt], iterations=200, warmup=5)
    assert result["runtime"] == runtime


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iterations": 0}, "iterations must be >= 1"),
        ({"warmup": -1}, "warmup must be >= 0"),
    ],
)
def test_measure_validates_counts(model_paths: dict[str, Path], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure("onnx", model_paths["onnx"], **kwargs)


def test_measure_rejects_unknown_format(model_paths: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="'coreml'"):
        measure("coreml", model_paths["onnx"])


def test_benchmark_row_is_fixed_and_non_negative() -> None:
    row = benchmark_row(N_FEATURES, seed=3)
    assert row.shape == (1, N_FEATURES) and row.dtype == np.float32
    assert row.flags.c_contiguous and np.all(row >= 0) and np.any(row > 0)
    np.testing.assert_array_equal(row, benchmark_row(N_FEATURES, seed=3))
    assert not np.array_equal(row, benchmark_row(N_FEATURES, seed=4))


def test_main_prints_exactly_one_json_line(
    model_paths: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    path = model_paths["tflite"]
    argv = ["--format", "tflite", "--model", str(path), "--iterations", "20", "--warmup", "2"]
    assert main(argv) == 0
    out = capfd.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1, out
    _check_result(json.loads(lines[0]), "tflite", path, iterations=20, warmup=2)


def test_measure_in_subprocess(model_paths: dict[str, Path]) -> None:
    path = model_paths["onnx"]
    result = measure_in_subprocess("onnx", path, iterations=50, warmup=3, timeout=120)
    _check_result(result, "onnx", path.resolve(), iterations=50, warmup=3)
    assert result["runtime"] == "onnxruntime"
    # The child's peak is its own: this process (torch loaded) is far larger, and a peak
    # inherited across exec (ru_maxrss) would be at least this process's.
    assert result["peak_rss_bytes"] < peak_rss_bytes()


def test_measure_in_subprocess_reports_the_child_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(RuntimeError, match="exited with code 1") as excinfo:
        measure_in_subprocess("onnx", missing, iterations=5, warmup=0, timeout=120)
    message = str(excinfo.value)
    assert "stderr tail" in message
    assert f"FileNotFoundError: no onnx model file at {missing}" in message

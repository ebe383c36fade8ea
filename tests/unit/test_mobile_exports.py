"""Mobile exports (ExecuTorch, TFLite, ONNX), their runtimes and parity with eager PyTorch."""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from dfp.kronodroid.model import MalwareClassifier, save_model
from mobile.exporters import FILE_NAMES, FORMATS, ExportInfo, export_model
from mobile.parity import ParityReport, check_parity
from mobile.runtimes import RUNTIME_OF, Runner, load_runner

N_FEATURES = 476
HIDDEN = (16, 8)
ALL_RUNNERS = (*FORMATS, "pytorch")


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Sparse, count-like columns with a heavy tail, as in Kronodroid.
    counts = rng.poisson(3.0, size=(n, N_FEATURES)) * (rng.random((n, N_FEATURES)) < 0.3)
    return counts.astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> MalwareClassifier:
    """A small fitted model whose logits straddle 0, so both classes occur."""
    torch.manual_seed(0)
    train = _rows(512, seed=1)
    model = MalwareClassifier.from_training_data(train, hidden_sizes=HIDDEN).eval()
    with torch.no_grad():
        logits = model.logits(torch.from_numpy(train))
        model.mlp[-1].bias -= logits.median()
    return model


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return _rows(64, seed=2)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def exports(reference: MalwareClassifier, export_dir: Path) -> dict[str, tuple[Path, ExportInfo]]:
    return {fmt: export_model(reference, fmt, export_dir) for fmt in FORMATS}


@pytest.fixture(scope="module")
def model_paths(
    exports: dict[str, tuple[Path, ExportInfo]],
    reference: MalwareClassifier,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """A model file per runner format, the eager ``.pt`` included."""
    pt = save_model(reference, tmp_path_factory.mktemp("pt") / "model.pt")
    return {**{fmt: path for fmt, (path, _) in exports.items()}, "pytorch": pt}


@pytest.fixture(scope="module")
def perturbed_paths(
    reference: MalwareClassifier, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The reference with its output bias shifted, exported: a runtime running the wrong model."""
    other = copy.deepcopy(reference)
    with torch.no_grad():
        other.mlp[-1].bias += 4.0
    out_dir = tmp_path_factory.mktemp("perturbed")
    return {fmt: export_model(other, fmt, out_dir)[0] for fmt in FORMATS}


# --- exports -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_writes_the_file_its_info_describes(
    exports: dict[str, tuple[Path, ExportInfo]], export_dir: Path, fmt: str
) -> None:
    path, info = exports[fmt]
    assert path == export_dir / FILE_NAMES[fmt]
    assert path.is_file()
    data = path.read_bytes()
    assert info.format == fmt
    assert info.file_name == FILE_NAMES[fmt]
    assert info.size_bytes == len(data) > 0
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.export_seconds > 0
    assert (info.input_name, info.input_shape) == ("features", [1, N_FEATURES])
    assert (info.output_name, info.output_shape) == ("probability", [1, 1])
    assert info.exporter["torch"] == importlib.metadata.version("torch")
    expected_packages = {
        "executorch": ["executorch"],
        "tflite": ["litert-torch", "ai-edge-litert"],
        "onnx": ["onnx", "onnxscript"],
    }[fmt]
    for package in expected_packages:
        assert info.exporter[package] == importlib.metadata.version(package)
    # The info is what the lead stores as JSON: it must round-trip.
    assert ExportInfo.model_validate_json(info.model_dump_json()) == info


def test_exports_are_single_self_contained_files(
    exports: dict[str, tuple[Path, ExportInfo]], export_dir: Path
) -> None:
    # No ONNX external-data sidecar, no scratch directory left behind.
    assert sorted(p.name for p in export_dir.iterdir()) == sorted(FILE_NAMES.values())


def test_onnx_export_details_and_signature(
    exports: dict[str, tuple[Path, ExportInfo]],
) -> None:
    path, info = exports["onnx"]
    assert info.details["opset"] == 18
    assert isinstance(info.details["ir_version"], int) and info.details["ir_version"] > 0
    proto = onnx.load(str(path))
    assert info.details["nodes"] == len(proto.graph.node) > 0
    assert "Gemm" in str(info.details["op_types"])
    (graph_input,) = proto.graph.input
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert (graph_input.name, dims) == ("features", [1, N_FEATURES])
    assert [o.name for o in proto.graph.output] == ["probability"]


def test_executorch_export_is_delegated_to_xnnpack(
    exports: dict[str, tuple[Path, ExportInfo]],
) -> None:
    details = exports["executorch"][1].details
    assert "XnnpackBackend" in str(details["delegate"])
    assert int(details["delegated_subgraphs"]) >= 1
    assert int(details["delegate_calls"]) == int(details["delegated_subgraphs"])
    assert int(details["delegated_nodes"]) > 0


def test_tflite_export_details_and_signature(
    exports: dict[str, tuple[Path, ExportInfo]],
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path, info = exports["tflite"]
    assert info.details["subgraphs"] == 1
    assert "FULLY_CONNECTED" in str(info.details["operator_codes"]).split(",")
    assert int(info.details["operators"]) > 0
    signatures = Interpreter(model_path=str(path)).get_signature_list()
    assert signatures == {"serving_default": {"inputs": ["features"], "outputs": ["probability"]}}


def test_export_rejects_unknown_format(reference: MalwareClassifier, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'coreml'.*executorch, tflite, onnx"):
        export_model(reference, "coreml", tmp_path)
    assert not any(tmp_path.iterdir())


def test_export_puts_model_in_eval_mode(tmp_path: Path) -> None:
    model = MalwareClassifier(6, hidden_sizes=(4,), dropout=0.5).train()
    path, _ = export_model(model, "onnx", tmp_path)
    assert not model.training
    rows = _rows(16, seed=3)[:, :6]
    # Exported in training mode, dropout would make the runtime disagree with eval.
    assert check_parity(model, load_runner("onnx", path), rows).passed


# --- runtimes ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_RUNNERS)
def test_runner_runs_one_row_and_predicts(
    model_paths: dict[str, Path], rows: np.ndarray, fmt: str
) -> None:
    runner = load_runner(fmt, model_paths[fmt], n_features=N_FEATURES)
    assert isinstance(runner, Runner)
    assert (runner.format, runner.runtime) == (fmt, RUNTIME_OF[fmt])
    package = {"executorch": "executorch", "tflite": "ai-edge-litert", "onnx": "onnxruntime"}
    assert runner.runtime_version == importlib.metadata.version(package.get(fmt, "torch"))
    assert runner.n_features == N_FEATURES
    one = runner.run_one(np.ascontiguousarray(rows[:1]))
    assert one.shape == (1, 1)
    # Reused buffers must not leak one call's result into the previous one's return value.
    first = runner.run_one(np.ascontiguousarray(rows[:1]))
    runner.run_one(np.ascontiguousarray(rows[1:2]))
    assert first[0, 0] == one[0, 0]
    predicted = runner.predict(rows)
    assert predicted.shape == (len(rows),) and predicted.dtype == np.float32
    assert np.all((predicted > 0) & (predicted < 1))


def test_load_runner_rejects_unknown_format(model_paths: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"'coreml'.*executorch, tflite, onnx, pytorch"):
        load_runner("coreml", model_paths["onnx"])


@pytest.mark.parametrize("fmt", ALL_RUNNERS)
def test_load_runner_names_a_missing_file(tmp_path: Path, fmt: str) -> None:
    missing = tmp_path / "absent" / "model.bin"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_runner(fmt, missing)


@pytest.mark.parametrize("fmt", ALL_RUNNERS)
def test_load_runner_rejects_a_different_input_width(
    model_paths: dict[str, Path], fmt: str
) -> None:
    with pytest.raises(ValueError, match=rf"input shape \[1, {N_FEATURES}\].*\[1, 10\]"):
        load_runner(fmt, model_paths[fmt], n_features=10)


def test_load_runner_rejects_a_non_single_row_input(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["features"], ["probability"])],
        "batched",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    path = tmp_path / "batched.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match=r"input shape \['N', 4\]; expected static"):
        load_runner("onnx", path)


def test_load_runner_rejects_bad_thread_count(model_paths: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="num_threads"):
        load_runner("onnx", model_paths["onnx"], num_threads=0)


# --- parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_RUNNERS)
def test_parity_passes_for_the_exported_model(
    reference: MalwareClassifier, model_paths: dict[str, Path], rows: np.ndarray, fmt: str
) -> None:
    runner = load_runner(fmt, model_paths[fmt])
    report = check_parity(reference, runner, rows)
    assert isinstance(report, ParityReport)
    assert report.passed, report.summary()
    assert report.rows == 64
    assert report.class_mismatches == 0
    assert 0 <= report.max_abs_diff <= 1e-4
    assert (report.format, report.runtime) == (fmt, RUNTIME_OF[fmt])
    summary = report.summary()
    assert summary.startswith(f"{runner.runtime} {runner.runtime_version}: max |Δ| ")
    assert "≤ 1e-04 over 64 rows, 0 class mismatches" in summary
    assert "FAILED" not in summary


def test_reference_rows_cover_both_classes(reference: MalwareClassifier, rows: np.ndarray) -> None:
    # Otherwise the class-mismatch checks below could not fail.
    with torch.no_grad():
        probabilities = reference(torch.from_numpy(rows)).numpy().ravel()
    assert 0 < int((probabilities >= 0.5).sum()) < len(rows)


@pytest.mark.parametrize("fmt", FORMATS)
def test_parity_fails_when_the_runtime_runs_another_model(
    reference: MalwareClassifier, perturbed_paths: dict[str, Path], rows: np.ndarray, fmt: str
) -> None:
    report = check_parity(reference, load_runner(fmt, perturbed_paths[fmt]), rows)
    assert not report.passed
    assert report.max_abs_diff > report.tolerance
    assert report.class_mismatches > 0
    assert "FAILED" in report.summary()
    assert "> 1e-04" in report.summary()


def test_parity_fails_on_class_flip_within_tolerance(
    reference: MalwareClassifier, rows: np.ndarray
) -> None:
    class Nudged:
        """Reference probabilities, nudged across the threshold for one row."""

        format, runtime, runtime_version = "fake", "fake", "0"

        def predict(self, batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = reference(torch.from_numpy(batch)).numpy().ravel().copy()
            out[0] = 0.5 if out[0] < 0.5 else np.nextafter(np.float32(0.5), np.float32(0))
            return out

    with torch.no_grad():
        p0 = float(reference(torch.from_numpy(rows[:1]))[0, 0])
    report = check_parity(reference, Nudged(), rows, tolerance=1.0)
    assert report.class_mismatches == 1
    assert report.max_abs_diff == pytest.approx(abs(p0 - 0.5), abs=1e-6)
    assert not report.passed


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros(N_FEATURES, np.float32), r"2-D \[N, 476\], got shape \(476,\)"),
        (np.zeros((2, 3, N_FEATURES), np.float32), r"2-D .*got shape \(2, 3, 476\)"),
        (np.zeros((4, N_FEATURES - 1), np.float32), r"476 columns .*got shape \(4, 475\)"),
        (np.zeros((0, N_FEATURES), np.float32), r"empty \(shape \(0, 476\)\)"),
        (np.array([["a"] * N_FEATURES]), r"numeric"),
    ],
)
def test_parity_rejects_malformed_rows(
    reference: MalwareClassifier, model_paths: dict[str, Path], bad: np.ndarray, message: str
) -> None:
    runner = load_runner("onnx", model_paths["onnx"])
    with pytest.raises(ValueError, match=message):
        check_parity(reference, runner, bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_parity_names_the_first_non_finite_cell(
    reference: MalwareClassifier, model_paths: dict[str, Path], rows: np.ndarray, value: float
) -> None:
    bad = rows.copy()
    bad[5, 300] = value
    bad[7, 2] = value
    runner = load_runner("onnx", model_paths["onnx"])
    with pytest.raises(ValueError, match=r"rows\[5, 300\] is .*2 non-finite values"):
        check_parity(reference, runner, bad)
    with pytest.raises(ValueError, match=r"rows\[5, 300\]"):
        runner.predict(bad)


def test_predict_rejects_a_different_width(model_paths: dict[str, Path]) -> None:
    runner = load_runner("tflite", model_paths["tflite"])
    with pytest.raises(ValueError, match=r"476 columns"):
        runner.predict(np.zeros((2, 10), np.float32))

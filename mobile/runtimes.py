"""Run an exported model in its own runtime: ExecuTorch, LiteRT, onnxruntime, or eager PyTorch.

Runtimes are imported lazily, per format, so a process that benchmarks one runtime does not
carry the others (or torch, for LiteRT and onnxruntime) in its load time and peak RSS.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


RUNTIME_OF: dict[str, str] = {
    "executorch": "executorch",
    "tflite": "litert",
    "onnx": "onnxruntime",
    "pytorch": "pytorch",
}
RUNNER_FORMATS: tuple[str, ...] = tuple(RUNTIME_OF)

# The distribution whose version identifies each runtime.
_RUNTIME_PACKAGE: dict[str, str] = {
    "executorch": "executorch",
    "litert": "ai-edge-litert",
    "onnxruntime": "onnxruntime",
    "pytorch": "torch",
}

# Modules each runner needs, importable ahead of load_runner so that load time is the
# model's, not the library's cold import.
_RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    # The bare extension, not executorch.runtime / portable_lib: those import executorch.exir
    # (the whole compiler stack, ~+220 MB RSS and seconds of import) that a runtime never uses.
    "executorch": ("torch", "executorch.extension.pybindings._C"),
    "tflite": ("ai_edge_litert.interpreter",),
    "onnx": ("onnxruntime",),
    "pytorch": ("torch", "dfp.kronodroid.model.io"),
}


def check_format(fmt: str) -> None:
    """Raise ValueError unless ``fmt`` is a format a runner exists for."""
    if fmt not in RUNTIME_OF:
        raise ValueError(
            f"unknown runner format {fmt!r}; expected one of {', '.join(RUNNER_FORMATS)}"
        )


def import_runtime(fmt: str) -> None:
    """Import the modules the ``fmt`` runner needs (idempotent)."""
    check_format(fmt)
    for module in _RUNTIME_MODULES[fmt]:
        importlib.import_module(module)


def validate_rows(rows: Any, n_features: int) -> np.ndarray:
    """``rows`` as a C-contiguous float32 ``[N, n_features]`` array with N ≥ 1, all finite.

    Raises ValueError naming the problem: the shape, or the first non-finite cell.
    """
    import numpy as np

    try:
        array = np.asarray(rows)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"rows are not a numeric array: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise ValueError(f"rows must be numeric, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"rows must be 2-D [N, {n_features}], got shape {array.shape}")
    if array.shape[1] != n_features:
        raise ValueError(
            f"rows must have {n_features} columns (the model's n_features), got shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"rows are empty (shape {array.shape}); need at least one row")
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"rows must be finite: rows[{row}, {col}] is {array[row, col]} "
            f"({int((~finite).sum())} non-finite values in total)"
        )
    return array


class Runner(ABC):
    """A loaded model in one runtime, fed one float32 ``[1, n_features]`` row per call."""

    format: str
    runtime: str
    runtime_version: str
    path: Path
    n_features: int
    num_threads: int

    def __init__(self, fmt: str, path: Path, n_features: int, num_threads: int) -> None:
        self.format = fmt
        self.runtime = RUNTIME_OF[fmt]
        self.runtime_version = importlib.metadata.version(_RUNTIME_PACKAGE[self.runtime])
        self.path = path
        self.n_features = n_features
        self.num_threads = num_threads

    @abstractmethod
    def run_one(self, row: np.ndarray) -> np.ndarray:
        """P(malware) ``[1, 1]`` for one C-contiguous float32 ``[1, n_features]`` row.

        The benchmarked hot path: it does not validate its input (`predict` does).
        """

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """P(malware) ``[N]`` (float32) for ``[N, n_features]`` rows, one `run_one` per row."""
        import numpy as np

        array = validate_rows(rows, self.n_features)
        out = np.empty(array.shape[0], dtype=np.float32)
        for i in range(array.shape[0]):
            out[i] = self.run_one(array[i : i + 1])[0, 0]
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.runtime} {self.runtime_version}, {self.path}, "
            f"n_features={self.n_features}, num_threads={self.num_threads})"
        )


def _input_width(fmt: str, path: Path, shape: Any, expected: int | None) -> int:
    """The F of a model input of shape ``[1, F]``; errors name the file and the shape."""
    dims = [d if isinstance(d, int) else None for d in shape]
    if len(dims) != 2 or dims[0] != 1 or dims[1] is None or dims[1] < 1:
        raise ValueError(
            f"{fmt} model {path} has input shape {list(shape)}; expected static [1, n_features]"
        )
    if expected is not None and dims[1] != expected:
        raise ValueError(
            f"{fmt} model {path} has input shape {list(shape)}; expected [1, {expected}]"
        )
    return dims[1]


class ExecuTorchRunner(Runner):
    """A ``.pte`` program run by the ExecuTorch runtime (delegates such as XNNPACK inside)."""

    def __init__(self, path: Path, num_threads: int, n_features: int | None) -> None:
        import torch
        from executorch.extension.pybindings import _C

        if _C._threadpool_get_thread_count() != num_threads:
            _C._unsafe_reset_threadpool(num_threads)
        program = _C._load_program(str(path))
        method = program.load_method("forward")
        meta = method.method_meta()
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise ValueError(
                f"executorch model {path} has {meta.num_inputs()} inputs and "
                f"{meta.num_outputs()} outputs; expected 1 and 1"
            )
        width = _input_width("executorch", path, meta.input_tensor_meta(0).sizes(), n_features)
        super().__init__("executorch", path, width, num_threads)
        self._program = program  # the method borrows from the program: keep it alive
        self._method = method
        self._from_numpy = torch.from_numpy

    def run_one(self, row: np.ndarray) -> np.ndarray:
        # clone_outputs (the default) copies the output out of the planned memory.
        return self._method.call([self._from_numpy(row)])[0].numpy()


class LiteRTRunner(Runner):
    """A ``.tflite`` model run by the LiteRT interpreter (XNNPACK is its default CPU delegate)."""

    def __init__(self, path: Path, num_threads: int, n_features: int | None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"tflite model {path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                f"expected 1 and 1"
            )
        shape = [int(d) for d in inputs[0]["shape"]]
        width = _input_width("tflite", path, shape, n_features)
        super().__init__("tflite", path, width, num_threads)
        self._interpreter = interpreter
        self._set_tensor = interpreter.set_tensor
        self._invoke = interpreter.invoke
        self._get_tensor = interpreter.get_tensor
        self._input_index = int(inputs[0]["index"])
        self._output_index = int(outputs[0]["index"])

    def run_one(self, row: np.ndarray) -> np.ndarray:
        self._set_tensor(self._input_index, row)
        self._invoke()
        return self._get_tensor(self._output_index)


class OnnxRuntimeRunner(Runner):
    """A ``.onnx`` model run by onnxruntime's CPU execution provider."""

    def __init__(self, path: Path, num_threads: int, n_features: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"onnx model {path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                f"expected 1 and 1"
            )
        width = _input_width("onnx", path, inputs[0].shape, n_features)
        super().__init__("onnx", path, width, num_threads)
        self._session = session
        self._run = session.run
        self._input_name = inputs[0].name
        self._output_names = [outputs[0].name]

    def run_one(self, row: np.ndarray) -> np.ndarray:
        return self._run(self._output_names, {self._input_name: row})[0]


class PyTorchRunner(Runner):
    """A saved ``.pt`` model (`dfp.kronodroid.model.load_model`) run eagerly: the reference
    runtime."""

    def __init__(self, path: Path, num_threads: int, n_features: int | None) -> None:
        import torch

        from dfp.kronodroid.model.io import load_model

        torch.set_num_threads(num_threads)
        model = load_model(path)
        width = _input_width("pytorch", path, [1, model.n_features], n_features)
        super().__init__("pytorch", path, width, num_threads)
        self._model = model
        self._from_numpy = torch.from_numpy
        self._inference_mode = torch.inference_mode

    def run_one(self, row: np.ndarray) -> np.ndarray:
        with self._inference_mode():
            return self._model(self._from_numpy(row)).numpy()


_RUNNERS: dict[str, type[ExecuTorchRunner | LiteRTRunner | OnnxRuntimeRunner | PyTorchRunner]] = {
    "executorch": ExecuTorchRunner,
    "tflite": LiteRTRunner,
    "onnx": OnnxRuntimeRunner,
    "pytorch": PyTorchRunner,
}


def load_runner(
    fmt: str, path: Path, num_threads: int = 1, *, n_features: int | None = None
) -> Runner:
    """Load ``path`` into the runtime of ``fmt``; its input must be ``[1, F]``.

    ``n_features``, when given, is the F the caller expects: another width is a ValueError.
    """
    check_format(fmt)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {fmt} model file at {path}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return _RUNNERS[fmt](path, num_threads, n_features)

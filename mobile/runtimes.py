"""Run an exported model in its own runtime: ExecuTorch, LiteRT, onnxruntime, or eager PyTorch.

A model has one or more named inputs of batch 1 (`InputSpec`, read from the file): a
Kronodroid model float32 ``features [1, n_features]``, the toxicity model int64
``input_ids`` and ``attention_mask`` ``[1, max_length]``. `Runner.run_one` takes one array
per input; `Runner.predict` a batch (an ``[N, n_features]`` matrix for a single-input model,
else one ``[N, ...]`` array per input) and returns one probability per sample.

Runtimes are imported lazily, per format, so a process that benchmarks one runtime does not
carry the others (or torch, for LiteRT and onnxruntime) in its load time and peak RSS.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
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

# The eager model files PyTorchRunner reads, by their saved "format" marker: the module and
# function that load one as (nn.Module, input specs).
_EAGER_LOADERS: dict[str, tuple[str, str]] = {
    "dfp.malware_classifier": ("dfp.kronodroid.model.io", "load_eager"),
    "dfp.toxicity_head": ("dfp.toxic.serving", "load_eager"),
}


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, static shape (batch 1 first) and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.shape[1:]


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


def validate_inputs(inputs: Any, specs: Sequence[InputSpec]) -> list[np.ndarray]:
    """A batch for a model with inputs ``specs``: one C-contiguous ``[N, *sample_shape]``
    array per input in the spec's dtype, the same N ≥ 1 for all.

    A single float32 ``[1, F]`` input takes an ``[N, F]`` matrix (`validate_rows`); other
    models a sequence of arrays, one per input, in order. Raises ValueError naming the input.
    """
    import numpy as np

    if _is_feature_model(specs):
        return [validate_rows(inputs, specs[0].shape[1])]
    if isinstance(inputs, np.ndarray) or not isinstance(inputs, Sequence):
        raise ValueError(f"inputs must be a sequence of {len(specs)} arrays ({_names(specs)})")
    if len(inputs) != len(specs):
        raise ValueError(f"got {len(inputs)} input arrays; the model takes {_names(specs)}")
    arrays, rows = [], None
    for spec, value in zip(specs, inputs, strict=True):
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"input {spec.name} must be numeric, got dtype {array.dtype}")
        if array.shape[1:] != spec.sample_shape or array.shape[0] == 0:
            raise ValueError(
                f"input {spec.name} must be [N >= 1, {', '.join(map(str, spec.sample_shape))}], "
                f"got shape {array.shape}"
            )
        if array.dtype.kind == "f" and spec.dtype.startswith("int"):
            raise ValueError(f"input {spec.name} must be integers, got dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=spec.dtype)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"input {spec.name} must be finite")
        if rows is not None and array.shape[0] != rows:
            raise ValueError(f"inputs have different batch sizes: {rows} and {array.shape[0]}")
        rows = array.shape[0]
        arrays.append(array)
    return arrays


def _names(specs: Sequence[InputSpec]) -> str:
    return ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in specs)


def _is_feature_model(specs: Sequence[InputSpec]) -> bool:
    return len(specs) == 1 and len(specs[0].shape) == 2 and specs[0].dtype == "float32"


class Runner(ABC):
    """A loaded model in one runtime, fed one batch-1 array per input per call."""

    format: str
    runtime: str
    runtime_version: str
    path: Path
    inputs: tuple[InputSpec, ...]
    num_threads: int

    def __init__(self, fmt: str, path: Path, inputs: Sequence[InputSpec], num_threads: int) -> None:
        self.format = fmt
        self.runtime = RUNTIME_OF[fmt]
        self.runtime_version = importlib.metadata.version(_RUNTIME_PACKAGE[self.runtime])
        self.path = path
        self.inputs = tuple(inputs)
        self.num_threads = num_threads

    @property
    def n_features(self) -> int | None:
        """F of a single float32 ``[1, F]`` input (a Kronodroid model), else None."""
        return self.inputs[0].shape[1] if _is_feature_model(self.inputs) else None

    @abstractmethod
    def run_one(self, *arrays: np.ndarray) -> np.ndarray:
        """The probability ``[1, 1]`` for one sample: one C-contiguous batch-1 array per input
        (in `inputs` order, of their dtypes).

        The benchmarked hot path: it does not validate its input (`predict` does).
        """

    def predict(self, inputs: Any) -> np.ndarray:
        """Probabilities ``[N]`` (float32) for a batch (`validate_inputs`), one `run_one` per
        sample."""
        import numpy as np

        arrays = validate_inputs(inputs, self.inputs)
        out = np.empty(arrays[0].shape[0], dtype=np.float32)
        for i in range(arrays[0].shape[0]):
            out[i] = self.run_one(*(a[i : i + 1] for a in arrays))[0, 0]
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.runtime} {self.runtime_version}, {self.path}, "
            f"inputs=[{_names(self.inputs)}], num_threads={self.num_threads})"
        )


def _input_specs(
    fmt: str, path: Path, found: Sequence[tuple[str, Any, str]], expected: int | None
) -> list[InputSpec]:
    """The model's inputs as `InputSpec`s; each must be static with batch 1. ``expected`` is
    the F a caller wants of a single ``[1, F]`` input. Errors name the file and the shape."""
    specs = []
    for name, shape, dtype in found:
        dims = [d if isinstance(d, int) else None for d in shape]
        if len(dims) < 2 or dims[0] != 1 or any(d is None or d < 1 for d in dims):
            raise ValueError(
                f"{fmt} model {path}, input {name!r}, has input shape {list(shape)}; expected "
                "static, batch 1 first (e.g. [1, n_features])"
            )
        specs.append(InputSpec(name, tuple(dims), dtype))
    if expected is not None and (len(specs) != 1 or specs[0].shape != (1, expected)):
        shapes = ", ".join(f"{list(s.shape)}" for s in specs)
        raise ValueError(f"{fmt} model {path} has input shape {shapes}; expected [1, {expected}]")
    return specs


def _numpy_dtype(dtype: Any) -> str:
    import numpy as np

    return str(np.dtype(dtype))


# ExecuTorch's ScalarType codes (c10) of the dtypes exports use.
_EXECUTORCH_DTYPES = {6: "float32", 4: "int64", 3: "int32"}


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
        if meta.num_inputs() < 1 or meta.num_outputs() != 1:
            raise ValueError(
                f"executorch model {path} has {meta.num_inputs()} inputs and "
                f"{meta.num_outputs()} outputs; expected at least 1 and 1"
            )
        found = []
        for i in range(meta.num_inputs()):
            tensor = meta.input_tensor_meta(i)
            dtype = _EXECUTORCH_DTYPES.get(int(tensor.dtype()), f"scalar type {tensor.dtype()}")
            found.append((f"input_{i}", list(tensor.sizes()), dtype))
        specs = _input_specs("executorch", path, found, n_features)
        super().__init__("executorch", path, specs, num_threads)
        self._program = program  # the method borrows from the program: keep it alive
        self._method = method
        self._from_numpy = torch.from_numpy

    def run_one(self, *arrays: np.ndarray) -> np.ndarray:
        # clone_outputs (the default) copies the output out of the planned memory.
        return self._method.call([self._from_numpy(a) for a in arrays])[0].numpy()


class LiteRTRunner(Runner):
    """A ``.tflite`` model run by the LiteRT interpreter (XNNPACK is its default CPU delegate)."""

    def __init__(self, path: Path, num_threads: int, n_features: int | None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
        # The subgraph's inputs, in forward's argument order (the signature's are by name).
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        if not inputs or len(outputs) != 1:
            raise ValueError(
                f"tflite model {path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                f"expected at least 1 and 1"
            )
        found = [
            (str(d["name"]), [int(x) for x in d["shape"]], _numpy_dtype(d["dtype"])) for d in inputs
        ]
        specs = _input_specs("tflite", path, found, n_features)
        super().__init__("tflite", path, specs, num_threads)
        self._interpreter = interpreter
        self._set_tensor = interpreter.set_tensor
        self._invoke = interpreter.invoke
        self._get_tensor = interpreter.get_tensor
        self._input_indices = [int(d["index"]) for d in inputs]
        self._output_index = int(outputs[0]["index"])

    def run_one(self, *arrays: np.ndarray) -> np.ndarray:
        for index, array in zip(self._input_indices, arrays, strict=True):
            self._set_tensor(index, array)
        self._invoke()
        return self._get_tensor(self._output_index)


_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32"}


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
        if not inputs or len(outputs) != 1:
            raise ValueError(
                f"onnx model {path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                f"expected at least 1 and 1"
            )
        found = [(i.name, i.shape, _ONNX_DTYPES.get(i.type, i.type)) for i in inputs]
        specs = _input_specs("onnx", path, found, n_features)
        super().__init__("onnx", path, specs, num_threads)
        self._session = session
        self._run = session.run
        self._input_names = [i.name for i in inputs]
        self._output_names = [outputs[0].name]

    def run_one(self, *arrays: np.ndarray) -> np.ndarray:
        return self._run(self._output_names, dict(zip(self._input_names, arrays, strict=True)))[0]


class PyTorchRunner(Runner):
    """A saved ``.pt`` model run eagerly: the reference runtime. The file's "format" marker
    picks its loader (`_EAGER_LOADERS`): a Kronodroid model, or a toxicity head (run with the
    encoder it was trained on)."""

    def __init__(self, path: Path, num_threads: int, n_features: int | None) -> None:
        import torch

        torch.set_num_threads(num_threads)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"pytorch model {path} is not a torch.save file ({exc})") from exc
        marker = payload.get("format") if isinstance(payload, dict) else None
        if marker not in _EAGER_LOADERS:
            raise ValueError(
                f"pytorch model {path} has format {marker!r}; expected one of "
                f"{', '.join(_EAGER_LOADERS)}"
            )
        module, function = _EAGER_LOADERS[marker]
        model, found = getattr(importlib.import_module(module), function)(path)
        specs = _input_specs("pytorch", path, found, n_features)
        super().__init__("pytorch", path, specs, num_threads)
        self._model = model
        self._from_numpy = torch.from_numpy
        self._inference_mode = torch.inference_mode

    def run_one(self, *arrays: np.ndarray) -> np.ndarray:
        with self._inference_mode():
            return self._model(*(self._from_numpy(a) for a in arrays)).numpy()


_RUNNERS: dict[str, type[ExecuTorchRunner | LiteRTRunner | OnnxRuntimeRunner | PyTorchRunner]] = {
    "executorch": ExecuTorchRunner,
    "tflite": LiteRTRunner,
    "onnx": OnnxRuntimeRunner,
    "pytorch": PyTorchRunner,
}


def load_runner(
    fmt: str, path: Path, num_threads: int = 1, *, n_features: int | None = None
) -> Runner:
    """Load ``path`` into the runtime of ``fmt``; its inputs must be static, of batch 1.

    ``n_features``, when given, is the F the caller expects of a single ``[1, F]`` input:
    another width (or another signature) is a ValueError.
    """
    check_format(fmt)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {fmt} model file at {path}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return _RUNNERS[fmt](path, num_threads, n_features)

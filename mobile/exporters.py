"""Export an ``nn.Module`` to one self-contained on-device file per format.

Every export has static input shapes with batch 1 (one sample per call, as on a phone),
given as named example tensors (`example_inputs`): a Kronodroid `MalwareClassifier` takes
float32 ``features [1, n_features]`` (the default, from its ``n_features``), the toxicity
model int64 ``input_ids`` and ``attention_mask`` ``[1, max_length]``. Formats: ExecuTorch
(``.pte``, XNNPACK-delegated), TFLite/LiteRT (``.tflite``, via litert-torch) and ONNX
(``.onnx``, opset 18, weights inlined). Pure logic: no Dagster.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    import torch


Format = Literal["executorch", "tflite", "onnx"]
FORMATS: tuple[Format, ...] = ("executorch", "tflite", "onnx")
FILE_NAMES: dict[str, str] = {
    "executorch": "model.pte",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
}
INPUT_NAME = "features"
OUTPUT_NAME = "probability"
ONNX_OPSET = 18

Details = dict[str, str | int | float]

_EXPORTER_PACKAGES: dict[str, tuple[str, ...]] = {
    "executorch": ("torch", "executorch"),
    "tflite": ("torch", "litert-torch", "ai-edge-litert"),
    "onnx": ("torch", "onnx", "onnxscript"),
}

_TOOLCHAIN_MODULES: dict[str, tuple[str, ...]] = {
    "executorch": (
        "executorch.exir",
        "executorch.backends.xnnpack.partition.xnnpack_partitioner",
        "executorch.devtools.backend_debug",
    ),
    "tflite": ("litert_torch", "ai_edge_litert.schema_py_generated"),
    "onnx": ("onnx", "onnxscript", "torch.onnx"),
}

# Loggers whose INFO/WARNING chatter (progress, "torchvision is not installed", pytree
# deprecations) accompanies every export; errors still get through.
_NOISY_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch.utils._pytree",
    "torch._dynamo",
    "onnxscript",
    "litert_torch",
    "executorch",
)


class TensorSpec(BaseModel):
    """One named model input: its static shape and dtype (numpy name)."""

    name: str
    shape: list[int]
    dtype: str


class ExportInfo(BaseModel):
    """What an export wrote and how: the file, its I/O signature, the toolchain.

    ``input_name`` / ``input_shape`` are the first input's (all of them in ``inputs``)."""

    format: Format
    file_name: str
    size_bytes: int
    sha256: str
    export_seconds: float
    input_name: str = INPUT_NAME
    input_shape: list[int]
    inputs: list[TensorSpec] = []
    output_name: str = OUTPUT_NAME
    output_shape: list[int]
    exporter: dict[str, str]
    details: Details


Examples = dict[str, "torch.Tensor"]


def feature_inputs(model: torch.nn.Module) -> Examples:
    """The example input of a model with an int ``n_features``: float32 zeros [1, n_features]."""
    import torch

    n_features = getattr(model, "n_features", None)
    if not isinstance(n_features, int) or n_features < 1:
        raise ValueError(
            f"model needs a positive int attribute n_features (or explicit example_inputs), "
            f"got {n_features!r}"
        )
    return {INPUT_NAME: torch.zeros(1, n_features, dtype=torch.float32)}


def input_specs(examples: Mapping[str, torch.Tensor]) -> list[TensorSpec]:
    """The `TensorSpec` of each example tensor, in order."""
    return [
        TensorSpec(name=name, shape=list(t.shape), dtype=str(t.numpy().dtype))
        for name, t in examples.items()
    ]


def _check_examples(examples: Mapping[str, torch.Tensor]) -> Examples:
    import torch

    if not examples:
        raise ValueError("example_inputs is empty: a model needs at least one input")
    for name, tensor in examples.items():
        if not name.isidentifier():
            raise ValueError(f"input name {name!r} is not an identifier")
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 1 or tensor.shape[0] != 1:
            shape = getattr(tensor, "shape", None)
            raise ValueError(f"example input {name!r} must be a tensor of batch 1, got {shape}")
        if tensor.dtype not in (torch.float32, torch.int64):
            raise ValueError(f"example input {name!r} has dtype {tensor.dtype}; want float32/int64")
    return dict(examples)


def package_version(name: str) -> str:
    """Installed version of distribution ``name``, or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def exporter_versions(fmt: str) -> dict[str, str]:
    """The installed versions of the packages that export ``fmt``."""
    return {name: package_version(name) for name in _EXPORTER_PACKAGES[fmt]}


def export_model(
    model: torch.nn.Module,
    fmt: str,
    out_dir: Path,
    example_inputs: Mapping[str, torch.Tensor] | None = None,
) -> tuple[Path, ExportInfo]:
    """Export ``model`` (put in eval mode) as ``out_dir/FILE_NAMES[fmt]``; return path and info.

    ``example_inputs`` (name → batch-1 tensor, in ``forward``'s argument order) fix the
    exported input names, shapes and dtypes; by default the model's ``[1, n_features]``
    float32 features (`feature_inputs`). The output is the probability ``[1, 1]``.

    The file is written in a scratch directory inside ``out_dir`` and moved into place, so a
    failed export leaves no partial file and an exporter that writes side files is caught.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    examples = _check_examples(feature_inputs(model) if example_inputs is None else example_inputs)
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / FILE_NAMES[fmt]

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".export-{fmt}-") as scratch:
        staged = Path(scratch) / FILE_NAMES[fmt]
        with _quiet_exporters():
            # Import the toolchain first: export_seconds is the conversion, not a cold import.
            for module in _TOOLCHAIN_MODULES[fmt]:
                importlib.import_module(module)
            start = time.perf_counter()
            inspect = _CONVERTERS[fmt](model, examples, staged)
            export_seconds = time.perf_counter() - start
            details = inspect()
        written = sorted(p.name for p in Path(scratch).iterdir())
        if written != [staged.name]:
            raise RuntimeError(
                f"{fmt} export should write the single file {staged.name}, wrote {written}"
            )
        os.replace(staged, target)

    data = target.read_bytes()
    specs = input_specs(examples)
    info = ExportInfo(
        format=fmt,  # type: ignore[arg-type]  # checked against FORMATS above
        file_name=target.name,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        export_seconds=export_seconds,
        input_name=specs[0].name,
        input_shape=specs[0].shape,
        inputs=specs,
        output_shape=[1, 1],
        exporter=exporter_versions(fmt),
        details=details,
    )
    return target, info


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Keep exporter progress output off stdout; exceptions propagate untouched."""
    saved_levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    saved_progress = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    # litert-torch reads this on every progress line (its config.show_progress).
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        if saved_progress is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = saved_progress


def _convert_executorch(
    model: torch.nn.Module, examples: Examples, path: Path
) -> Callable[[], Details]:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.schema import DelegateCall, KernelCall

    exported = torch.export.export(model, tuple(examples.values()))
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    program = edge.to_executorch()
    path.write_bytes(program.buffer)

    def inspect() -> Details:
        delegation = get_delegation_info(edge.exported_program().graph_module)
        plan = program.executorch_program.execution_plan[0]
        instructions = [i.instr_args for chain in plan.chains for i in chain.instructions]
        kernel_ops = sorted(
            {plan.operators[a.op_index].name for a in instructions if isinstance(a, KernelCall)}
        )
        return {
            "delegate": ",".join(sorted({d.id for d in plan.delegates})) or "none",
            "delegated_subgraphs": delegation.num_delegated_subgraphs,
            "delegated_nodes": delegation.num_delegated_nodes,
            "non_delegated_nodes": delegation.num_non_delegated_nodes,
            "delegate_calls": sum(isinstance(a, DelegateCall) for a in instructions),
            "kernel_calls": sum(isinstance(a, KernelCall) for a in instructions),
            "kernel_ops": ",".join(kernel_ops),
        }

    return inspect


def _convert_tflite(
    model: torch.nn.Module, examples: Examples, path: Path
) -> Callable[[], Details]:
    import litert_torch
    import torch

    names = tuple(examples)

    class _NamedIO(torch.nn.Module):
        """Names the TFLite signature's inputs and output (litert-torch takes them from kwargs
        and from the returned dict's keys). Defined here: subclassing needs torch loaded."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
            return {OUTPUT_NAME: self.model(*(inputs[name] for name in names))}

    named = _NamedIO(model).eval()
    litert_torch.convert(named, sample_kwargs=examples).export(str(path))
    return lambda: _tflite_details(path)


def _tflite_details(path: Path) -> Details:
    from ai_edge_litert import schema_py_generated as schema

    flat = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    op_codes = []
    for i in range(flat.OperatorCodesLength()):
        code = flat.OperatorCodes(i)
        # Codes above 127 live only in BuiltinCode; DeprecatedBuiltinCode caps at 127.
        value = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_codes.append(names.get(value, str(value)))
    return {
        "schema_version": flat.Version(),
        "subgraphs": flat.SubgraphsLength(),
        "operators": sum(
            flat.Subgraphs(i).OperatorsLength() for i in range(flat.SubgraphsLength())
        ),
        "operator_codes": ",".join(sorted(op_codes)),
        "signatures": flat.SignatureDefsLength(),
    }


def _convert_onnx(model: torch.nn.Module, examples: Examples, path: Path) -> Callable[[], Details]:
    import torch

    torch.onnx.export(
        model,
        tuple(examples.values()),
        str(path),
        input_names=list(examples),
        output_names=[OUTPUT_NAME],
        opset_version=ONNX_OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    return lambda: _onnx_details(path)


def _onnx_details(path: Path) -> Details:
    import onnx

    proto = onnx.load(str(path))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), -1)
    return {
        "opset": opset,
        "ir_version": proto.ir_version,
        "nodes": len(proto.graph.node),
        "op_types": ",".join(sorted({n.op_type for n in proto.graph.node})),
        "initializers": len(proto.graph.initializer),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
    }


_CONVERTERS: dict[str, Callable[[torch.nn.Module, Examples, Path], Callable[[], Details]]] = {
    "executorch": _convert_executorch,
    "tflite": _convert_tflite,
    "onnx": _convert_onnx,
}

"""Parity of an exported model against the eager PyTorch reference it was exported from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from mobile.runtimes import InputSpec, validate_inputs

if TYPE_CHECKING:
    import numpy as np
    import torch


class _Predicts(Protocol):
    format: str
    runtime: str
    runtime_version: str

    def predict(self, inputs: Any) -> np.ndarray: ...


class ParityReport(BaseModel):
    """How far a runtime's probabilities are from the eager reference on the same rows."""

    format: str
    runtime: str
    runtime_version: str
    rows: int
    max_abs_diff: float
    class_mismatches: int
    tolerance: float
    threshold: float
    passed: bool

    def summary(self) -> str:
        """One line, e.g. "onnxruntime 1.32.0: max |Δ| 2.9e-08 ≤ 1e-04 over 64 rows, ..."."""
        relation = "≤" if self.max_abs_diff <= self.tolerance else ">"
        verdict = "" if self.passed else " — FAILED"
        mismatches = "class mismatch" if self.class_mismatches == 1 else "class mismatches"
        return (
            f"{self.runtime} {self.runtime_version}: max |Δ| {self.max_abs_diff:.1e} {relation} "
            f"{self.tolerance:.0e} over {self.rows} rows, {self.class_mismatches} "
            f"{mismatches}{verdict}"
        )


def reference_probabilities(reference: torch.nn.Module, arrays: list[np.ndarray]) -> np.ndarray:
    """Eager float32 probabilities ``[N]`` for a validated batch (one array per input), in eval
    mode and without grad."""
    import torch

    was_training = reference.training
    reference.eval()
    try:
        with torch.inference_mode():
            out = reference(*(torch.from_numpy(a) for a in arrays))
    finally:
        reference.train(was_training)
    return out.detach().to(torch.float32).reshape(-1).numpy()


def check_parity(
    reference: torch.nn.Module,
    runner: _Predicts,
    rows: Any,
    tolerance: float = 1e-4,
    threshold: float = 0.5,
) -> ParityReport:
    """Compare ``runner.predict(rows)`` with ``reference`` on the same batch.

    Passes iff the largest absolute probability difference is ≤ ``tolerance`` and every sample
    gets the same class (probability ≥ ``threshold`` is positive). ``rows`` is a batch as
    `mobile.runtimes.validate_inputs` takes it for the runner's ``inputs`` (without them: a
    finite ``[N ≥ 1, reference.n_features]`` matrix); ValueError otherwise.
    """
    import numpy as np

    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    specs = getattr(runner, "inputs", None)
    if specs is None:
        n_features = getattr(reference, "n_features", None)
        if not isinstance(n_features, int):
            raise ValueError(f"reference model needs an int n_features, got {n_features!r}")
        specs = (InputSpec("features", (1, n_features), "float32"),)
    arrays = validate_inputs(rows, specs)
    n = arrays[0].shape[0]

    expected = reference_probabilities(reference, arrays)
    actual = np.asarray(
        runner.predict(arrays[0] if len(arrays) == 1 else arrays), dtype=np.float32
    ).reshape(-1)
    if actual.shape != expected.shape:
        raise ValueError(f"{runner.runtime} returned {actual.shape[0]} probabilities for {n} rows")
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    # np.max propagates NaN, so a NaN from the runtime fails the comparison below.
    max_abs_diff = float(diff.max())
    mismatches = int(np.count_nonzero((actual >= threshold) != (expected >= threshold)))
    return ParityReport(
        format=runner.format,
        runtime=runner.runtime,
        runtime_version=runner.runtime_version,
        rows=n,
        max_abs_diff=max_abs_diff,
        class_mismatches=mismatches,
        tolerance=tolerance,
        threshold=threshold,
        passed=bool(max_abs_diff <= tolerance and mismatches == 0),
    )

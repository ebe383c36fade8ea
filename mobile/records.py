"""The device-benchmark record schema `dfp.device_benchmark/v1` (pure pydantic, no Dagster).

Benchmark results arrive from untrusted uploaders (the REST gateway and JSON files committed
to lakeFS), so every model is strict: unknown fields, wrong JSON types ("12" for a number,
`true` for an integer), non-finite or out-of-range numbers, unsafe names and naive datetimes
are all rejected. `parse_upload` is the one entry point for untrusted payloads; it turns any
failure into an `UploadRejected` that names the source, the field path and the value.

A breaking change to these models gets a new `SCHEMA_VERSION` (and a new committed schema
file under `mobile/schema/`); see mobile/README.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

if TYPE_CHECKING:
    pass


SCHEMA_VERSION = "dfp.device_benchmark/v1"
SCHEMA_FILE = Path(__file__).parent / "schema" / "device_benchmark.v1.json"
MAX_RECORDS = 64
MAX_UPLOAD_BYTES = 1_048_576
ONE_HOUR_US = 3.6e9

#: The runtime that executes each model format (a record must pair them this way).
RUNTIME_FOR_FORMAT = {
    "executorch": "executorch",
    "tflite": "litert",
    "onnx": "onnxruntime",
    "pytorch": "pytorch",
}

_SAFE_ID = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# lakeFS's own rule (treeverse/lakeFS pkg/validator/validate.go: ReValidBranchID = `^\w[-\w]*$`,
# Go's \w being ASCII-only), with a length cap lakeFS itself does not have.
_BRANCH_ID = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,254}$"
_VERSION = r"^[0-9A-Za-z._+-]{1,64}$"
_SHA256 = r"^[0-9a-f]{64}$"
_VALUE_REPR_CHARS = 80


class UploadRejected(ValueError):
    """An upload failed validation; the message names the source, field path and value."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        path: str | None = None,
        error_count: int = 1,
    ):
        super().__init__(message)
        self.source = source
        self.path = path
        self.error_count = error_count


def safe_device_name(raw: str, fallback: str = "device") -> str:
    """A DeviceInfo name from a host name, device model or serial: lowercase [a-z0-9_.-],
    no '..', at most 63 characters."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", raw.strip().lower())
    name = re.sub(r"\.{2,}", ".", name).strip("-._")[:63].rstrip("-._")
    return name or fallback


def _no_dotdot(value: str) -> str:
    if ".." in value:
        raise ValueError("must not contain '..'")
    return value


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable text (no control, format or line-break characters)")
    return value


def _datetime_or_iso_string(value: Any) -> Any:
    # measured_at is lax (ISO strings in Python dicts too), but never a Unix timestamp.
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 date-time string with a timezone")
    return value


def _not_far_future(value: datetime) -> datetime:
    if value > datetime.now(UTC) + timedelta(days=1):
        raise ValueError("is more than one day in the future")
    return value


SafeId = Annotated[str, StringConstraints(pattern=_SAFE_ID), AfterValidator(_no_dotdot)]
BranchName = Annotated[str, StringConstraints(pattern=_BRANCH_ID)]
Text128 = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_printable)
]
Microseconds = Annotated[float, Field(ge=0, le=ONE_HOUR_US)]
MeasuredAt = Annotated[
    AwareDatetime,
    Strict(False),
    BeforeValidator(_datetime_or_iso_string),
    AfterValidator(_not_far_future),
]

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class DeviceInfo(BaseModel):
    """The device a benchmark ran on; `name` is used in lakeFS paths."""

    model_config = _STRICT

    name: SafeId = Field(
        description="Safe identifier: [a-z0-9][a-z0-9_.-]{0,62}, no '..' (a lakeFS path part)"
    )
    kind: Literal["host", "android"]
    os: Text128 = Field(description="OS name and version, e.g. 'Android 14'")
    cpu: Text128 = Field(description="CPU model name or ABI, e.g. 'arm64-v8a'")
    model: Text128 | None = Field(default=None, description="Device model, e.g. 'Pixel 7a'")


class LatencyStats(BaseModel):
    """Single-sample latency statistics in microseconds (percentiles None where the measuring
    tool reports none). Ordering holds: min <= p50 <= p90 <= p99 <= max, min <= mean <= max."""

    model_config = _STRICT

    # Declared in order so each bound is validated before the fields checked against it.
    min_us: Microseconds
    max_us: Microseconds
    mean_us: Microseconds
    p50_us: Microseconds | None = None
    p90_us: Microseconds | None = None
    p99_us: Microseconds | None = None

    @field_validator("max_us")
    @classmethod
    def _max_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min_us")
        if low is not None and value < low:
            raise ValueError(f"max_us {value} is below min_us {low}")
        return value

    @field_validator("mean_us")
    @classmethod
    def _mean_within_range(cls, value: float, info: ValidationInfo) -> float:
        low, high = info.data.get("min_us"), info.data.get("max_us")
        if low is not None and value < low:
            raise ValueError(f"mean_us {value} is below min_us {low}")
        if high is not None and value > high:
            raise ValueError(f"mean_us {value} is above max_us {high}")
        return value

    @field_validator("p50_us", "p90_us", "p99_us")
    @classmethod
    def _percentiles_ordered(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return None
        order = ["min_us", "p50_us", "p90_us", "p99_us"]
        for lower in reversed(order[: order.index(info.field_name)]):
            bound = info.data.get(lower)
            if bound is not None:
                if value < bound:
                    raise ValueError(f"{info.field_name} {value} is below {lower} {bound}")
                break
        high = info.data.get("max_us")
        if high is not None and value > high:
            raise ValueError(f"{info.field_name} {value} is above max_us {high}")
        return value

    @classmethod
    def from_samples(cls, latencies_us: Sequence[float]) -> LatencyStats:
        """Stats of per-inference latencies (µs); percentiles by linear interpolation."""
        import numpy as np

        if isinstance(latencies_us, str | bytes) or any(isinstance(x, bool) for x in latencies_us):
            raise TypeError("latencies_us must be a sequence of numbers")
        samples = np.asarray(list(latencies_us), dtype=float)
        if samples.ndim != 1 or samples.size == 0:
            raise ValueError("no latency samples")
        if not np.all(np.isfinite(samples)):
            raise ValueError("latency samples must be finite")
        if np.any(samples < 0):
            raise ValueError("latency samples must not be negative")
        low, high = float(samples.min()), float(samples.max())

        def clamp(x: float) -> float:
            # Summation/interpolation rounding may step a hair outside [min, max].
            return min(max(float(x), low), high)

        p50, p90, p99 = (clamp(x) for x in np.percentile(samples, [50, 90, 99]))
        p90 = max(p90, p50)
        p99 = max(p99, p90)
        return cls(
            min_us=low,
            max_us=high,
            mean_us=clamp(samples.mean()),
            p50_us=p50,
            p90_us=p90,
            p99_us=p99,
        )


class ModelRef(BaseModel):
    """Which model file was benchmarked."""

    model_config = _STRICT

    name: SafeId = Field(description="Model name, e.g. 'malware_model'")
    branch: BranchName = Field(description="lakeFS branch the model file was exported on")
    format: Literal["executorch", "tflite", "onnx", "pytorch"]
    file_sha256: Annotated[str, StringConstraints(pattern=_SHA256)] = Field(
        description="sha256 of the model file, 64 lowercase hex digits"
    )
    file_size_bytes: Annotated[int, Field(ge=1, le=2**31)]


class RuntimeRef(BaseModel):
    """The runtime that executed the model file."""

    model_config = _STRICT

    name: Literal["executorch", "litert", "onnxruntime", "pytorch"]
    version: Annotated[str, StringConstraints(pattern=_VERSION)] = Field(
        description="Runtime version, e.g. '1.5.1' ('unknown' where a native runner prints none)"
    )


class BenchmarkRecord(BaseModel):
    """One benchmark of one model file with one runtime on one device."""

    model_config = _STRICT

    schema_version: Literal["dfp.device_benchmark/v1"]
    model: ModelRef
    runtime: RuntimeRef
    device: DeviceInfo
    tool: SafeId = Field(
        description="Program that measured: dfp-harness, executor_runner, benchmark_model, "
        "onnxruntime_perf_test"
    )
    load_ms: Annotated[float, Field(ge=0, le=3.6e6)] | None = Field(
        default=None, description="Model load / session creation time (ms)"
    )
    latency: LatencyStats
    iterations: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        description="Timed inferences the latency stats cover"
    )
    warmup_iterations: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        description="Untimed inferences run before the timed ones"
    )
    throughput_per_s: Annotated[float, Field(gt=0, le=1e9)] | None = Field(
        default=None, description="Inferences per second as the tool reports it"
    )
    peak_rss_bytes: Annotated[int, Field(ge=0, le=2**40)] | None = Field(
        default=None, description="Peak resident set size of the measuring process (bytes)"
    )
    measured_at: MeasuredAt = Field(
        description="When the benchmark ran: ISO 8601 with a timezone, at most 1 day ahead"
    )

    @field_validator("runtime")
    @classmethod
    def _runtime_runs_format(cls, runtime: RuntimeRef, info: ValidationInfo) -> RuntimeRef:
        model = info.data.get("model")
        if model is not None and RUNTIME_FOR_FORMAT[model.format] != runtime.name:
            raise ValueError(
                f"runtime {runtime.name!r} does not run format {model.format!r} "
                f"(expected {RUNTIME_FOR_FORMAT[model.format]!r})"
            )
        return runtime


class BenchmarkUpload(BaseModel):
    """One upload: the records one device measured for one lakeFS branch."""

    model_config = _STRICT

    schema_version: Literal["dfp.device_benchmark/v1"]
    branch: BranchName
    device: DeviceInfo
    records: Annotated[list[BenchmarkRecord], Field(min_length=1, max_length=MAX_RECORDS)]

    @field_validator("records")
    @classmethod
    def _records_belong_to_upload(
        cls, records: list[BenchmarkRecord], info: ValidationInfo
    ) -> list[BenchmarkRecord]:
        device, branch = info.data.get("device"), info.data.get("branch")
        for i, record in enumerate(records):
            if device is not None and record.device != device:
                differing = "; ".join(
                    f"{f} {getattr(record.device, f)!r} vs {getattr(device, f)!r}"
                    for f in DeviceInfo.model_fields
                    if getattr(record.device, f) != getattr(device, f)
                )
                raise ValueError(
                    f"records[{i}].device differs from the upload's device: {differing}"
                )
            if branch is not None and record.model.branch != branch:
                raise ValueError(
                    f"records[{i}].model.branch {record.model.branch!r} differs from the "
                    f"upload's branch {branch!r}"
                )
        return records


# -- parsing untrusted payloads ------------------------------------------------------------
def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(payload)"


def _value_repr(value: Any) -> str:
    text = ascii(value)  # ascii() shows lookalike and control characters as escapes
    if len(text) > _VALUE_REPR_CHARS:
        text = text[: _VALUE_REPR_CHARS - 3] + "..."
    return text


_JSON_TYPE_NAMES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _rejection(source: str, exc: ValidationError) -> UploadRejected:
    errors = exc.errors(include_url=False)
    first, count = errors[0], len(errors)
    total = f"{count} error{'s' if count != 1 else ''} in total"
    if first["type"] == "json_invalid":
        message = first["msg"].removeprefix("Invalid JSON: ")
        return UploadRejected(
            f"{source}: invalid JSON: {message}", source=source, path="(payload)", error_count=count
        )
    path = _field_path(first["loc"])
    if not first["loc"] and first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        got = _JSON_TYPE_NAMES.get(type(first["input"]), type(first["input"]).__name__)
        return UploadRejected(
            f"{source}: the payload must be a JSON object, got {got}",
            source=source,
            path=path,
            error_count=count,
        )
    message = first["msg"].removeprefix("Value error, ")
    value = "missing" if first["type"] == "missing" else f"value: {_value_repr(first['input'])}"
    return UploadRejected(
        f"{source}: {path}: {message} ({value}); {total}",
        source=source,
        path=path,
        error_count=count,
    )


def parse_upload(
    payload: bytes | str | Mapping[str, Any], source: str, max_bytes: int = MAX_UPLOAD_BYTES
) -> BenchmarkUpload:
    """Validate an untrusted upload: JSON text (bytes/str) or an already-decoded mapping.

    `source` names where it came from (a file path, "request body") in the error message.
    """
    try:
        if isinstance(payload, bytes | bytearray | str):
            try:
                size = len(payload.encode()) if isinstance(payload, str) else len(payload)
            except UnicodeEncodeError as exc:
                raise UploadRejected(
                    f"{source}: payload is not valid UTF-8 text ({exc.reason})", source=source
                ) from None
            if size > max_bytes:
                raise UploadRejected(
                    f"{source}: payload is {size} bytes, over the limit of {max_bytes} bytes",
                    source=source,
                )
            return BenchmarkUpload.model_validate_json(payload)
        if isinstance(payload, Mapping):
            return BenchmarkUpload.model_validate(dict(payload))
    except ValidationError as exc:
        raise _rejection(source, exc) from None
    raise UploadRejected(
        f"{source}: payload must be JSON text or a mapping, got {type(payload).__name__}",
        source=source,
    )


# -- the versioned JSON schema -------------------------------------------------------------
def upload_json_schema() -> dict[str, Any]:
    """Pydantic's JSON schema of `BenchmarkUpload` (validation mode)."""
    return BenchmarkUpload.model_json_schema()


def write_json_schema(path: Path = SCHEMA_FILE) -> Path:
    """Write the committed copy of the schema (regenerate after changing the models)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(upload_json_schema(), indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(write_json_schema())

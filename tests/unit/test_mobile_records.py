"""The device-benchmark record schema: valid uploads round-trip, hostile ones are rejected
with a message naming the source, the field and the value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mobile.records import (
    SCHEMA_FILE,
    SCHEMA_VERSION,
    BenchmarkRecord,
    BenchmarkUpload,
    DeviceInfo,
    LatencyStats,
    UploadRejected,
    parse_upload,
    upload_json_schema,
)

SOURCE = "request body"
SHA = "ab" * 32


def _record(fmt: str = "tflite", runtime: str = "litert", version: str = "2.3.0") -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {
            "name": "malware_model",
            "branch": "main",
            "format": fmt,
            "file_sha256": SHA,
            "file_size_bytes": 279104,
        },
        "runtime": {"name": runtime, "version": version},
        "device": _device(),
        "tool": "benchmark_model",
        "load_ms": 4.213,
        "latency": {
            "min_us": 34.0,
            "max_us": 118.0,
            "mean_us": 38.885,
            "p50_us": 37.0,
            "p90_us": 45.0,
            "p99_us": 87.0,
        },
        "iterations": 200,
        "warmup_iterations": 20,
        "throughput_per_s": None,
        "peak_rss_bytes": 9990140,
        "measured_at": "2026-08-20T10:15:00+00:00",
    }


def _device() -> dict:
    return {
        "name": "pixel-7a",
        "kind": "android",
        "os": "Android 14",
        "cpu": "arm64-v8a",
        "model": "Pixel 7a",
    }


def _payload() -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "branch": "main",
        "device": _device(),
        "records": [
            _record(),
            _record("onnx", "onnxruntime", "1.32.0") | {"tool": "onnxruntime_perf_test"},
        ],
    }


def _set(data: dict, path: str, value: Any) -> None:
    """Set (or, with value DELETE, remove) `a.b[0].c` in nested JSON-like data."""
    keys: list[str | int] = []
    for part in path.replace("]", "").replace("[", ".").split("."):
        keys.append(int(part) if part.isdigit() else part)
    target: Any = data
    for key in keys[:-1]:
        target = target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


DELETE = object()
NAN_TOKEN = "__json_token__"


def _rejected(payload: Any, **kwargs: Any) -> UploadRejected:
    with pytest.raises(UploadRejected) as info:
        parse_upload(payload, SOURCE, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: "), message
    return info.value


# -- valid uploads ---------------------------------------------------------------------------
def test_valid_upload_round_trips_through_json_and_dict():
    upload = parse_upload(json.dumps(_payload()), SOURCE)
    assert isinstance(upload, BenchmarkUpload)
    assert [r.model.format for r in upload.records] == ["tflite", "onnx"]
    assert upload.records[0].measured_at == datetime(2026, 8, 20, 10, 15, tzinfo=UTC)
    assert upload.records[0].latency.p99_us == 87.0

    dumped = upload.model_dump_json()
    assert parse_upload(dumped.encode(), SOURCE) == upload
    assert parse_upload(upload.model_dump(mode="json"), SOURCE) == upload
    # A Python mapping may carry real datetime objects (strict elsewhere, lax only there).
    assert parse_upload(upload.model_dump(), SOURCE) == upload


def test_optional_fields_may_be_null_or_absent():
    payload = _payload()
    latency = payload["records"][0]["latency"]
    latency["p90_us"] = None
    del latency["p99_us"]
    del payload["records"][0]["peak_rss_bytes"]
    payload["device"]["model"] = None
    for record in payload["records"]:
        record["device"]["model"] = None
    upload = parse_upload(json.dumps(payload), SOURCE)
    assert upload.records[0].latency.p90_us is None
    assert upload.records[0].latency.p99_us is None
    assert upload.records[0].peak_rss_bytes is None


def test_integers_are_accepted_for_float_fields():
    payload = _payload()
    payload["records"][0]["latency"]["mean_us"] = 39
    assert parse_upload(json.dumps(payload), SOURCE).records[0].latency.mean_us == 39.0


# -- hostile payloads --------------------------------------------------------------------------
NAMES = [
    "../x",
    "a/b",
    "..",
    "a..b",
    "/etc/passwd",
    "p\u0456xel",  # Cyrillic i
    "\uff50ixel",  # fullwidth p
    "x" * 200,
    "A",
    "",
    "pixel\n",
    "-pixel",
]


@pytest.mark.parametrize("name", NAMES)
def test_unsafe_device_names_are_rejected(name):
    payload = _payload()
    payload["device"]["name"] = name
    for record in payload["records"]:
        record["device"]["name"] = name
    error = _rejected(json.dumps(payload))
    assert error.path == "device.name"
    assert "device.name" in str(error)


CASES = [
    # (case id, path to change, new value, expected path in the message, fragment)
    ("huge float", "records[0].latency.p99_us", 1e300, "records[0].latency.p99_us", "1e+300"),
    ("2**70 int", "records[0].peak_rss_bytes", 2**70, "records[0].peak_rss_bytes", str(2**70)),
    ("2**70 iterations", "records[0].iterations", 2**70, "records[0].iterations", "less than"),
    ("huge file", "records[0].model.file_size_bytes", 2**31 + 1, "", "less than"),
    ("negative load", "records[0].load_ms", -1.0, "records[0].load_ms", "-1.0"),
    ("negative min", "records[0].latency.min_us", -5.0, "records[0].latency.min_us", "-5.0"),
    ("negative warmup", "records[0].warmup_iterations", -1, "records[0].warmup_iterations", ""),
    ("zero throughput", "records[0].throughput_per_s", 0.0, "records[0].throughput_per_s", ""),
    ("NaN", "records[0].latency.mean_us", NAN_TOKEN + "NaN", "records[0].latency.mean_us", "nan"),
    ("Infinity", "records[0].load_ms", NAN_TOKEN + "Infinity", "records[0].load_ms", "inf"),
    ("-Infinity", "records[0].latency.max_us", NAN_TOKEN + "-Infinity", "", "finite"),
    ("missing tool", "records[0].tool", DELETE, "records[0].tool", "missing"),
    ("missing mean", "records[1].latency.mean_us", DELETE, "records[1].latency.mean_us", ""),
    ("missing kind", "device.kind", DELETE, "device.kind", "Field required"),
    ("missing records", "records", DELETE, "records", "missing"),
    ("string for int", "records[0].iterations", "12", "records[0].iterations", "'12'"),
    ("string for float", "records[0].latency.mean_us", "38.9", "", "valid number"),
    ("bool for int", "records[0].iterations", True, "records[0].iterations", "True"),
    ("float for int", "records[0].warmup_iterations", 20.0, "", "valid integer"),
    ("list for object", "device", ["pixel-7a"], "device", "object"),
    ("object for list", "records", {}, "records", "valid array"),
    ("timestamp for date", "records[0].measured_at", 1_760_000_000, "", "ISO 8601"),
    ("extra top-level", "evil", 1, "evil", "Extra inputs are not permitted"),
    ("extra nested", "records[0].latency.p95_us", 40.0, "records[0].latency.p95_us", "Extra"),
    ("extra device", "device.serial", "R58M12", "device.serial", "Extra"),
    ("wrong version", "schema_version", "dfp.device_benchmark/v2", "schema_version", "v2"),
    ("bad branch", "branch", "main/../x", "branch", "pattern"),
    ("space branch", "records[0].model.branch", "a b", "records[0].model.branch", "pattern"),
    ("upper sha", "records[0].model.file_sha256", "AB" * 32, "", "pattern"),
    ("version space", "records[0].runtime.version", "1.0 beta", "", "pattern"),
    ("newline os", "device.os", "Android\n14", "device.os", "printable"),
    ("bidi cpu", "device.cpu", "arm64\u202e", "device.cpu", "\\u202e"),
    ("unknown format", "records[0].model.format", "coreml", "records[0].model.format", ""),
    ("unsafe tool", "records[0].tool", "../../bin/sh", "records[0].tool", "pattern"),
    ("no records", "records", [], "records", "at least 1"),
    ("naive datetime", "records[0].measured_at", "2026-08-20T10:15:00", "", "timezone"),
    ("future", "records[0].measured_at", "2999-01-01T00:00:00Z", "", "future"),
    ("p50 above p90", "records[0].latency.p50_us", 50.0, "records[0].latency.p90_us", "p50_us"),
    ("p99 above max", "records[0].latency.p99_us", 500.0, "records[0].latency.p99_us", "max_us"),
    ("mean above max", "records[0].latency.mean_us", 200.0, "records[0].latency.mean_us", ""),
    ("max below min", "records[0].latency.min_us", 120.0, "records[0].latency.max_us", "min_us"),
    ("format/runtime", "records[0].model.format", "onnx", "records[0].runtime", "'litert'"),
    ("other device", "records[1].device.os", "Android 13", "records", "records[1].device"),
    ("other branch", "records[0].model.branch", "dev", "records", "records[0].model.branch"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected_path", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_hostile_payloads_are_rejected_naming_the_field(path, value, expected_path, fragment):
    payload = _payload()
    _set(payload, path, value)
    text = json.dumps(payload)
    if isinstance(value, str) and value.startswith(NAN_TOKEN):
        text = text.replace(json.dumps(value), value.removeprefix(NAN_TOKEN))
    error = _rejected(text)
    message = str(error)
    expected_path = expected_path or path
    assert error.path == expected_path, message
    assert f": {expected_path}: " in message, message
    assert fragment in message, message
    assert "in total" in message


def test_message_counts_every_error_and_truncates_the_value():
    payload = _payload()
    payload["records"][0]["iterations"] = "many"
    payload["records"][0]["load_ms"] = -3.0
    payload["records"][1]["tool"] = "x" * 300
    error = _rejected(json.dumps(payload))
    assert str(error).endswith("; 3 errors in total")
    assert error.error_count == 3
    assert error.path == "records[0].load_ms"  # errors come in field order

    payload = _payload()
    payload["records"][1]["tool"] = "y" * 300
    message = str(_rejected(json.dumps(payload)))
    shown = message.split("(value: ")[1].split(")")[0]
    assert shown.startswith("'yyy") and shown.endswith("...")
    assert len(shown) <= 80


def test_too_many_records_are_rejected():
    payload = _payload()
    payload["records"] = [_record() for _ in range(65)]
    error = _rejected(json.dumps(payload))
    assert error.path == "records"
    assert "at most 64" in str(error)


def test_payload_over_the_size_limit_is_rejected_before_parsing():
    text = json.dumps(_payload())
    error = _rejected(text + " " * 2_000_000)
    assert f"is {len(text) + 2_000_000} bytes, over the limit of 1048576 bytes" in str(error)
    assert "over the limit of 100 bytes" in str(_rejected(text.encode(), max_bytes=100))
    # Counted in UTF-8 bytes, not characters.
    assert "is 303 bytes" in str(_rejected("\u20ac" * 101, max_bytes=300))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"schema_version": ', "line 1 column 19"),
        ('{\n  "branch": "main",\n  oops\n}', "line 3 column 3"),
        ("", "line 1 column 0"),
        (b"\xff\xfe{", "line 1 column 1"),
    ],
)
def test_invalid_json_is_rejected_with_line_and_column(text, where):
    error = _rejected(text)
    assert "invalid JSON" in str(error)
    assert where in str(error)


@pytest.mark.parametrize(
    ("text", "got"), [("[]", "array"), ('"upload"', "string"), ("null", "null"), ("7", "number")]
)
def test_a_payload_that_is_not_an_object_is_rejected(text, got):
    assert str(_rejected(text)) == f"{SOURCE}: the payload must be a JSON object, got {got}"


def test_unsupported_payload_type_is_rejected():
    assert "got int" in str(_rejected(42))


# -- Python mappings (strict, except that measured_at may be a datetime or an ISO string) --------
def test_mappings_are_validated_strictly():
    payload = _payload()
    payload["records"][0]["measured_at"] = datetime(2026, 8, 20, 10, 15, tzinfo=UTC)
    assert parse_upload(payload, SOURCE).records[0].measured_at.year == 2026

    for path, value, fragment in [
        ("records[0].measured_at", datetime(2026, 8, 20, 10, 15), "timezone"),
        ("records[0].measured_at", 1_760_000_000, "ISO 8601"),
        ("records[0].iterations", True, "valid integer"),
        ("records[0].iterations", "200", "valid integer"),
        ("records[0].latency.mean_us", "38.9", "valid number"),
        ("records[0].latency.mean_us", float("nan"), "finite"),
    ]:
        bad = _payload()
        _set(bad, path, value)
        error = _rejected(bad)
        assert error.path == path
        assert fragment in str(error)


def test_models_reject_bools_and_strings_directly():
    with pytest.raises(ValidationError):
        DeviceInfo(name="pixel", kind="android", os="Android", cpu="arm64-v8a", model=7)
    with pytest.raises(ValidationError):
        BenchmarkRecord.model_validate(_record() | {"iterations": True})
    with pytest.raises(ValidationError):  # frozen
        LatencyStats(min_us=1.0, max_us=2.0, mean_us=1.5).min_us = 0.0  # type: ignore[misc]


def test_upload_rejected_is_a_value_error():
    assert issubclass(UploadRejected, ValueError)
    error = UploadRejected("x: y", source="x", path="y")
    assert (str(error), error.source, error.path, error.error_count) == ("x: y", "x", "y", 1)


# -- LatencyStats.from_samples ------------------------------------------------------------------
def test_from_samples_uses_linear_interpolation():
    samples = [40.0, 41.0, 42.0, 45.0, 50.0, 61.0, 39.0, 43.0, 44.0, 120.0]
    stats = LatencyStats.from_samples(samples)
    assert stats.min_us == 39.0
    assert stats.max_us == 120.0
    assert stats.mean_us == pytest.approx(52.5)
    # Sorted: 39 40 41 42 43 44 45 50 61 120; linear: p50 = (43 + 44) / 2,
    # p90 = 61 + 0.1 * (120 - 61), p99 = 61 + 0.91 * (120 - 61).
    assert stats.p50_us == pytest.approx(43.5)
    assert stats.p90_us == pytest.approx(66.9)
    assert stats.p99_us == pytest.approx(114.69)
    assert stats.p50_us == pytest.approx(float(np.percentile(samples, 50)))


def test_from_samples_keeps_rounding_inside_min_and_max():
    stats = LatencyStats.from_samples([0.1, 0.1, 0.1])
    assert stats.min_us == stats.mean_us == stats.p50_us == stats.p99_us == stats.max_us == 0.1


@pytest.mark.parametrize(
    "samples", [[], [1.0, float("nan")], [1.0, float("inf")], [-1.0, 2.0], [3.7e9]]
)
def test_from_samples_rejects_bad_samples(samples):
    with pytest.raises(ValueError):
        LatencyStats.from_samples(samples)


def test_from_samples_rejects_bools():
    with pytest.raises(TypeError):
        LatencyStats.from_samples([True, 2.0])


# -- the versioned JSON schema ------------------------------------------------------------------
def test_committed_json_schema_equals_the_generated_one():
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == upload_json_schema(), (
        "mobile/schema/device_benchmark.v1.json is stale: regenerate it with "
        "`uv run python -m mobile.records` (and bump SCHEMA_VERSION on a breaking change)"
    )


def test_json_schema_documents_the_contract():
    schema = upload_json_schema()
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert schema["additionalProperties"] is False
    record = schema["$defs"]["BenchmarkRecord"]
    assert record["properties"]["measured_at"]["format"] == "date-time"
    assert schema["properties"]["records"]["maxItems"] == 64
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())


def test_future_bound_is_one_day():
    payload = _payload()
    soon = datetime.now(UTC) + timedelta(hours=20)
    _set(payload, "records[0].measured_at", soon.isoformat())
    assert parse_upload(json.dumps(payload), SOURCE).records[0].measured_at == soon

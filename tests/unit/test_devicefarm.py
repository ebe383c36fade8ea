"""Device-farm glue without services: names, object paths, materialization metadata, the
report's table and plot, and the gateway's refusals (which must happen before Dagster is
ever called)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from dfp.devicefarm import farm
from dfp.devicefarm.gateway import create_app
from mobile.records import BenchmarkUpload, parse_upload

TOKEN = "unit-test-token-0123456789"


def payload(
    branch: str = "main",
    device: str = "pixel-8",
    fmt: str = "onnx",
    runtime: str = "onnxruntime",
    p50: float = 38.0,
    at: str = "2026-11-22T10:00:00+00:00",
    model: str = "malware_model",
):
    info = {
        "name": device,
        "kind": "android",
        "os": "Android 15",
        "cpu": "arm64-v8a",
        "model": "Pixel 8",
    }
    record = {
        "schema_version": "dfp.device_benchmark/v1",
        "model": {
            "name": model,
            "branch": branch,
            "format": fmt,
            "file_sha256": "ab" * 32,
            "file_size_bytes": 290_000,
        },
        "runtime": {"name": runtime, "version": "1.32.0"},
        "device": info,
        "tool": "onnxruntime_perf_test",
        "load_ms": 12.5,
        "latency": {
            "mean_us": p50 + 2,
            "min_us": p50 - 8,
            "max_us": p50 + 50,
            "p50_us": p50,
            "p90_us": p50 + 10,
            "p99_us": p50 + 40,
        },
        "iterations": 1000,
        "warmup_iterations": 10,
        "throughput_per_s": 25000.0,
        "peak_rss_bytes": 50_000_000,
        "measured_at": at,
    }
    return {
        "schema_version": "dfp.device_benchmark/v1",
        "branch": branch,
        "device": info,
        "records": [record],
    }


def upload(**kwargs) -> BenchmarkUpload:
    return parse_upload(json.dumps(payload(**kwargs)), source="test")


def test_host_profile_describes_this_machine():
    info = farm.HostProfile(name="ci-box").device_info()
    assert info.name == "ci-box" and info.kind == "host" and info.os
    assert farm.HostProfile().formats() == ("executorch", "tflite", "onnx", "pytorch")


def test_benchmark_object_is_under_the_device_folder():
    up = upload()
    path = farm.benchmark_object(up, now=datetime(2026, 11, 22, 10, 0, tzinfo=UTC))
    assert path.startswith("benchmarks/pixel-8/20261122T100000000000Z-") and path.endswith(".json")
    assert path != farm.benchmark_object(upload(p50=39.0), now=datetime(2026, 11, 22, tzinfo=UTC))


def test_materialization_metadata_is_plain_json_with_latency_figures():
    metadata = farm.materialization_metadata(upload(), source="rest:pixel-8")
    json.dumps(metadata)  # Dagster's REST API takes raw JSON values only
    assert metadata["device"] == "pixel-8" and metadata["source"] == "rest:pixel-8"
    assert metadata["onnxruntime.onnx.p50_us"] == 38.0
    assert metadata["onnxruntime.onnx.p99_us"] == 78.0
    assert metadata["records"][0]["model"]["file_sha256"] == "ab" * 32


def test_latest_records_keep_the_newest_per_device_and_runtime():
    old = upload(p50=50.0, at="2026-11-20T10:00:00+00:00").records[0]
    new = upload(p50=40.0, at="2026-11-21T10:00:00+00:00").records[0]
    other = upload(device="pixel-9", p50=30.0).records[0]
    latest = farm.latest_records([new, other, old])
    assert [(r.device.name, r.latency.p50_us) for r in latest] == [
        ("pixel-8", 40.0),
        ("pixel-9", 30.0),
    ]
    rows = farm.latency_table_rows(latest)
    assert rows[0]["p50_us"] == 40.0 and rows[0]["runtime"] == "onnxruntime 1.32.0"
    assert rows[1]["file_kb"] == round(290_000 / 1024, 1)
    png = farm.latency_plot_png(latest)
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_each_model_keeps_its_own_latest_record_and_metadata_keys():
    malware = upload(p50=40.0, at="2026-11-21T10:00:00+00:00").records[0]
    toxic = upload(p50=9000.0, model="toxicity_model").records[0]
    latest = farm.latest_records([malware, toxic])
    assert [(r.model.name, r.latency.p50_us) for r in latest] == [
        ("malware_model", 40.0),
        ("toxicity_model", 9000.0),
    ]
    assert [row["model"] for row in farm.latency_table_rows(latest)] == [
        "malware_model",
        "toxicity_model",
    ]
    metadata = farm.materialization_metadata(upload(model="toxicity_model"), source="test")
    assert metadata["toxicity_model.onnxruntime.onnx.p50_us"] == 38.0
    assert "onnxruntime.onnx.p50_us" not in metadata


def test_the_toxicity_models_exports_have_their_own_place():
    model = farm.MODELS["toxicity_model"]
    assert farm.export_object("onnx", model) == "models/toxicity_model/mobile/model.onnx"
    assert farm.export_info_object("tflite", model).endswith("/mobile/model.tflite.json")
    assert model.eager_object == "models/toxicity_model/head.pt"
    assert farm.export_object("onnx") == "models/malware_model/mobile/model.onnx"


# -- the gateway --------------------------------------------------------------------------
@pytest.fixture
def gateway() -> TestClient:
    # Port 9 (discard) refuses connections: a request that got past validation shows up as
    # 502, one that was refused never reaches it.
    return TestClient(
        create_app("http://127.0.0.1:9", TOKEN, lambda b: b in {"main", "exp-1"}, timeout=2)
    )


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_gateway_needs_a_real_token():
    with pytest.raises(ValueError, match="16 characters"):
        create_app("http://127.0.0.1:9", "short", lambda b: True)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": TOKEN},
        {"Authorization": f"bearer {TOKEN}x"},
    ],
)
def test_gateway_refuses_without_the_token(gateway, headers):
    reply = gateway.post("/v1/device-benchmarks", json=payload(), headers=headers)
    assert reply.status_code == 401 and "token" in reply.json()["error"]


def test_gateway_refuses_hostile_payloads_before_dagster(gateway):
    cases = {
        "traversal": (lambda p: p["device"].update(name="../x"), "device.name"),
        "negative": (lambda p: p["records"][0].update(iterations=-1), "iterations"),
        "huge": (lambda p: p["records"][0]["latency"].update(max_us=1e300), "max_us"),
        "wrong type": (lambda p: p["records"][0].update(load_ms="fast"), "load_ms"),
        "missing": (lambda p: p["records"][0].pop("runtime"), "runtime"),
    }
    for name, (mutate, field) in cases.items():
        body = payload()
        mutate(body)
        reply = gateway.post("/v1/device-benchmarks", json=body, headers=AUTH)
        assert reply.status_code == 422, name
        assert field in reply.json()["error"], (name, reply.json())
    reply = gateway.post("/v1/device-benchmarks", content=b"x" * 1_100_000, headers=AUTH)
    assert reply.status_code == 413
    unknown = payload(branch="ghost")
    reply = gateway.post("/v1/device-benchmarks", json=unknown, headers=AUTH)
    assert reply.status_code == 404 and "ghost" in reply.json()["error"]


def test_gateway_forwards_a_valid_upload(gateway):
    reply = gateway.post("/v1/device-benchmarks", json=payload(branch="exp-1"), headers=AUTH)
    assert reply.status_code == 502 and "unreachable" in reply.json()["error"]
    assert gateway.get("/v1/device-benchmarks").status_code == 405
    assert gateway.get("/anything-else").status_code == 404


def test_measured_at_in_the_future_is_refused():
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    with pytest.raises(ValueError):
        upload(at=future)

"""Mobile exports with blocking parity checks, and the device farm's two upload paths into
`device_benchmarks`: the gateway in front of a real Dagster webserver's REST API, and JSON
committed to lakeFS that a real daemon's sensor records."""

import hashlib
import json
import re
import time

import dagster as dg
import pytest
import requests
from click.testing import CliRunner

from dfp.cli import main
from dfp.devicefarm import farm as devicefarm
from dfp.devicefarm.farm import BENCHMARK_ASSET, export_info_object, export_object
from dfp.lake import wap
from dfp_assets.kronodroid.mobile import PARITY_CHECK, device_benchmark_sensor
from dfp_resources.environment import build_resources
from mobile.exporters import FORMATS, ExportInfo
from mobile.runtimes import RUNTIME_OF
from tests.integration import dagster_processes as procs
from tests.integration.jobs import build_staging, export_models, run_report, train_model

pytestmark = pytest.mark.integration

DATA = {"source": "synthetic", "synthetic_scale": 0.03, "synthetic_seed": 21}
FAST = {"epochs": 3, "f1_floor": 0.5}
TOKEN = "test-token-" + "x" * 24
BENCH = ["--iterations", "40", "--warmup", "5"]


def _device_farm(branch: str, upload: str, *options: str):
    """`dfp devicefarm run` on the host profile, a short benchmark."""
    argv = ["devicefarm", "run", "--device", "host", "--branch", branch, "--upload", upload]
    return CliRunner().invoke(main, [*argv, *options, *BENCH])


def _assert_stage_lines(output: str, branch: str, uploaded: str) -> None:
    """One progress line per stage, in order, each with the seconds since the start."""
    stages = [line for line in output.splitlines() if re.match(r"\[ *\d+\.\ds\] ", line)]
    expected = [
        rf"device \S+ \(host\): benchmarking the malware_model exports of '{branch}'",
        *[
            rf"downloaded {re.escape(export_object(f))} \({f}, [\d.]+ [KM]B\), "
            r"sha256 [0-9a-f]{12} verified"
            for f in FORMATS
        ],
        r"downloaded models/malware_model/model\.pt \(pytorch, [\d.]+ [KM]B\), sha256 [0-9a-f]{12}",
        *[
            rf"benchmarked {RUNTIME_OF[f]} \S+ \({f}\): p50 [\d.]+ µs, load [\d.]+ ms, "
            "40 iterations"
            for f in (*FORMATS, "pytorch")
        ],
        rf"uploaded: {uploaded}",
    ]
    assert len(stages) == len(expected), output
    for line, pattern in zip(stages, expected, strict=True):
        assert re.fullmatch(rf"\[ *\d+\.\ds\] {pattern}", line), (line, pattern)
    seconds = [float(line[1:].split("s]")[0]) for line in stages]
    assert seconds == sorted(seconds)


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}


def _assert_exports_published(lakefs, result, branch: str) -> None:
    assert result.success
    checks = _checks(result)
    for fmt in FORMATS:
        check = checks[f"model_{fmt}"]
        assert check.check_name == PARITY_CHECK and check.passed, check.description
        assert check.metadata["max_abs_diff"].value <= 1e-4
        assert check.metadata["class_mismatches"].value == 0
        data = lakefs.read(branch, export_object(fmt))
        info = ExportInfo.model_validate_json(lakefs.read(branch, export_info_object(fmt)))
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert info.size_bytes == len(data)
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]


def _upload_payload(branch: str, device: str = "pixel-8") -> dict:
    record = {
        "schema_version": "dfp.device_benchmark/v1",
        "model": {
            "name": "malware_model",
            "branch": branch,
            "format": "onnx",
            "file_sha256": "ab" * 32,
            "file_size_bytes": 290_000,
        },
        "runtime": {"name": "onnxruntime", "version": "1.32.0"},
        "device": {
            "name": device,
            "kind": "android",
            "os": "Android 15",
            "cpu": "arm64-v8a",
            "model": "Pixel 8",
        },
        "tool": "onnxruntime_perf_test",
        "load_ms": 12.5,
        "latency": {
            "mean_us": 40.0,
            "min_us": 30.0,
            "max_us": 90.0,
            "p50_us": 38.0,
            "p90_us": 50.0,
            "p99_us": 80.0,
        },
        "iterations": 1000,
        "warmup_iterations": 10,
        "throughput_per_s": 25000.0,
        "peak_rss_bytes": 50_000_000,
        "measured_at": "2026-11-22T10:00:00+00:00",
    }
    return {
        "schema_version": "dfp.device_benchmark/v1",
        "branch": branch,
        "device": record["device"],
        "records": [record],
    }


def _hostile_bodies(branch: str) -> dict[str, tuple[int, bytes]]:
    def variant(mutate) -> bytes:
        payload = _upload_payload(branch)
        mutate(payload)
        return json.dumps(payload).encode()

    def traversal(p):
        p["device"]["name"] = p["records"][0]["device"]["name"] = "../../etc"

    def huge(p):
        p["records"][0]["latency"]["max_us"] = 1e300

    def negative(p):
        p["records"][0]["iterations"] = -5

    def missing(p):
        del p["records"][0]["latency"]

    def wrong_type(p):
        p["records"][0]["peak_rss_bytes"] = "lots"

    def unknown_branch(p):
        p["branch"] = p["records"][0]["model"]["branch"] = "no-such-branch"

    return {
        "traversal": (422, variant(traversal)),
        "huge": (422, variant(huge)),
        "negative": (422, variant(negative)),
        "missing": (422, variant(missing)),
        "wrong_type": (422, variant(wrong_type)),
        "not_json": (422, b"{not json"),
        "too_big": (413, b" " * 1_100_000),
        "unknown_branch": (404, variant(unknown_branch)),
    }


def test_exports_parity_and_device_farm_over_rest(lakefs, instance, tmp_path, monkeypatch):
    assert build_staging(instance, "main", DATA).success
    assert train_model(instance, "main", FAST).success
    _assert_exports_published(lakefs, export_models(instance, "main"), "main")

    monkeypatch.setenv(devicefarm.TOKEN_ENV, TOKEN)
    home = instance.root_directory
    with procs.webserver(home, tmp_path) as web, procs.gateway(web, TOKEN, tmp_path) as gate:
        cli = _device_farm("main", "rest", "--gateway", gate)
        assert cli.exit_code == 0, cli.output
        assert "gateway recorded 4 record(s) for device_benchmarks partition main" in cli.output
        _assert_stage_lines(
            cli.output,
            "main",
            "gateway recorded 4 record\\(s\\) for device_benchmarks partition main",
        )

        found = procs.graphql_materializations(web, BENCHMARK_ASSET, "main")
        assert len(found) == 1 and found[0]["partition"] == "main"
        labels = {e["label"] for e in found[0]["metadataEntries"]}
        assert {"records", "device", "onnxruntime.onnx.p50_us", "pytorch.pytorch.p99_us"} <= labels
        assert procs.graphql_materializations(web, BENCHMARK_ASSET, "exp-none") == []

        # Hostile or unauthenticated uploads: each rejected with a reason, nothing recorded.
        url = f"{gate}/v1/device-benchmarks"
        good = json.dumps(_upload_payload("main")).encode()
        for token in ("", "Bearer wrong-token-wrong-token", f"Basic {TOKEN}"):
            reply = requests.post(url, data=good, headers={"Authorization": token}, timeout=30)
            assert reply.status_code == 401, reply.text
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for name, (status, body) in _hostile_bodies("main").items():
            reply = requests.post(url, data=body, headers=auth, timeout=30)
            assert reply.status_code == status, (name, reply.text)
            assert reply.json()["error"], name
        traversal = requests.post(
            url, data=_hostile_bodies("main")["traversal"][1], headers=auth, timeout=30
        ).json()["error"]
        assert "device.name" in traversal and "../../etc" in traversal
        assert len(procs.graphql_materializations(web, BENCHMARK_ASSET, "main")) == 1

        # A well-formed upload from a second device is recorded for the same partition.
        reply = requests.post(url, data=good, headers=auth, timeout=30)
        assert reply.status_code == 200, reply.text
        assert len(procs.graphql_materializations(web, BENCHMARK_ASSET, "main")) == 2

    # The report shows the latest record per device and runtime: a table and a plot.
    report = run_report(instance, "main")
    assert report.success
    (mat,) = [
        e.event_specific_data.materialization for e in report.get_asset_materialization_events()
    ]
    table = mat.metadata["latency"].value
    rows = {(r.data["device"], r.data["format"]) for r in table.records}
    assert {(d, f) for d, f in rows if d == "pixel-8"} == {("pixel-8", "onnx")}
    assert {f for d, f in rows if d != "pixel-8"} == {*FORMATS, "pytorch"}
    assert mat.metadata["latency_plot"].value.startswith("![latency")
    assert mat.metadata["records"].value == 5


def test_lakefs_upload_is_recorded_by_the_daemons_sensor(lakefs, instance, tmp_path):
    assert build_staging(instance, "main", DATA).success
    assert train_model(instance, "main", FAST).success
    assert export_models(instance, "main").success
    lakefs.create_branch("exp-2", "main")
    instance.add_dynamic_partitions("lakefs_branch", ["exp-2"])

    cli = _device_farm("exp-2", "lakefs")
    assert cli.exit_code == 0, cli.output
    (path,) = [o.path for o in lakefs.list_objects("exp-2", devicefarm.BENCHMARKS_PREFIX)]
    _assert_stage_lines(
        cli.output, "exp-2", rf"committed {re.escape(path)} to exp-2 @ [0-9a-f]{{12}}"
    )

    home = instance.root_directory
    with procs.webserver(home, tmp_path) as web, procs.daemon(home, tmp_path):
        deadline = time.monotonic() + 180
        found: list[dict] = []
        while not found and time.monotonic() < deadline:
            found = procs.graphql_materializations(web, BENCHMARK_ASSET, "exp-2")
            time.sleep(2)
        assert found, (tmp_path / "daemon.log").read_text()[-3000:]
        assert found[0]["partition"] == "exp-2"
        texts = {e["label"]: e.get("text") for e in found[0]["metadataEntries"]}
        assert texts["source"].startswith(f"lakefs:exp-2/{path}@")
        # main has no benchmark files: nothing recorded for it.
        assert procs.graphql_materializations(web, BENCHMARK_ASSET, "main") == []


def test_sensor_rejects_hostile_benchmark_files(lakefs, instance):
    lakefs.create_branch("exp-3", "main")
    instance.add_dynamic_partitions("lakefs_branch", ["main", "exp-3"])
    resources = {"lakefs": build_resources()["lakefs"]}

    def evaluate(cursor: str | None):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
            return device_benchmark_sensor(ctx)

    first = evaluate(None)
    assert not first.asset_events
    cursor = first.cursor

    good = _upload_payload("exp-3")
    bad_device = _upload_payload("exp-3", device="a")
    bad_device["device"]["name"] = bad_device["records"][0]["device"]["name"] = "../a"
    files = {
        "benchmarks/pixel-8/ok.json": json.dumps(good),
        "benchmarks/pixel-8/huge.json": json.dumps(
            {**good, "records": [{**good["records"][0], "iterations": 10**12}]}
        ),
        "benchmarks/pixel-8/broken.json": "{",
        "benchmarks/other-phone/misplaced.json": json.dumps(good),  # not its device's folder
        "benchmarks/pixel-8/traversal.json": json.dumps(bad_device),
        "benchmarks/pixel-8/wrong-branch.json": json.dumps(_upload_payload("main")),
    }
    for path, body in files.items():
        lakefs.upload("exp-3", path, body.encode())
    lakefs.commit("exp-3", "benchmarks by hand")

    result = evaluate(cursor)
    assert [e.partition for e in result.asset_events] == ["exp-3"]
    (event,) = result.asset_events
    assert event.metadata["source"].value.startswith("lakefs:exp-3/benchmarks/pixel-8/ok.json@")
    # Nothing new since: the next tick records nothing.
    assert not evaluate(result.cursor).asset_events


def test_export_that_disagrees_with_eager_is_blocked(lakefs, instance, monkeypatch):
    """A faulty exporter (here: it exports a model whose output bias is shifted) fails the
    blocking parity check: the run fails and nothing reaches the branch."""
    import copy

    import torch

    import dfp_assets.platform.mobile as mobile_assets
    from mobile.exporters import export_model

    def faulty_export(model, fmt, out_dir, example_inputs=None):
        broken = copy.deepcopy(model)
        with torch.no_grad():
            broken.mlp[-1].bias += 6.0  # every probability moves towards malware
        return export_model(broken, fmt, out_dir, example_inputs)

    assert build_staging(instance, "main", DATA).success
    assert train_model(instance, "main", FAST).success
    head = lakefs.head("main")
    monkeypatch.setattr(mobile_assets, "export_model", faulty_export)
    result = export_models(instance, "main")
    assert not result.success
    checks = _checks(result)
    assert {k for k, c in checks.items() if not c.passed} == {f"model_{f}" for f in FORMATS}
    for check in checks.values():
        assert check.metadata["class_mismatches"].value > 0
        assert check.metadata["max_abs_diff"].value > 1e-4
    assert lakefs.head("main") == head
    assert not list(lakefs.list_objects("main", devicefarm.EXPORTS_PREFIX))
    assert not [b for b in lakefs.list_branches(show_hidden=True) if wap.is_run_branch(b)]

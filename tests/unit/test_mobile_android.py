"""The Android profile: exact adb argv lists, the native runners' recorded outputs parsed to
the numbers they print, clear errors, and `run` against an injected runner."""

from __future__ import annotations

import os
import shlex
import stat
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mobile.android import (
    AdbError,
    AdbProfile,
    ParsedRun,
    RunnerOutputError,
    parse_output,
)
from mobile.records import SCHEMA_VERSION, BenchmarkRecord, DeviceInfo, safe_device_name

DATA = Path(__file__).parent / "data" / "devicefarm"
SAMPLE = {
    "executorch": DATA / "executor_runner.txt",
    "tflite": DATA / "benchmark_model.txt",
    "onnx": DATA / "onnxruntime_perf_test.txt",
}
BASE = "/data/local/tmp/dfp"
ENV = f"LD_LIBRARY_PATH={BASE}/lib"


def sample(fmt: str) -> str:
    return SAMPLE[fmt].read_text()


# -- argv lists --------------------------------------------------------------------------------
def test_adb_base_with_and_without_serial():
    assert AdbProfile().adb_base() == ["adb"]
    assert AdbProfile(serial="emulator-5554", adb="/opt/pt/adb").adb_base() == [
        "/opt/pt/adb",
        "-s",
        "emulator-5554",
    ]
    assert AdbProfile(serial="192.168.1.20:5555").list_devices_command() == ["adb", "devices"]


@pytest.mark.parametrize("serial", [None, "R58M12ABCDE"])
def test_benchmark_commands_are_exact(serial):
    profile = AdbProfile(serial=serial)
    prefix = ["adb", "-s", serial, "shell"] if serial else ["adb", "shell"]
    assert profile.benchmark_command("executorch", "dfp_model.pte", 100, 10) == [
        *prefix,
        f"{ENV} {BASE}/bin/executor_runner --model_path={BASE}/dfp_model.pte "
        "--num_executions=110 --cpu_threads=1 --print_output=none 2>&1",
    ]
    assert profile.benchmark_command("tflite", "dfp_model.tflite", 100, 10) == [
        *prefix,
        f"{ENV} {BASE}/bin/benchmark_model --graph={BASE}/dfp_model.tflite --num_runs=100 "
        "--min_secs=0 --warmup_runs=10 --warmup_min_secs=0 --num_threads=1 "
        "--use_xnnpack=true --report_peak_memory_footprint=true 2>&1",
    ]
    assert profile.benchmark_command("onnx", "dfp_model.onnx", 100, 10) == [
        *prefix,
        f"{ENV} {BASE}/bin/onnxruntime_perf_test -e cpu -m times -r 100 -x 1 -I -s "
        f"{BASE}/dfp_model.onnx 2>&1",
    ]


def test_push_mkdir_and_getprop_commands_are_exact(tmp_path):
    profile = AdbProfile(serial="emulator-5554", remote_dir="/data/local/tmp/bench/")
    local = tmp_path / "model.pte"
    assert profile.push_command(local, "dfp_model.pte") == [
        "adb",
        "-s",
        "emulator-5554",
        "push",
        str(local),
        "/data/local/tmp/bench/dfp_model.pte",
    ]
    assert profile.mkdir_command() == [
        "adb",
        "-s",
        "emulator-5554",
        "shell",
        "mkdir -p /data/local/tmp/bench",
    ]
    shell = ["adb", "-s", "emulator-5554", "shell"]
    assert profile.device_info_commands() == {
        "model": [*shell, "getprop ro.product.model"],
        "os_release": [*shell, "getprop ro.build.version.release"],
        "abi": [*shell, "getprop ro.product.cpu.abi"],
    }


def test_relative_local_paths_are_pushed_as_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = AdbProfile().push_command(Path("-rf"), "m.onnx")
    assert argv[2] == str(tmp_path / "-rf")


def test_runner_paths_threads_and_absolute_models():
    profile = AdbProfile(
        remote_dir="/sdcard/dfp",
        runner_paths={"onnx": "/data/local/tmp/ort/onnxruntime_perf_test"},
        num_threads=4,
    )
    assert profile.runner_paths == {
        "executorch": "/sdcard/dfp/bin/executor_runner",
        "tflite": "/sdcard/dfp/bin/benchmark_model",
        "onnx": "/data/local/tmp/ort/onnxruntime_perf_test",
    }
    command = profile.benchmark_command("onnx", "/data/local/tmp/m+1.onnx", 5, 0)[-1]
    assert shlex.split(command) == [
        "LD_LIBRARY_PATH=/sdcard/dfp/lib",
        "/data/local/tmp/ort/onnxruntime_perf_test",
        *["-e", "cpu", "-m", "times", "-r", "5", "-x", "4", "-I", "-s"],
        "/data/local/tmp/m+1.onnx",
        "2>&1",
    ]


def test_shell_commands_quote_every_token():
    argv = AdbProfile().shell_command(["echo", "a b", "$(reboot)", "x;y"])
    assert argv == ["adb", "shell", "echo 'a b' '$(reboot)' 'x;y'"]
    assert shlex.split(argv[-1]) == ["echo", "a b", "$(reboot)", "x;y"]


@pytest.mark.parametrize(
    "remote",
    [
        "../x.pte",
        "..",
        "a b.pte",
        "x;rm -rf /",
        "$(reboot).pte",
        "m`id`.pte",
        "/data/local/tmp/../../etc/passwd",
        "/data/./x",
        "relative/dir.pte",
        "-rf",
        "",
        "m\u0456.pte",
    ],
)
def test_unsafe_remote_names_are_rejected(remote, tmp_path):
    profile = AdbProfile()
    with pytest.raises(ValueError, match="unsafe remote"):
        profile.benchmark_command("executorch", remote, 10, 1)
    with pytest.raises(ValueError, match="unsafe remote"):
        profile.push_command(tmp_path / "m.pte", remote)


@pytest.mark.parametrize(
    "fields",
    [
        {"remote_dir": "/data/local/tmp/../x"},
        {"remote_dir": "data/local/tmp"},
        {"remote_dir": "/data/local/tmp/my dir"},
        {"remote_dir": "/"},
        {"runner_paths": {"onnx": "/data/local/tmp/bin/perf test"}},
        {"runner_paths": {"onnx": "bin/onnxruntime_perf_test"}},
        {"runner_paths": {"coreml": "/data/local/tmp/x"}},
        {"serial": "emulator-5554; reboot"},
        {"serial": ""},
        {"num_threads": 0},
        {"adb": ""},
        {"unknown": 1},
    ],
)
def test_unsafe_profiles_are_rejected(fields):
    with pytest.raises(ValidationError):
        AdbProfile(**fields)


@pytest.mark.parametrize(
    ("fmt", "iterations", "warmup", "match"),
    [
        ("pytorch", 10, 1, "no native Android runner"),
        ("executorch", 0, 1, "iterations"),
        ("executorch", True, 1, "iterations"),
        ("tflite", 10, -1, "warmup"),
        ("onnx", 10, 1.5, "warmup"),
    ],
)
def test_bad_benchmark_arguments_are_rejected(fmt, iterations, warmup, match):
    with pytest.raises(ValueError, match=match):
        AdbProfile().benchmark_command(fmt, "m.onnx", iterations, warmup)


# -- parsing the recorded samples --------------------------------------------------------------
# The numbers below are copied from the sample files, not taken from the parser.
ET_WARMUP_MS = [0.412396, 0.097240, 0.071875, 0.066042, 0.063958]
ET_TIMED_MS = [
    *[0.048560, 0.047106, 0.044668, 0.045561, 0.044270, 0.045629, 0.048362, 0.050032],
    *[0.045627, 0.046204, 0.049075, 0.051963, 0.048077, 0.081667, 0.045698, 0.052488],
    *[0.044927, 0.047112, 0.046973, 0.044994],
]


def test_executor_runner_sample():
    run = parse_output("executorch", sample("executorch"), warmup=5)
    timed_us = [t * 1000 for t in ET_TIMED_MS]
    assert run.tool == "executor_runner"
    assert run.iterations == 20
    assert run.warmup_iterations == 5
    assert run.load_ms == pytest.approx(2.871354)  # "Model loaded in 2.871354 ms."
    assert run.latency.min_us == pytest.approx(44.270)
    assert run.latency.max_us == pytest.approx(81.667)
    assert run.latency.mean_us == pytest.approx(sum(timed_us) / 20)
    for field, q in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99)):
        assert getattr(run.latency, field) == pytest.approx(np.percentile(timed_us, q))
    assert run.throughput_per_s == pytest.approx(20 / (sum(ET_TIMED_MS) / 1000))
    assert run.peak_rss_bytes is None
    assert run.runtime_version is None
    # The runner's own total is the sum of every logged iteration, warm-up included.
    assert sum(ET_WARMUP_MS + ET_TIMED_MS) == pytest.approx(1.690504)


def test_executor_runner_without_warmup_keeps_every_iteration():
    run = parse_output("executorch", sample("executorch"))
    assert (run.iterations, run.warmup_iterations) == (25, 0)
    assert run.latency.max_us == pytest.approx(412.396)
    assert run.latency.mean_us == pytest.approx(1.690504 * 1000 / 25)


def test_benchmark_model_sample():
    run = parse_output("tflite", sample("tflite"))
    assert run.tool == "benchmark_model"
    # "count=200 first=39 curr=58 min=34 max=118 avg=38.885 std=8 p5=34 median=37 p95=49"
    assert (run.latency.min_us, run.latency.max_us) == (34.0, 118.0)
    assert run.latency.mean_us == pytest.approx(38.885)
    assert run.latency.p50_us == 37.0
    assert (run.latency.p90_us, run.latency.p99_us) == (None, None)
    assert run.iterations == 200
    assert run.warmup_iterations == 20  # "count=20 first=403 ..."
    assert run.load_ms == pytest.approx(4.213)  # "Init: 4213" (us)
    # "Overall peak memory footprint (MB) via periodic monitoring: 9.52734" (MiB)
    assert run.peak_rss_bytes == round(9.52734 * 1024 * 1024)
    assert run.throughput_per_s == pytest.approx(1e6 / 38.885)  # derived: 200 / (200 * avg)


def test_onnxruntime_perf_test_sample():
    run = parse_output("onnx", sample("onnx"))
    assert run.tool == "onnxruntime_perf_test"
    assert run.load_ms == pytest.approx(21.3377)  # 0.0213377 s
    assert run.latency.mean_us == pytest.approx(69.253)  # 0.069253 ms
    assert run.latency.min_us == pytest.approx(61.0473)  # 6.10473e-05 s
    assert run.latency.max_us == pytest.approx(188.542)  # 0.000188542 s
    assert run.latency.p50_us == pytest.approx(65.2524)
    assert run.latency.p90_us == pytest.approx(80.2113)
    assert run.latency.p99_us == pytest.approx(142.75)
    assert run.iterations == 200
    assert run.warmup_iterations == 1
    assert run.throughput_per_s == pytest.approx(13707.5)
    assert run.peak_rss_bytes == 27725824


@pytest.mark.parametrize("fmt", ["executorch", "tflite", "onnx"])
def test_crlf_output_parses_the_same(fmt):
    text = sample(fmt)
    assert parse_output(fmt, text.replace("\n", "\r\n"), 5) == parse_output(fmt, text, 5)


def test_older_onnxruntime_average_line_is_accepted():
    text = sample("onnx").replace(
        "Average inference time cost total:", "Average inference time cost:"
    )
    assert parse_output("onnx", text).latency.mean_us == pytest.approx(69.253)


def test_benchmark_model_all_same_stat_line():
    text = sample("tflite").replace(
        "count=200 first=39 curr=58 min=34 max=118 avg=38.885 std=8 p5=34 median=37 p95=49",
        "count=200 curr=40(all same) p5=40 median=40 p95=40",
    )
    latency = parse_output("tflite", text).latency
    assert (latency.min_us, latency.mean_us, latency.p50_us, latency.max_us) == (40, 40, 40, 40)


def test_a_mean_rounded_just_outside_min_is_pulled_back():
    text = sample("onnx").replace(
        "Average inference time cost total: 0.069253 ms",
        "Average inference time cost total: 0.061047 ms",
    )
    assert parse_output("onnx", text).latency.mean_us == pytest.approx(61.0473)


def test_parsed_runs_fit_the_record_schema():
    for fmt, runtime in (
        ("executorch", "executorch"),
        ("tflite", "litert"),
        ("onnx", "onnxruntime"),
    ):
        run = parse_output(fmt, sample(fmt), warmup=5)
        record = BenchmarkRecord.model_validate(
            {
                "schema_version": SCHEMA_VERSION,
                "model": {
                    "name": "malware_model",
                    "branch": "main",
                    "format": fmt,
                    "file_sha256": "0" * 64,
                    "file_size_bytes": 279104,
                },
                "runtime": {"name": runtime, "version": run.runtime_version or "unknown"},
                "device": {"name": "pixel-7a", "kind": "android", "os": "Android 14", "cpu": "x"},
                "tool": run.tool,
                "measured_at": datetime.now(UTC),
                **run.model_dump(exclude={"tool", "runtime_version"}),
            }
        )
        assert record.latency == run.latency


# -- output that lacks what the parser needs ----------------------------------------------------
def _drop(text: str, needle: str) -> str:
    return "\n".join(line for line in text.splitlines() if needle not in line)


@pytest.mark.parametrize(
    ("fmt", "text", "warmup", "match"),
    [
        (
            "executorch",
            _drop(sample("executorch"), "Model executed successfully"),
            0,
            r"executor_runner: no 'Model executed successfully N time\(s\) in T ms\.' line",
        ),
        ("executorch", _drop(sample("executorch"), "Iteration "), 0, "per-iteration"),
        ("executorch", _drop(sample("executorch"), "Iteration 7 of"), 0, "not 1..25 of 25"),
        (
            "executorch",
            sample("executorch").replace("0.081667 ms", "0.091667 ms"),
            0,
            "iteration times sum to 1.700504 ms but the total is 1.690504 ms",
        ),
        ("executorch", sample("executorch"), 25, "not more than the 25 warm-up"),
        ("tflite", _drop(sample("tflite"), "count="), 0, "expected 2 'count=...' stat lines"),
        ("tflite", _drop(sample("tflite"), "Inference timings"), 0, "'Inference timings in us"),
        ("onnx", _drop(sample("onnx"), "Latency: "), 0, "run it with -s"),
        ("onnx", _drop(sample("onnx"), "Average inference"), 0, "'Average inference time cost'"),
        ("onnx", _drop(sample("onnx"), "Session creation"), 0, "'Session creation time cost'"),
        (
            "onnx",
            sample("onnx").replace("Min Latency: 6.10473e-05 s", "Min Latency: 9.10473e-05 s"),
            0,
            "inconsistent latency stats",
        ),
        ("onnx", sample("onnx").replace("0.069253 ms", "nan ms"), 0, "not a finite number"),
        ("onnx", "", 0, r"\(no output\)"),
    ],
)
def test_missing_lines_give_clear_errors(fmt, text, warmup, match):
    with pytest.raises(RunnerOutputError, match=match):
        parse_output(fmt, text, warmup=warmup)


def test_errors_show_the_first_lines_of_the_output():
    with pytest.raises(RunnerOutputError) as info:
        parse_output("onnx", "CANNOT LINK EXECUTABLE: library libonnxruntime.so not found\n")
    message = str(info.value)
    assert message.startswith("onnxruntime_perf_test: no 'Session creation time cost' line")
    assert "| CANNOT LINK EXECUTABLE: library libonnxruntime.so not found" in message


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError, match="no native Android runner for format 'pytorch'"):
        parse_output("pytorch", "")


# -- run() and device_info() with an injected runner ---------------------------------------------
DEVICES = "List of devices attached\nemulator-5554\tdevice\nR58M12ABCDE\tunauthorized\n\n"


class FakeAdb:
    """Answers adb argv lists from recorded outputs and remembers what it was asked."""

    def __init__(self, benchmark_output: str = "", devices: str = DEVICES, props=None):
        self.calls: list[list[str]] = []
        self.benchmark_output = benchmark_output
        self.devices = devices
        self.props = props or {}

    def __call__(self, argv: list[str]) -> str:
        self.calls.append(argv)
        if argv[1:] == ["devices"]:
            return self.devices
        if argv[-2] == "push":
            return f"{argv[-2]}: 1 file pushed, 0 skipped. 93.1 MB/s (279104 bytes in 0.003s)\n"
        command = argv[-1]
        if command.startswith("getprop "):
            return self.props.get(command.split()[1], "") + "\n"
        if command.startswith("mkdir "):
            return ""
        return self.benchmark_output


@pytest.mark.parametrize(
    ("fmt", "suffix", "tool"),
    [
        ("executorch", ".pte", "executor_runner"),
        ("tflite", ".tflite", "benchmark_model"),
        ("onnx", ".onnx", "onnxruntime_perf_test"),
    ],
)
def test_run_pushes_runs_and_parses(fmt, suffix, tool, tmp_path):
    model = tmp_path / f"malware_model{suffix}"
    model.write_bytes(b"\0" * 1024)
    profile = AdbProfile(serial="emulator-5554")
    fake = FakeAdb(sample(fmt))

    run = profile.run(fmt, model, 20, 5, runner=fake)

    remote = f"{BASE}/dfp_model{suffix}"
    adb = ["adb", "-s", "emulator-5554"]
    assert fake.calls == [
        ["adb", "devices"],
        [*adb, "shell", f"mkdir -p {BASE}"],
        [*adb, "push", str(model), remote],
        profile.benchmark_command(fmt, f"dfp_model{suffix}", 20, 5),
    ]
    assert isinstance(run, ParsedRun)
    assert run.tool == tool
    expected = {"executorch": (20, 5), "tflite": (200, 20), "onnx": (200, 1)}[fmt]
    assert (run.iterations, run.warmup_iterations) == expected


def test_run_picks_the_only_ready_device_without_a_serial(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    fake = FakeAdb(sample("onnx"))
    AdbProfile().run("onnx", model, 200, 1, runner=fake)
    assert fake.calls[1] == ["adb", "shell", f"mkdir -p {BASE}"]


@pytest.mark.parametrize(
    ("serial", "devices", "match"),
    [
        ("ZY22FLK3", DEVICES, "device 'ZY22FLK3' is not listed by `adb devices`"),
        ("R58M12ABCDE", DEVICES, "device 'R58M12ABCDE' is 'unauthorized', not ready"),
        (None, "List of devices attached\n\n", "0 ready devices"),
        (
            None,
            "List of devices attached\nemulator-5554\tdevice\nemulator-5556\tdevice\n",
            "set AdbProfile.serial",
        ),
    ],
)
def test_run_refuses_a_device_that_is_not_ready(serial, devices, match, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    fake = FakeAdb(sample("tflite"), devices=devices)
    with pytest.raises(AdbError, match=match):
        AdbProfile(serial=serial).run("tflite", model, 10, 1, runner=fake)
    assert fake.calls == [["adb", "devices"]]


def test_run_needs_an_existing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AdbProfile().run("onnx", tmp_path / "missing.onnx", 10, 1, runner=FakeAdb())


def test_device_info_reads_getprop(tmp_path):
    props = {
        "ro.product.model": "Pixel 7a",
        "ro.build.version.release": "14",
        "ro.product.cpu.abi": "arm64-v8a",
    }
    fake = FakeAdb(props=props)
    info = AdbProfile(serial="emulator-5554").device_info(runner=fake)
    assert info == DeviceInfo(
        name="pixel-7a", kind="android", os="Android 14", cpu="arm64-v8a", model="Pixel 7a"
    )
    assert fake.calls[0] == ["adb", "devices"]


def test_device_info_sanitises_hostile_properties():
    props = {"ro.product.model": "../../Evil\x1b[31m Phone", "ro.product.cpu.abi": ""}
    info = AdbProfile(serial="emulator-5554").device_info(runner=FakeAdb(props=props))
    assert info.name == "evil-31m-phone"
    assert info.model == "../../Evil[31m Phone"
    assert (info.os, info.cpu) == ("Android", "unknown")
    # Without a model name the serial names the device.
    info = AdbProfile(serial="emulator-5554").device_info(runner=FakeAdb())
    assert (info.name, info.model) == ("emulator-5554", None)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Pixel 7a", "pixel-7a"),
        ("SM-A546B", "sm-a546b"),
        ("../../etc", "etc"),
        ("a..b", "a.b"),
        ("192.168.1.20:5555", "192.168.1.20-5555"),
        ("\uff30ixel", "ixel"),
        ("", "android"),
        ("x" * 200, "x" * 63),
    ],
)
def test_safe_device_name(raw, name):
    assert safe_device_name(raw, fallback="android") == name
    DeviceInfo(name=name, kind="android", os="Android", cpu="arm64-v8a")


# -- the default runner ---------------------------------------------------------------------------
def test_missing_adb_binary_is_a_clear_error(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    profile = AdbProfile(adb=str(tmp_path / "no-such-adb"))
    with pytest.raises(AdbError, match="adb executable .*no-such-adb.* not found"):
        profile.run("onnx", model, 10, 1)
    with pytest.raises(AdbError, match="not found"):
        profile.device_info()


def _fake_adb_script(tmp_path: Path, body: str) -> str:
    script = tmp_path / "adb"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.skipif(os.name != "posix", reason="uses a /bin/sh stand-in for adb")
def test_default_runner_reports_a_failing_adb_command(tmp_path):
    adb = _fake_adb_script(tmp_path, 'echo "error: device offline" >&2; exit 1')
    with pytest.raises(AdbError, match=r"devices exited with 1: error: device offline"):
        AdbProfile(adb=adb).ensure_device()


@pytest.mark.skipif(os.name != "posix", reason="uses a /bin/sh stand-in for adb")
def test_default_runner_returns_stdout(tmp_path):
    adb = _fake_adb_script(tmp_path, 'printf "List of devices attached\\nHT4CJ\\tdevice\\n\\n"')
    assert AdbProfile(adb=adb, serial="HT4CJ").ensure_device() == "HT4CJ"

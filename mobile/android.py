"""The Android device profile: a phone over adb running the native benchmark runners.

No Python runs on the phone. Each format is measured by its runtime's own command-line
benchmark, pushed once to `AdbProfile.runner_paths` (default `<remote_dir>/bin/<tool>`, shared
libraries in `<remote_dir>/lib`, which every command puts on LD_LIBRARY_PATH):

* ExecuTorch `executor_runner` (pytorch/executorch examples/portable/executor_runner), built
  with XNNPACK for arm64 with the NDK from an ExecuTorch v1.3+ checkout (older runners log no
  per-iteration times), e.g.::

      cmake . -DCMAKE_TOOLCHAIN_FILE=$ANDROID_NDK/build/cmake/android.toolchain.cmake \\
        --preset android-arm64-v8a -DANDROID_PLATFORM=android-28 -DCMAKE_BUILD_TYPE=Release \\
        -DEXECUTORCH_PAL_DEFAULT=posix -DEXECUTORCH_BUILD_XNNPACK=ON \\
        -DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON -Bcmake-out-android
      cmake --build cmake-out-android -j --target executor_runner

  `EXECUTORCH_PAL_DEFAULT=posix` matters: the android preset's PAL sends ET_LOG to logcat
  only, and the timings this module parses are ET_LOG lines (the posix PAL writes them to
  stderr; the command redirects stderr to stdout).
* TFLite/LiteRT `benchmark_model`: `bazel build -c opt --config=android_arm64
  //tflite/tools/benchmark:benchmark_model` in google-ai-edge/LiteRT (or
  `//tensorflow/lite/tools/benchmark:benchmark_model` in tensorflow/tensorflow), or the
  prebuilt nightly `android_aarch64_benchmark_model`.
* `onnxruntime_perf_test` from an Android build of onnxruntime: `./build.sh --android
  --android_sdk_path $ANDROID_HOME --android_ndk_path $ANDROID_NDK --android_abi arm64-v8a
  --android_api 29 --build_shared_lib --config Release --skip_tests`; push
  `onnxruntime_perf_test` to bin/, and `libonnxruntime.so` plus the NDK's `libc++_shared.so`
  (the build uses ANDROID_STL=c++_shared) to lib/.

Warm-up: executor_runner has no warm-up flag but logs every iteration, so it is asked for
warmup + iterations runs and the first `warmup` are dropped; benchmark_model takes
`--warmup_runs`; onnxruntime_perf_test always does exactly one warm-up run, which its
ParsedRun reports. No runner prints its runtime version (`runtime_version` stays None).
Throughput is onnxruntime_perf_test's own figure (requests over wall-clock run time); the
other two print none, so it is derived as dfp-harness defines it: timed iterations over the
sum of their latencies.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from mobile.records import DeviceInfo, LatencyStats, safe_device_name

Runner = Callable[[list[str]], str]

FORMATS: tuple[str, ...] = ("executorch", "tflite", "onnx")
TOOLS = {
    "executorch": "executor_runner",
    "tflite": "benchmark_model",
    "onnx": "onnxruntime_perf_test",
}
MODEL_SUFFIX = {"executorch": ".pte", "tflite": ".tflite", "onnx": ".onnx"}
REMOTE_MODEL_STEM = "dfp_model"
PROPS = {
    "model": "ro.product.model",
    "os_release": "ro.build.version.release",
    "abi": "ro.product.cpu.abi",
}

_REMOTE_PATH = re.compile(r"(/[A-Za-z0-9_.+-]+)+")
_REMOTE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_SERIAL = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"
_OUTPUT_HEAD_LINES = 8


class AdbError(RuntimeError):
    """adb is missing, the device is not ready, or an adb command failed."""


class RunnerOutputError(ValueError):
    """A native runner's output lacks what its parser needs."""


class ParsedRun(BaseModel):
    """What one native benchmark run measured, in the record's units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str
    load_ms: float | None
    latency: LatencyStats
    iterations: int = Field(ge=1)
    warmup_iterations: int = Field(ge=0)
    throughput_per_s: float | None = None
    peak_rss_bytes: int | None = None
    runtime_version: str | None = None


def _check_remote_path(path: str) -> str:
    parts = path.split("/")[1:]
    if not _REMOTE_PATH.fullmatch(path) or any(p in (".", "..") for p in parts):
        raise ValueError(
            f"unsafe remote path {path!r}: use an absolute path of [A-Za-z0-9_.+-] parts, "
            "without '.' or '..' parts"
        )
    return path


def _check_remote_name(name: str) -> str:
    if not _REMOTE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"unsafe remote file name {name!r}: use [A-Za-z0-9_.+-], no '..'")
    return name


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _printable_prop(value: str) -> str | None:
    text = "".join(c for c in value.strip() if c.isprintable())[:128]
    return text or None


def subprocess_runner(timeout_s: float = 900.0) -> Runner:
    """A Runner that executes argv locally (check=True, captured output, a timeout)."""

    def run(argv: list[str]) -> str:
        try:
            done = subprocess.run(
                argv,
                check=True,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout_s,
            )
        except FileNotFoundError as exc:
            raise AdbError(
                f"adb executable {argv[0]!r} not found: install Android SDK platform-tools "
                "or point AdbProfile.adb at it"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise AdbError(f"{shlex.join(argv)} timed out after {timeout_s:g} s") from exc
        except subprocess.CalledProcessError as exc:
            tail = ((exc.stdout or "") + (exc.stderr or "")).strip()[-2000:]
            raise AdbError(f"{shlex.join(argv)} exited with {exc.returncode}: {tail}") from exc
        return done.stdout

    return run


class AdbProfile(BaseModel):
    """One phone over adb: builds the adb argv lists, runs them and parses the runners."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    serial: str | None = None
    adb: str = Field(default="adb", min_length=1)
    remote_dir: str = "/data/local/tmp/dfp"
    runner_paths: dict[str, str] = Field(default_factory=dict, validate_default=True)
    num_threads: int = Field(default=1, ge=1, le=64)
    timeout_s: float = Field(default=900.0, gt=0)

    @field_validator("serial")
    @classmethod
    def _safe_serial(cls, value: str | None) -> str | None:
        if value is not None and not _SERIAL.fullmatch(value):
            raise ValueError(f"unsafe adb serial {value!r}: use [A-Za-z0-9._:-]")
        return value

    @field_validator("remote_dir")
    @classmethod
    def _safe_remote_dir(cls, value: str) -> str:
        return _check_remote_path(value.rstrip("/") if value != "/" else value)

    @field_validator("runner_paths")
    @classmethod
    def _runner_defaults(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        unknown = sorted(set(value) - set(FORMATS))
        if unknown:
            raise ValueError(f"runner_paths has unknown formats {unknown}: use {list(FORMATS)}")
        remote_dir = info.data.get("remote_dir", "/data/local/tmp/dfp")
        paths = {fmt: f"{remote_dir}/bin/{tool}" for fmt, tool in TOOLS.items()}
        paths.update(value)
        for path in paths.values():
            _check_remote_path(path)
        return paths

    # -- argv builders ----------------------------------------------------------------------
    def adb_base(self) -> list[str]:
        return [self.adb, "-s", self.serial] if self.serial else [self.adb]

    def list_devices_command(self) -> list[str]:
        return [self.adb, "devices"]

    def shell_command(self, tokens: list[str]) -> list[str]:
        """`adb shell` with one command string, every token shell-quoted."""
        return [*self.adb_base(), "shell", shlex.join(tokens)]

    def remote_path(self, remote_name_or_path: str) -> str:
        if remote_name_or_path.startswith("/"):
            return _check_remote_path(remote_name_or_path)
        return f"{self.remote_dir}/{_check_remote_name(remote_name_or_path)}"

    def mkdir_command(self) -> list[str]:
        return self.shell_command(["mkdir", "-p", self.remote_dir])

    def push_command(self, local: Path, remote_name: str) -> list[str]:
        # An absolute local path never starts with '-', so adb cannot take it for an option.
        return [
            *self.adb_base(),
            "push",
            str(Path(local).absolute()),
            self.remote_path(remote_name),
        ]

    def benchmark_command(
        self, fmt: str, remote_model: str, iterations: int, warmup: int
    ) -> list[str]:
        """The `adb shell` argv running `fmt`'s native runner on a pushed model file."""
        if fmt not in TOOLS:
            raise ValueError(f"no native Android runner for format {fmt!r}: use {list(FORMATS)}")
        _check_count("iterations", iterations, 1)
        _check_count("warmup", warmup, 0)
        model = self.remote_path(remote_model)
        runner = self.runner_paths[fmt]
        threads = str(self.num_threads)
        if fmt == "executorch":
            args = [
                f"--model_path={model}",
                f"--num_executions={warmup + iterations}",
                f"--cpu_threads={threads}",
                "--print_output=none",
            ]
        elif fmt == "tflite":
            # min_secs=0 so exactly num_runs (and warmup_runs) runs happen, not "at least 1 s".
            args = [
                f"--graph={model}",
                f"--num_runs={iterations}",
                "--min_secs=0",
                f"--warmup_runs={warmup}",
                "--warmup_min_secs=0",
                f"--num_threads={threads}",
                "--use_xnnpack=true",
                "--report_peak_memory_footprint=true",
            ]
        else:
            args = ["-e", "cpu", "-m", "times", "-r", str(iterations), "-x", threads, "-I", "-s"]
            args.append(model)
        env = f"LD_LIBRARY_PATH={self.remote_dir}/lib"
        command = shlex.join([env, runner, *args]) + " 2>&1"
        return [*self.adb_base(), "shell", command]

    def device_info_commands(self) -> dict[str, list[str]]:
        return {key: self.shell_command(["getprop", prop]) for key, prop in PROPS.items()}

    # -- running ----------------------------------------------------------------------------
    def _runner(self, runner: Runner | None) -> Runner:
        return runner or subprocess_runner(self.timeout_s)

    def ensure_device(self, runner: Runner | None = None) -> str:
        """The serial of the ready device (`adb devices` state "device"), or AdbError."""
        out = self._runner(runner)(self.list_devices_command())
        listed: dict[str, str] = {}
        for line in out.splitlines():
            line = line.strip()
            if not line or line.startswith(("*", "List of devices")):
                continue
            serial, _, state = line.partition("\t") if "\t" in line else line.partition(" ")
            listed[serial.strip()] = state.strip()
        summary = ", ".join(f"{s} ({st})" for s, st in listed.items()) or "none"
        if self.serial:
            if self.serial not in listed:
                raise AdbError(
                    f"device {self.serial!r} is not listed by `adb devices` (listed: {summary})"
                )
            if listed[self.serial] != "device":
                raise AdbError(
                    f"device {self.serial!r} is {listed[self.serial]!r}, not ready: "
                    "unlock it and accept USB debugging"
                )
            return self.serial
        ready = [s for s, st in listed.items() if st == "device"]
        if len(ready) != 1:
            raise AdbError(
                f"{len(ready)} ready devices listed by `adb devices` (listed: {summary}): "
                + ("connect one" if not ready else "set AdbProfile.serial to choose one")
            )
        return ready[0]

    def device_info(self, runner: Runner | None = None) -> DeviceInfo:
        """The phone as a DeviceInfo (kind "android"), read with getprop."""
        run = self._runner(runner)
        serial = self.ensure_device(run)
        props = {
            key: _printable_prop(run(argv)) for key, argv in self.device_info_commands().items()
        }
        release = props["os_release"]
        return DeviceInfo(
            name=safe_device_name(props["model"] or serial, fallback="android"),
            kind="android",
            os=f"Android {release}" if release else "Android",
            cpu=props["abi"] or "unknown",
            model=props["model"],
        )

    def run(
        self,
        fmt: str,
        model_path: Path,
        iterations: int,
        warmup: int,
        runner: Runner | None = None,
    ) -> ParsedRun:
        """Push the model file, run its native benchmark and parse the output."""
        if fmt not in TOOLS:
            raise ValueError(f"no native Android runner for format {fmt!r}: use {list(FORMATS)}")
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(f"model file {model_path} does not exist")
        run = self._runner(runner)
        self.ensure_device(run)
        remote_name = REMOTE_MODEL_STEM + MODEL_SUFFIX[fmt]
        run(self.mkdir_command())
        run(self.push_command(model_path, remote_name))
        output = run(self.benchmark_command(fmt, remote_name, iterations, warmup))
        return parse_output(fmt, output, warmup=warmup)


# -- parsing the runners' output ------------------------------------------------------------
def _head(text: str) -> str:
    lines = [line[:160] for line in text.splitlines() if line.strip()][:_OUTPUT_HEAD_LINES]
    return "\n".join(f"  | {line}" for line in lines) or "  | (no output)"


def _fail(tool: str, what: str, text: str) -> RunnerOutputError:
    return RunnerOutputError(f"{tool}: {what}; the output began with:\n{_head(text)}")


def _number(tool: str, label: str, raw: str, text: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _fail(tool, f"{label} {raw!r} is not a number", text) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _fail(tool, f"{label} is {raw}, not a finite number", text)
    return value


def _scaled(value: float, factor: float) -> float:
    """A unit conversion without binary noise (the tools print at most 9 digits)."""
    return float(f"{value * factor:.12g}")


def _search(tool: str, pattern: str, text: str, what: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise _fail(tool, f"no {what} line", text)
    return match


def _latency(
    tool: str,
    text: str,
    *,
    min_us: float,
    max_us: float,
    mean_us: float,
    p50_us: float | None = None,
    p90_us: float | None = None,
    p99_us: float | None = None,
) -> LatencyStats:
    # The tools print 6 significant digits, so a mean of near-identical samples can round a
    # hair outside [min, max]; pull it back only within that rounding.
    slack = 1e-5 * max_us + 1e-3
    if min_us - slack <= mean_us < min_us:
        mean_us = min_us
    if max_us < mean_us <= max_us + slack:
        mean_us = max_us
    try:
        return LatencyStats(
            min_us=min_us,
            max_us=max_us,
            mean_us=mean_us,
            p50_us=p50_us,
            p90_us=p90_us,
            p99_us=p99_us,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise _fail(tool, f"inconsistent latency stats ({where}: {message})", text) from None


def _parse_executor_runner(text: str, warmup: int) -> ParsedRun:
    tool = TOOLS["executorch"]
    done = _search(
        tool,
        rf"Model executed successfully (\d+) time\(s\) in ({_NUMBER}) ms\.",
        text,
        "'Model executed successfully N time(s) in T ms.'",
    )
    executed, total_ms = int(done.group(1)), _number(tool, "total time", done.group(2), text)
    iterations = re.findall(rf"Iteration (\d+) of (\d+): ({_NUMBER}) ms", text)
    if not iterations:
        raise _fail(
            tool,
            "no per-iteration 'Iteration i of N: T ms' lines (an executor_runner older than "
            "ExecuTorch v1.3 prints only the total, which gives no min/max)",
            text,
        )
    indices = [(int(i), int(n)) for i, n, _ in iterations]
    if indices != [(i, executed) for i in range(1, executed + 1)]:
        raise _fail(
            tool,
            f"iteration lines are not 1..{executed} of {executed} (found {len(indices)} lines)",
            text,
        )
    times_ms = [_number(tool, f"iteration {i}", t, text) for i, _, t in iterations]
    if abs(sum(times_ms) - total_ms) > 1e-6 * (executed + 1):
        raise _fail(
            tool,
            f"iteration times sum to {sum(times_ms):.6f} ms but the total is {total_ms:.6f} ms",
            text,
        )
    if executed <= warmup:
        raise _fail(tool, f"ran {executed} iterations, not more than the {warmup} warm-up", text)
    load = re.search(rf"Model loaded in ({_NUMBER}) ms\.", text)
    try:
        latency = LatencyStats.from_samples([_scaled(t, 1000.0) for t in times_ms[warmup:]])
    except ValueError as exc:
        raise _fail(tool, f"iteration times out of range ({exc})", text) from None
    timed_s = sum(times_ms[warmup:]) / 1000.0
    return ParsedRun(
        tool=tool,
        load_ms=_number(tool, "load time", load.group(1), text) if load else None,
        latency=latency,
        iterations=executed - warmup,
        warmup_iterations=warmup,
        throughput_per_s=(executed - warmup) / timed_s if timed_s > 0 else None,
    )


_STAT_LINE = re.compile(r"^(?:INFO: )?count=(\d+)(.*)$", re.MULTILINE)


def _stat_fields(tool: str, line: str, text: str) -> dict[str, float]:
    fields: dict[str, float] = {}
    for key, raw in re.findall(rf"(\w+)=({_NUMBER})", line):
        fields[key] = _number(tool, key, raw, text)
    if "(all same)" in line or ("min" not in fields and "curr" in fields):
        fields.setdefault("min", fields["curr"])
        fields.setdefault("max", fields["curr"])
        fields.setdefault("avg", fields["curr"])
    return fields


def _parse_benchmark_model(text: str) -> ParsedRun:
    tool = TOOLS["tflite"]
    stats = _STAT_LINE.findall(text)
    if len(stats) != 2:
        raise _fail(
            tool,
            f"expected 2 'count=...' stat lines (warm-up, then timed runs), found {len(stats)}",
            text,
        )
    (warm_count, _), (count, timed_line) = stats
    timings = _search(
        tool,
        r"Inference timings in us: Init: (\d+), First inference: \S+, Warmup \(avg\): \S+, "
        rf"Inference \(avg\): ({_NUMBER})",
        text,
        "'Inference timings in us: Init: ..., Inference (avg): ...'",
    )
    if int(count) == 0:
        raise _fail(tool, "the timed runs' stat line says count=0", text)
    fields = _stat_fields(tool, timed_line, text)
    for key in ("min", "max", "avg"):
        if key not in fields:
            raise _fail(tool, f"the timed runs' stat line has no {key}=", text)
    peak = re.search(
        rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUMBER})", text
    )
    # benchmark_model's "MB" is MiB (bytes / 1024 / 1024), from getrusage's peak RSS.
    peak_mib = _number(tool, "peak memory", peak.group(1), text) if peak else None
    return ParsedRun(
        tool=tool,
        load_ms=int(timings.group(1)) / 1000.0,
        latency=_latency(
            tool,
            text,
            min_us=fields["min"],
            max_us=fields["max"],
            mean_us=fields["avg"],
            p50_us=fields.get("median"),
        ),
        iterations=int(count),
        warmup_iterations=int(warm_count),
        throughput_per_s=1e6 / fields["avg"] if fields["avg"] > 0 else None,
        peak_rss_bytes=round(peak_mib * 1024 * 1024) if peak_mib is not None else None,
    )


def _parse_onnxruntime_perf_test(text: str) -> ParsedRun:
    tool = TOOLS["onnx"]

    def value(pattern: str, what: str) -> float:
        match = _search(tool, pattern, text, what)
        return _number(tool, what, match.group(1), text)

    def seconds_line(label: str) -> float | None:
        match = re.search(rf"^{label} Latency: ({_NUMBER}) s$", text, re.MULTILINE)
        if match is None:
            return None
        return _scaled(_number(tool, f"{label} Latency", match.group(1), text), 1e6)

    session_s = value(rf"Session creation time cost: ({_NUMBER}) s", "'Session creation time cost'")
    requests = int(value(r"Total inference requests: (\d+)", "'Total inference requests'"))
    # "Average inference time cost total:" since onnxruntime PR #25895; "...cost:" before.
    mean_ms = value(
        rf"Average inference time cost(?: total)?: ({_NUMBER}) ms", "'Average inference time cost'"
    )
    low, high = seconds_line("Min"), seconds_line("Max")
    if low is None or high is None:
        raise _fail(
            tool,
            "no 'Min Latency' / 'Max Latency' lines (run it with -s, or without a result file)",
            text,
        )
    if requests < 1:
        raise _fail(tool, "Total inference requests is 0", text)
    rate = re.search(rf"Number of inferences per second: ({_NUMBER})", text)
    peak = re.search(r"Peak working set size: (\d+) bytes", text)
    return ParsedRun(
        tool=tool,
        load_ms=_scaled(session_s, 1000.0),
        latency=_latency(
            tool,
            text,
            min_us=low,
            max_us=high,
            mean_us=_scaled(mean_ms, 1000.0),
            p50_us=seconds_line("P50"),
            p90_us=seconds_line("P90"),
            p99_us=seconds_line("P99"),
        ),
        iterations=requests,
        warmup_iterations=1,
        throughput_per_s=_number(tool, "inferences per second", rate.group(1), text)
        if rate
        else None,
        peak_rss_bytes=int(peak.group(1)) if peak else None,
    )


def parse_output(fmt: str, text: str, warmup: int = 0) -> ParsedRun:
    """Parse a native runner's output (stdout and stderr merged) into a ParsedRun.

    `warmup` only matters for executor_runner: its first `warmup` logged iterations are the
    warm-up (it has no warm-up flag). The other tools report their warm-up count themselves.
    """
    # adb without the shell protocol (old devices) turns "\n" into "\r\n".
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if fmt == "executorch":
        return _parse_executor_runner(text, _check_count("warmup", warmup, 0))
    if fmt == "tflite":
        return _parse_benchmark_model(text)
    if fmt == "onnx":
        return _parse_onnxruntime_perf_test(text)
    raise ValueError(f"no native Android runner for format {fmt!r}: use {list(FORMATS)}")

"""The device farm: benchmark a branch's exports on a device profile and upload the records.

Two models have exports: Kronodroid's `malware_model` (the default) and the toxic-comment
`toxicity_model` (`MODELS`); each record names its model.

Profiles: `host` (this machine, the Python harness in a fresh process per model file) and
`android` (a phone over adb running the native runners, `mobile.android`). Uploads are
`dfp.device_benchmark/v1` records (`mobile.records`), sent either to the gateway in front of
Dagster's REST API (`dfp.devicefarm.gateway`) or committed as JSON under `benchmarks/<device>/`
on the lakeFS branch, which `device_benchmark_sensor` records. No Dagster imports here.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import socket
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dfp.kronodroid.training import MODEL_OBJECT
from dfp.lake.lakefs_client import LakeFSClient
from dfp.toxic.model import MODEL_OBJECT as TOXICITY_MODEL_OBJECT
from mobile.exporters import FILE_NAMES, FORMATS, ExportInfo
from mobile.records import (
    SCHEMA_VERSION,
    BenchmarkRecord,
    BenchmarkUpload,
    DeviceInfo,
    LatencyStats,
    UploadRejected,
    parse_upload,
    safe_device_name,
)
from mobile.runtimes import RUNTIME_OF

if TYPE_CHECKING:
    pass


BENCHMARK_ASSET = "device_benchmarks"
BENCHMARKS_PREFIX = "benchmarks/"


@dataclass(frozen=True)
class MobileModel:
    """A model whose exports a branch holds: its name in records, where its export files are,
    and its eager PyTorch file (benchmarked on the host next to them)."""

    name: str
    exports_prefix: str
    eager_object: str


MALWARE_MODEL = MobileModel("malware_model", "models/malware_model/mobile", MODEL_OBJECT)
TOXICITY_MODEL = MobileModel(
    "toxicity_model", "models/toxicity_model/mobile", TOXICITY_MODEL_OBJECT
)
MODELS = {m.name: m for m in (MALWARE_MODEL, TOXICITY_MODEL)}
EXPORTS_PREFIX = MALWARE_MODEL.exports_prefix
MODEL_NAME = MALWARE_MODEL.name
#: The shared secret between `dfp devicefarm run` and the gateway (environment only).
TOKEN_ENV = "DFP_DEVICEFARM_TOKEN"
#: lakeFS commit metadata key marking a device-farm upload commit.
UPLOAD_COMMIT_KEY = "dfp.devicefarm.upload"


class DeviceFarmError(RuntimeError):
    """A device-farm run or upload failed; the message says which file, device or call."""


def export_object(fmt: str, model: MobileModel = MALWARE_MODEL) -> str:
    return f"{model.exports_prefix}/{FILE_NAMES[fmt]}"


def export_info_object(fmt: str, model: MobileModel = MALWARE_MODEL) -> str:
    return f"{export_object(fmt, model)}.json"


# -- what a run benchmarks -----------------------------------------------------------------
@dataclass(frozen=True)
class ModelFile:
    format: str
    path: Path
    sha256: str
    size_bytes: int


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1024:.1f} KB" if n_bytes < 2**20 else f"{n_bytes / 2**20:.1f} MB"


def fetch_exports(
    client: LakeFSClient,
    ref: str,
    dest: Path,
    formats: Sequence[str] = FORMATS,
    log: Callable[[str], None] = print,
    model: MobileModel = MALWARE_MODEL,
) -> list[ModelFile]:
    """Download the exports of `model` on `ref` (and check each against its export info's
    sha256); one line per file downloaded and verified."""
    files = []
    asset = "model" if model is MALWARE_MODEL else model.name
    for fmt in formats:
        where = export_object(fmt, model)
        try:
            info = ExportInfo.model_validate_json(client.read(ref, export_info_object(fmt, model)))
            data = client.read(ref, where)
        except Exception as exc:
            raise DeviceFarmError(
                f"branch {ref!r} has no {fmt} export at {where}: materialize "
                f"{asset}_{fmt} for this partition first ({exc})"
            ) from exc
        digest = _sha256(data)
        if digest != info.sha256:
            raise DeviceFarmError(
                f"{where} on {ref!r} has sha256 {digest}, its export info says "
                f"{info.sha256}: refusing to benchmark a file that is not the exported model"
            )
        path = dest / FILE_NAMES[fmt]
        path.write_bytes(data)
        files.append(ModelFile(fmt, path, digest, len(data)))
        log(f"downloaded {where} ({fmt}, {_size(len(data))}), sha256 {digest[:12]} verified")
    return files


def fetch_eager_model(
    client: LakeFSClient,
    ref: str,
    dest: Path,
    log: Callable[[str], None] = print,
    model: MobileModel = MALWARE_MODEL,
) -> ModelFile:
    """The branch's eager PyTorch model, benchmarked on the host next to its exports."""
    data = client.read(ref, model.eager_object)
    path = dest / "model.pt"
    path.write_bytes(data)
    digest = _sha256(data)
    # No export info to check against: the model is the branch's own object.
    log(f"downloaded {model.eager_object} (pytorch, {_size(len(data))}), sha256 {digest[:12]}")
    return ModelFile("pytorch", path, digest, len(data))


# -- device profiles ---------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """One benchmark of one model file on a device, before it becomes a record."""

    runtime_version: str
    tool: str
    load_ms: float | None
    latency: LatencyStats
    iterations: int
    warmup_iterations: int
    throughput_per_s: float | None
    peak_rss_bytes: int | None


class DeviceProfile(Protocol):
    def device_info(self) -> DeviceInfo: ...

    def formats(self) -> tuple[str, ...]: ...

    def benchmark(self, model: ModelFile, iterations: int, warmup: int) -> Measured: ...


class HostProfile:
    """This machine: the Python harness in a fresh process per model file, so load time and
    peak RSS belong to one runtime."""

    def __init__(self, name: str | None = None, num_threads: int = 1, timeout: float = 600.0):
        self.name = name or safe_device_name(f"host-{socket.gethostname()}")
        self.num_threads = num_threads
        self.timeout = timeout

    def device_info(self) -> DeviceInfo:
        cpu = platform.processor() or platform.machine()
        return DeviceInfo(
            name=self.name,
            kind="host",
            os=f"{platform.system()} {platform.release()}"[:128],
            cpu=cpu[:128],
            model=None,
        )

    def formats(self) -> tuple[str, ...]:
        return (*FORMATS, "pytorch")

    def benchmark(self, model: ModelFile, iterations: int, warmup: int) -> Measured:
        from mobile.harness import measure_in_subprocess

        result = measure_in_subprocess(
            model.format,
            model.path,
            iterations=iterations,
            warmup=warmup,
            num_threads=self.num_threads,
            timeout=self.timeout,
        )
        return Measured(
            runtime_version=result["runtime_version"],
            tool="dfp-harness",
            load_ms=result["load_ms"],
            latency=LatencyStats.from_samples(result["latencies_us"]),
            iterations=result["iterations"],
            warmup_iterations=result["warmup"],
            throughput_per_s=result["throughput_per_s"],
            peak_rss_bytes=result["peak_rss_bytes"],
        )


class AndroidProfile:
    """A phone over adb, running the native benchmark runners (`mobile.android.AdbProfile`)."""

    def __init__(self, adb: Any):
        self.adb = adb

    def device_info(self) -> DeviceInfo:
        return self.adb.device_info()

    def formats(self) -> tuple[str, ...]:
        return FORMATS

    def benchmark(self, model: ModelFile, iterations: int, warmup: int) -> Measured:
        parsed = self.adb.run(model.format, model.path, iterations, warmup)
        return Measured(
            runtime_version=parsed.runtime_version or "unknown",
            tool=parsed.tool,
            load_ms=parsed.load_ms,
            latency=parsed.latency,
            iterations=parsed.iterations,
            warmup_iterations=parsed.warmup_iterations,
            throughput_per_s=parsed.throughput_per_s,
            peak_rss_bytes=parsed.peak_rss_bytes,
        )


def run(
    client: LakeFSClient,
    branch: str,
    profile: DeviceProfile,
    *,
    iterations: int = 1000,
    warmup: int = 50,
    log: Callable[[str], None] = print,
    model: MobileModel = MALWARE_MODEL,
) -> BenchmarkUpload:
    """Benchmark every export of `model` on `branch` (and, where the profile runs Python, the
    eager model) on the profile's device; returns the validated upload. `log` gets one line
    per stage: each download (size, sha256 verified), each benchmark with its p50."""
    if not client.branch_exists(branch):
        raise DeviceFarmError(f"lakeFS branch {branch!r} does not exist in {client.repository!r}")
    device = profile.device_info()
    log(
        f"device {device.name} ({device.kind}): benchmarking the {model.name} exports of {branch!r}"
    )
    records = []
    with tempfile.TemporaryDirectory(prefix="dfp-devicefarm-") as tmp:
        wanted = profile.formats()
        formats = [f for f in FORMATS if f in wanted]
        files = fetch_exports(client, branch, Path(tmp), formats, log=log, model=model)
        if "pytorch" in wanted:
            files.append(fetch_eager_model(client, branch, Path(tmp), log=log, model=model))
        for file in files:
            measured = profile.benchmark(file, iterations, warmup)
            log(_benchmarked(file, measured))
            records.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "model": {
                        "name": model.name,
                        "branch": branch,
                        "format": file.format,
                        "file_sha256": file.sha256,
                        "file_size_bytes": file.size_bytes,
                    },
                    "runtime": {
                        "name": RUNTIME_OF[file.format],
                        "version": measured.runtime_version,
                    },
                    "device": device.model_dump(mode="json"),
                    "tool": measured.tool,
                    "load_ms": measured.load_ms,
                    "latency": measured.latency.model_dump(mode="json"),
                    "iterations": measured.iterations,
                    "warmup_iterations": measured.warmup_iterations,
                    "throughput_per_s": measured.throughput_per_s,
                    "peak_rss_bytes": measured.peak_rss_bytes,
                    "measured_at": datetime.now(UTC).isoformat(),
                }
            )
    payload = {
        "schema_version": SCHEMA_VERSION,
        "branch": branch,
        "device": device.model_dump(mode="json"),
        "records": records,
    }
    # Validate what we send exactly as the receivers will.
    return parse_upload(json.dumps(payload), source=f"device-farm run on {device.name}")


def _benchmarked(model: ModelFile, measured: Measured) -> str:
    lat = measured.latency
    # Some native tools report a mean only (no percentiles).
    center = f"p50 {lat.p50_us:.1f} µs" if lat.p50_us is not None else f"mean {lat.mean_us:.1f} µs"
    load = "" if measured.load_ms is None else f", load {measured.load_ms:.1f} ms"
    return (
        f"benchmarked {RUNTIME_OF[model.format]} {measured.runtime_version} ({model.format}): "
        f"{center}{load}, {measured.iterations} iterations"
    )


# -- uploads ------------------------------------------------------------------------------
def upload_json(upload: BenchmarkUpload) -> bytes:
    return upload.model_dump_json(indent=2).encode()


def benchmark_object(upload: BenchmarkUpload, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    digest = _sha256(upload_json(upload))[:12]
    return f"{BENCHMARKS_PREFIX}{upload.device.name}/{stamp}-{digest}.json"


def upload_lakefs(client: LakeFSClient, upload: BenchmarkUpload) -> tuple[str, str]:
    """Commit the upload as one JSON object on its branch (authenticated by the lakeFS keys);
    returns (path, commit id). The sensor turns it into a materialization."""
    path = benchmark_object(upload)
    client.upload(upload.branch, path, upload_json(upload))
    commit = client.commit(
        upload.branch,
        f"device benchmarks from {upload.device.name} ({len(upload.records)} records)",
        {UPLOAD_COMMIT_KEY: path},
    )
    return path, commit


def upload_rest(gateway_url: str, token: str, upload: BenchmarkUpload, timeout: float = 30.0):
    """POST the upload to the gateway in front of Dagster's REST API; returns its JSON reply."""
    import requests

    if not token:
        raise DeviceFarmError(f"no upload token: set {TOKEN_ENV}")
    url = gateway_url.rstrip("/") + "/v1/device-benchmarks"
    try:
        response = requests.post(
            url,
            data=upload_json(upload),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise DeviceFarmError(f"gateway {url} unreachable: {exc}") from exc
    if response.status_code != 200:
        raise DeviceFarmError(
            f"gateway {url} refused the upload ({response.status_code}): {response.text[:500]}"
        )
    return response.json()


def materialization_metadata(upload: BenchmarkUpload, source: str) -> dict[str, Any]:
    """Plain-JSON metadata of one upload's `device_benchmarks` materialization (the same for
    both upload paths: Dagster's REST API takes raw values only)."""
    metadata: dict[str, Any] = {
        "schema_version": upload.schema_version,
        "device": upload.device.name,
        "device_kind": upload.device.kind,
        "source": source,
        "records": [r.model_dump(mode="json") for r in upload.records],
    }
    for record in upload.records:
        key = f"{record.runtime.name}.{record.model.format}"
        if record.model.name != MODEL_NAME:
            key = f"{record.model.name}.{key}"
        for stat in ("p50_us", "p99_us"):
            value = getattr(record.latency, stat)
            if value is not None:
                metadata[f"{key}.{stat}"] = float(value)
    return metadata


# -- what the sensor reads --------------------------------------------------------------
def read_upload(client: LakeFSClient, ref: str, path: str) -> BenchmarkUpload:
    """An uploaded JSON file, validated; its directory must be its device's, and its branch
    the branch it was committed to."""
    source = f"lakefs://{client.repository}/{ref}/{path}"
    upload = parse_upload(client.read(ref, path), source=source)
    parts = path[len(BENCHMARKS_PREFIX) :].split("/")
    if len(parts) != 2 or parts[0] != upload.device.name:
        raise UploadRejected(
            f"{source}: file is not under {BENCHMARKS_PREFIX}{upload.device.name}/ "
            f"(the directory of its device {upload.device.name!r})"
        )
    return upload


def new_benchmark_files(
    client: LakeFSClient, branch: str, head: str, seen_commit: str | None, default_branch: str
) -> list[str]:
    """JSON files under benchmarks/ added or changed on `branch` since `seen_commit`. A branch
    seen for the first time counts what it has that `default_branch` lacks (all of it, for
    the default branch itself)."""
    if seen_commit is not None:
        entries = client.diff(seen_commit, head, prefix=BENCHMARKS_PREFIX)
        paths = [e.path for e in entries if e.type in ("added", "changed")]
    elif branch == default_branch:
        paths = [o.path for o in client.list_objects(head, BENCHMARKS_PREFIX)]
    else:
        entries = client.diff(default_branch, head, prefix=BENCHMARKS_PREFIX)
        paths = [e.path for e in entries if e.type in ("added", "changed")]
    return sorted(p for p in paths if p.endswith(".json"))


# -- the report's table and plot ------------------------------------------------------------
def latest_records(records: Iterable[BenchmarkRecord]) -> list[BenchmarkRecord]:
    """The newest record per (device, model, format, runtime), in a stable order."""
    latest: dict[tuple[str, str, str, str], BenchmarkRecord] = {}
    for record in records:
        key = (record.device.name, record.model.name, record.model.format, record.runtime.name)
        if key not in latest or record.measured_at >= latest[key].measured_at:
            latest[key] = record
    return [latest[k] for k in sorted(latest)]


def latency_table_rows(records: Sequence[BenchmarkRecord]) -> list[dict[str, Any]]:
    def us(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return [
        {
            "device": r.device.name,
            "model": r.model.name,
            "runtime": f"{r.runtime.name} {r.runtime.version}",
            "format": r.model.format,
            "p50_us": us(r.latency.p50_us),
            "p90_us": us(r.latency.p90_us),
            "p99_us": us(r.latency.p99_us),
            "mean_us": us(r.latency.mean_us),
            "load_ms": None if r.load_ms is None else round(r.load_ms, 2),
            "throughput_per_s": None
            if r.throughput_per_s is None
            else round(r.throughput_per_s, 1),
            "peak_rss_mb": None if r.peak_rss_bytes is None else round(r.peak_rss_bytes / 2**20, 1),
            "file_kb": round(r.model.file_size_bytes / 1024, 1),
            "measured_at": r.measured_at.isoformat(),
        }
        for r in records
    ]


def _series(record: BenchmarkRecord) -> str:
    return f"{record.model.name}: {record.runtime.name} ({record.model.format})"


def latency_plot_png(records: Sequence[BenchmarkRecord]) -> bytes:
    """Grouped bars: p50 latency (mean where a tool reports no percentiles) per runtime, one
    group per device; whiskers up to p99 where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = sorted({r.device.name for r in records})
    runtimes = sorted({_series(r) for r in records})
    width = 0.8 / max(len(runtimes), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(devices) * len(runtimes) / 2), 3.4))
    for i, runtime in enumerate(runtimes):
        xs, heights, errors = [], [], []
        for j, device in enumerate(devices):
            match = [r for r in records if r.device.name == device and _series(r) == runtime]
            if not match:
                continue
            latency = match[0].latency
            center = latency.p50_us if latency.p50_us is not None else latency.mean_us
            xs.append(j + (i - (len(runtimes) - 1) / 2) * width)
            heights.append(center)
            errors.append(max((latency.p99_us or center) - center, 0.0))
        ax.bar(xs, heights, width, yerr=[[0] * len(errors), errors], capsize=3, label=runtime)
    ax.set_xticks(range(len(devices)), devices)
    ax.set_ylabel("single-sample latency (µs)\np50 bar, p99 whisker")
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
    return out.getvalue()

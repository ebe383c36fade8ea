"""What `dfp diff A B` and `branch_comparison` compare for Kronodroid (pure logic, no Dagster).

The platform's `dfp.lake.diff` does the comparing; this module says what:

* objects per area: raw, the Iceberg tables, Feast's offline table, the training set, models,
  device benchmarks;
* rows of each raw release (key `sha256`: raw can repeat an app, see `dfp.lake.diff`) and of
  the mart `marts.mart_app_features` (key `app_capture_id`, read through its Iceberg snapshot
  on each branch);
* the metrics of each branch's published `malware_model` from MLflow, both splits (its run is
  the one the model's memo names, when the memo's checksum is the model object's);
* each export's file size (its export info) and the latest device-benchmark p50 latency per
  device and runtime (benchmark JSON committed under `benchmarks/` on each branch).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

from dfp.devicefarm.farm import BENCHMARKS_PREFIX, export_info_object, latest_records, read_upload
from dfp.kronodroid.load import RAW_OBJECTS_PREFIX, read_releases
from dfp.kronodroid.schema import Release
from dfp.kronodroid.training import MODEL_ASSET, MODEL_OBJECT
from dfp.lake import diff, memo
from dfp.lake.iceberg import BranchTables, pointer_path
from dfp.lake.lakefs_client import LakeFSClient, LakeFSError
from mobile.exporters import FORMATS
from mobile.records import UploadRejected

SPLITS = ("temporal", "random")
MART = ("marts", "mart_app_features")
MART_KEY = ("app_capture_id",)
RAW_KEY = ("sha256",)
OBJECT_PREFIXES = (
    RAW_OBJECTS_PREFIX,
    "iceberg/",
    "feast/",
    "training/",
    "models/",
    BENCHMARKS_PREFIX,
)
#: Metrics shown in the plot (both splits).
PLOT_METRICS = ("f1", "precision", "recall", "roc_auc")


@dataclass(frozen=True)
class SizeLatency:
    what: str  # "<format> file size (bytes)" or "<device> <runtime> <format> p50 (µs)"
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass(frozen=True)
class BranchComparison:
    a: str
    b: str
    objects: list[diff.ObjectCounts]
    rows: list[diff.RowCounts]
    runs: dict[str, str | None]  # branch -> MLflow run id of its published model
    metrics: list[diff.MetricDelta]
    exports: list[SizeLatency]

    def markdown(self) -> str:
        a, b = self.a, self.b
        parts = [
            f"### `{b}` compared with `{a}`",
            "",
            "**Rows** (added/removed/changed from "
            f"`{a}` to `{b}`, by key: raw `{', '.join(RAW_KEY)}`, mart "
            f"`{', '.join(MART_KEY)}`)",
            "",
            diff.rows_markdown(self.rows, a, b),
            "",
            "**Objects** (lakeFS diff)",
            "",
            diff.objects_markdown(self.objects),
            "",
            f"**Model metrics** (MLflow: `{a}` run {self.runs.get(a) or 'none'}, "
            f"`{b}` run {self.runs.get(b) or 'none'})",
            "",
        ]
        if self.metrics:
            parts.append(diff.metrics_markdown(self.metrics, a, b))
        else:
            parts.append("no model metrics: a branch has no published model with an MLflow run")
        parts += ["", "**Exports and device benchmarks**", ""]
        if self.exports:
            parts.append(
                diff.markdown_table(
                    ["export", a, b, "delta"],
                    [
                        [e.what, diff.fmt(e.a), diff.fmt(e.b), diff.fmt(e.delta, signed=True)]
                        for e in self.exports
                    ],
                )
            )
        if not any("p50" in e.what for e in self.exports):
            parts.append("no device benchmarks on either branch")
        return "\n".join(parts)

    def plot_png(self) -> bytes:
        """Row changes per table and the model's metric deltas per split."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
        names = [r.name for r in self.rows]
        x = range(len(names))
        width = 0.27
        for offset, (label, values) in enumerate(
            (
                ("added", [r.added for r in self.rows]),
                ("removed", [r.removed for r in self.rows]),
                ("changed", [r.changed for r in self.rows]),
            )
        ):
            left.bar([i + (offset - 1) * width for i in x], values, width, label=label)
        left.set_xticks(list(x), names, rotation=15, fontsize=8)
        left.set_title(f"rows, {self.a} → {self.b}")
        left.legend(fontsize=8)
        shown = [d for d in self.metrics if d.group.startswith("model ")]
        shown = [d for d in shown if d.metric in PLOT_METRICS]
        labels = [f"{d.group.split()[-1]} {d.metric}" for d in shown]
        deltas = [0.0 if d.delta != d.delta else d.delta for d in shown]
        right.barh(labels, deltas, color=["tab:green" if v >= 0 else "tab:red" for v in deltas])
        right.axvline(0, color="black", linewidth=0.8)
        right.set_title(f"model metric delta ({self.b} − {self.a})")
        right.tick_params(axis="y", labelsize=8)
        if not shown:
            right.text(0.5, 0.5, "no model metrics", ha="center", transform=right.transAxes)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=80)
        plt.close(fig)
        return out.getvalue()


def keyed_tables(client: LakeFSClient, catalog_uri: str) -> list[diff.KeyedTable]:
    """Each raw release and the mart, each read on a ref (None when the ref lacks it)."""
    tables = BranchTables(client, catalog_uri)

    def raw(release: Release) -> Callable[[str], object]:
        return lambda ref: read_releases(client, ref).get(release)

    def mart(ref: str):
        if memo.checksum(client, ref, pointer_path(*MART)) is None:
            return None
        return tables.load(ref, *MART).scan().to_arrow()

    out = [diff.KeyedTable(f"raw {release}", raw(release), RAW_KEY) for release in Release]
    out.append(diff.KeyedTable(".".join(MART), mart, MART_KEY))
    return out


def published_run(client: LakeFSClient, ref: str) -> str | None:
    """The MLflow run of the model published on `ref`, from the model's memo (None when the
    ref has no model, or its memo is not the model's)."""
    recorded = memo.describing(client, ref, MODEL_ASSET, MODEL_OBJECT)
    return recorded.metadata.get("mlflow_run_id") if recorded is not None else None


def export_sizes(client: LakeFSClient, ref: str) -> dict[str, int]:
    out = {}
    for fmt in FORMATS:
        try:
            info = json.loads(client.read(ref, export_info_object(fmt)))
        except LakeFSError:
            continue
        out[f"{fmt} file size (bytes)"] = int(info["size_bytes"])
    return out


def benchmark_latencies(client: LakeFSClient, branch: str) -> dict[str, float]:
    """The latest p50 (else mean) latency per device, runtime and format that `branch`'s own
    uploads recorded (files merged in from other branches are theirs)."""
    records = []
    for obj in client.list_objects(branch, BENCHMARKS_PREFIX):
        if not obj.path.endswith(".json"):
            continue
        try:
            upload = read_upload(client, branch, obj.path)
        except UploadRejected:
            continue  # the sensor rejected it too: never recorded
        if upload.branch == branch:
            records.extend(upload.records)
    return {
        f"{r.device.name} {r.runtime.name} {r.model.format} p50 (µs)": (
            r.latency.p50_us if r.latency.p50_us is not None else r.latency.mean_us
        )
        for r in latest_records(records)
    }


def _side_by_side(a: dict[str, float], b: dict[str, float]) -> list[SizeLatency]:
    return [SizeLatency(k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())]


def compare_branches(
    client: LakeFSClient,
    a: str,
    b: str,
    *,
    catalog_uri: str,
    metrics_of: Callable[[str], dict[str, float]],
) -> BranchComparison:
    """Compare branch (or ref) `b` with `a`. `metrics_of(run_id)` reads an MLflow run's
    metrics."""
    for ref in (a, b):
        try:
            client.get_commit(ref)
        except LakeFSError as exc:
            raise diff.DiffError(
                f"ref {ref!r} is not in lakeFS repository {client.repository!r}: {exc}"
            ) from exc
    found = (diff.table_diff(t, a, b) for t in keyed_tables(client, catalog_uri))
    rows = [r for r in found if r is not None]
    runs = {a: published_run(client, a), b: published_run(client, b)}
    metrics = []
    if runs[a] and runs[b]:
        metrics = diff.metric_deltas(metrics_of(runs[a]), metrics_of(runs[b]), SPLITS)
    exports = _side_by_side(export_sizes(client, a), export_sizes(client, b))
    exports += _side_by_side(benchmark_latencies(client, a), benchmark_latencies(client, b))
    return BranchComparison(
        a=a,
        b=b,
        objects=diff.object_diff(client, a, b, OBJECT_PREFIXES),
        rows=rows,
        runs=runs,
        metrics=metrics,
        exports=exports,
    )

"""Mobile exports of `malware_model` (ExecuTorch, TFLite/LiteRT, ONNX), each gated by a
blocking parity check, and the device benchmarks the device farm uploads. Thin glue over
`mobile` and `dfp.devicefarm.farm`.

An export is written to the run branch; its parity check runs the file with its own runtime
on a fixed batch of real feature rows from the branch's training set. A failing check stops
write-audit-publish, so no file that disagrees with the eager model reaches the branch.
"""

import base64
import json
from pathlib import Path

import dagster as dg

from dfp.devicefarm.farm import (
    BENCHMARK_ASSET,
    MALWARE_MODEL,
    latency_plot_png,
    latency_table_rows,
    latest_records,
    materialization_metadata,
    new_benchmark_files,
    read_upload,
)
from dfp.kronodroid.features import FEATURE_GROUPS
from dfp.kronodroid.model import load_model
from dfp.kronodroid.training import MODEL_OBJECT, TRAINING_SET_OBJECT, parity_rows_from_parquet
from dfp.lake.branches import moved_heads
from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import DEFAULT_BRANCH
from dfp_assets.kronodroid.model import malware_model
from dfp_assets.platform.mobile import PARITY_CHECK, Prepared, export_assets
from dfp_assets.platform.partitions import branch_asset, lakefs_branch_partitions
from dfp_resources.lakefs import LakeFSResource
from mobile.records import BenchmarkRecord, UploadRejected

__all__ = ["PARITY_CHECK", "EXPORT_ASSETS"]

#: Bump when the export logic changes: memos of older exports are then not reused.
EXPORT_CODE_VERSION = "mobile_export/1"


def _prepare(client: LakeFSClient, run_branch: str, tmp: Path, rows: int) -> Prepared:
    """The branch's malware_model and a fixed batch of real feature rows of its training set."""
    import s3fs

    model_path = tmp / "model.pt"
    model_path.write_bytes(client.read(run_branch, MODEL_OBJECT))
    # Range reads through the S3 gateway: the batch is in the training set's leading row
    # groups, and the whole file is most of a reused export's seconds.
    gateway = s3fs.S3FileSystem(**client.s3fs_storage_options(), skip_instance_cache=True)
    path = client.s3_uri(run_branch, TRAINING_SET_OBJECT).removeprefix("s3://")
    with gateway.open(path, "rb") as training_set:
        batch = parity_rows_from_parquet(training_set, list(FEATURE_GROUPS), rows)
    return Prepared(load_model(model_path), None, batch, threshold=0.5)


model_executorch, model_tflite, model_onnx = export_assets(
    model=MALWARE_MODEL,
    prefix="model",
    upstream=malware_model,
    group="mobile",
    code_version=EXPORT_CODE_VERSION,
    prepare=_prepare,
    signature="static input [1, n_features]",
)
EXPORT_ASSETS = (model_executorch, model_tflite, model_onnx)

device_benchmarks = dg.AssetSpec(
    BENCHMARK_ASSET,
    partitions_def=lakefs_branch_partitions,
    deps=list(EXPORT_ASSETS),
    group_name="mobile",
    description="Benchmark records of the branch's exports on a device, uploaded by "
    "`dfp devicefarm run`: through the authenticating gateway to Dagster's REST API, or as "
    "JSON committed under benchmarks/ on the branch (recorded by device_benchmark_sensor).",
)


@branch_asset(
    group="mobile",
    deps=[device_benchmarks],
    description="Latest benchmark per (device, runtime) on the branch: a table and a latency "
    "plot, rebuilt whenever a device uploads results.",
)
def device_benchmark_report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    events = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(BENCHMARK_ASSET), asset_partitions=[context.partition_key]
        ),
        limit=1000,
    ).records
    uploads = [
        e.asset_materialization.metadata["records"].value
        for e in events
        if e.asset_materialization is not None and "records" in e.asset_materialization.metadata
    ]
    records = latest_records(
        BenchmarkRecord.model_validate(r) for upload in reversed(uploads) for r in upload
    )
    if not records:
        raise dg.Failure(
            f"no device_benchmarks on partition {context.partition_key!r}: run "
            "`dfp devicefarm run --branch ...` first"
        )
    rows = latency_table_rows(records)
    columns = list(rows[0])
    table = dg.TableMetadataValue(
        records=[dg.TableRecord(row) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]),
    )
    plot = base64.b64encode(latency_plot_png(records)).decode()
    return dg.MaterializeResult(
        metadata={
            "latency": table,
            "latency_plot": dg.MetadataValue.md(
                f"![latency per runtime per device](data:image/png;base64,{plot})"
            ),
            "devices": dg.MetadataValue.json(sorted({r.device.name for r in records})),
            "records": len(records),
        }
    )


@dg.sensor(
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records a device_benchmarks materialization for each valid benchmark JSON "
    "committed under benchmarks/<device>/ on a branch; invalid files are logged and skipped.",
)
def device_benchmark_sensor(context: dg.SensorEvaluationContext, lakefs: LakeFSResource):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    partitions = set(context.instance.get_dynamic_partitions(lakefs_branch_partitions.name))
    events, rejected = [], 0
    with lakefs.client() as client:
        moved, cursor = moved_heads(client.list_branches(), partitions, seen)
        for branch, head, previous in moved:
            for path in new_benchmark_files(client, branch, head, previous, DEFAULT_BRANCH):
                try:
                    upload = read_upload(client, head, path)
                except UploadRejected as exc:
                    rejected += 1
                    context.log.error(f"rejected, nothing recorded: {exc}")
                    continue
                if upload.branch != branch:
                    # Merged in from another branch: those results belong to that partition.
                    context.log.info(f"{path} on {branch} holds {upload.branch}'s results: skipped")
                    continue
                events.append(
                    dg.AssetMaterialization(
                        asset_key=BENCHMARK_ASSET,
                        partition=branch,
                        description=f"{len(upload.records)} benchmark record(s) from "
                        f"{upload.device.name}, committed to lakeFS",
                        metadata=materialization_metadata(
                            upload, source=f"lakefs:{branch}/{path}@{head[:12]}"
                        ),
                    )
                )
    if not events:
        return dg.SensorResult(
            skip_reason=f"no new benchmark files ({rejected} rejected)", cursor=json.dumps(cursor)
        )
    context.log.info(f"recording {len(events)} device_benchmarks upload(s), {rejected} rejected")
    return dg.SensorResult(asset_events=events, cursor=json.dumps(cursor))

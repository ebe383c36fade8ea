"""Mobile export assets of any branch model: one asset per format (ExecuTorch, TFLite/LiteRT,
ONNX), each gated by a blocking parity check. Thin glue over `mobile` and
`dfp.devicefarm.farm`; a domain supplies how to load its eager model and a batch of real
inputs from the run branch (`Prepared`).

An export is written to the run branch; its parity check runs the file with its own runtime
on the domain's fixed batch of real inputs. A failing check stops write-audit-publish, so no
file that disagrees with the eager model reaches the branch.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from dfp.devicefarm.farm import MobileModel, export_info_object, export_object
from dfp.lake import memo
from dfp.lake.lakefs_client import LakeFSClient
from dfp_assets.platform.partitions import blocking_check, branch_asset
from dfp_assets.platform.step import branch_step
from dfp_resources.lakefs import LakeFSResource
from mobile.exporters import FILE_NAMES, FORMATS, ExportInfo, export_model, exporter_versions
from mobile.parity import check_parity
from mobile.runtimes import load_runner

PARITY_CHECK = "parity"
PARITY_ROWS = 64


class ExportConfig(dg.Config):
    """Parity tolerance: max |export − eager| over the batch (probabilities)."""

    tolerance: float = 1e-4
    rows: int = PARITY_ROWS


@dataclass(frozen=True)
class Prepared:
    """What a domain hands the export: the eager model, its batch-1 example inputs (None: the
    model's [1, n_features] features), a parity batch of real inputs, the decision threshold."""

    model: Any  # torch.nn.Module
    example_inputs: dict[str, Any] | None
    batch: Any  # as mobile.parity.check_parity takes it
    threshold: float


#: (lakeFS client, run branch, scratch directory, parity rows) → Prepared.
Prepare = Callable[[LakeFSClient, str, Path, int], Prepared]


def export_asset(
    fmt: str,
    *,
    model: MobileModel,
    name: str,
    upstream: Any,
    group: str,
    code_version: str,
    prepare: Prepare,
    signature: str,
) -> dg.AssetsDefinition:
    """The `name` asset: `model`'s eager file on the run branch exported to `fmt`, stored at
    `export_object(fmt, model)` with its export info, and its blocking parity check."""

    @branch_asset(
        group=group,
        name=name,
        deps=[upstream],
        code_version=code_version,
        check_specs=[
            blocking_check(
                PARITY_CHECK,
                name,
                f"The {fmt} file, run by its own runtime on a fixed batch of real inputs, "
                "matches eager PyTorch within the tolerance and predicts the same classes.",
            )
        ],
        description=f"`{model.name}` exported to {fmt} ({signature}), stored on the branch "
        "with its export info.",
    )
    def _asset(context: dg.AssetExecutionContext, config: ExportConfig, lakefs: LakeFSResource):
        with (
            branch_step(context, lakefs) as step,
            tempfile.TemporaryDirectory(prefix="dfp-export-") as tmp,
        ):
            client, run_branch = step.client, step.run_branch
            prepared = prepare(client, run_branch, Path(tmp), config.rows)
            inputs = memo.input_version(
                code_version,
                fmt,
                memo.checksum(client, run_branch, model.eager_object),
                exporter_versions(fmt),
            )
            if step.lookup(inputs):
                # This model was exported by the same toolchain already: reuse the file, but
                # still check it with its runtime.
                path = Path(tmp) / FILE_NAMES[fmt]
                path.write_bytes(client.read(run_branch, export_object(fmt, model)))
                info = ExportInfo.model_validate_json(
                    client.read(run_branch, export_info_object(fmt, model))
                )
                model_commit = str(info.details.get("source_model_commit", ""))
            else:
                path, info = export_model(
                    prepared.model, fmt, Path(tmp) / "export", prepared.example_inputs
                )
                model_commit = client.get_commit(run_branch).id
                info = info.model_copy(
                    update={"details": {**info.details, "source_model_commit": model_commit}}
                )
                client.upload(run_branch, export_object(fmt, model), path.read_bytes())
                client.upload(
                    run_branch,
                    export_info_object(fmt, model),
                    info.model_dump_json(indent=2).encode(),
                )
            report = check_parity(
                prepared.model,
                load_runner(fmt, path),
                prepared.batch,
                config.tolerance,
                prepared.threshold,
            )
            written = [export_object(fmt, model), export_info_object(fmt, model)]
            if step.reused is None and report.passed:
                step.record(written, {"sha256": info.sha256})
            step.commit(f"{name} for {step.branch}", {"sha256": info.sha256})
            uri = client.s3_uri(step.branch, export_object(fmt, model))

        yield dg.MaterializeResult(
            metadata=step.reported(
                {
                    "uri": uri,
                    "size_bytes": info.size_bytes,
                    "sha256": info.sha256,
                    "export_seconds": round(info.export_seconds, 3),
                    "input_shape": dg.MetadataValue.json(info.input_shape),
                    "inputs": dg.MetadataValue.json([i.model_dump() for i in info.inputs]),
                    "exporter": dg.MetadataValue.json(info.exporter),
                    "details": dg.MetadataValue.json(info.details),
                    "source_model_commit": model_commit,
                    "parity": report.summary(),
                },
                wrote=export_object(fmt, model),
            ),
            data_version=dg.DataVersion(info.sha256),
        )
        yield dg.AssetCheckResult(
            check_name=PARITY_CHECK,
            passed=report.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=report.summary(),
            metadata={
                "max_abs_diff": report.max_abs_diff,
                "class_mismatches": report.class_mismatches,
                "tolerance": report.tolerance,
                "threshold": report.threshold,
                "rows": report.rows,
                "runtime": f"{report.runtime} {report.runtime_version}",
            },
        )

    return _asset


def export_assets(
    *,
    model: MobileModel,
    prefix: str,
    upstream: Any,
    group: str,
    code_version: str,
    prepare: Prepare,
    signature: str,
) -> tuple[dg.AssetsDefinition, ...]:
    """`export_asset` for each of `FORMATS` (in that order), named `<prefix>_<format>`."""
    return tuple(
        export_asset(
            fmt,
            model=model,
            name=f"{prefix}_{fmt}",
            upstream=upstream,
            group=group,
            code_version=code_version,
            prepare=prepare,
            signature=signature,
        )
        for fmt in FORMATS
    )

"""`branch_comparison`: the partition's branch compared with another branch (its source,
`main` by default): rows, objects, model metrics, exports. Thin glue over
`dfp.kronodroid.comparison`."""

import base64

import dagster as dg

from dfp.kronodroid.comparison import compare_branches
from dfp.lake.diff import DiffError
from dfp.settings import DEFAULT_BRANCH
from dfp_assets.kronodroid.mobile import EXPORT_ASSETS, device_benchmarks
from dfp_assets.kronodroid.model import malware_model
from dfp_assets.kronodroid.raw import kronodroid_raw
from dfp_assets.platform.partitions import branch_asset
from dfp_resources.iceberg import IcebergCatalogResource
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.mlflow import MLflowResource


class ComparisonConfig(dg.Config):
    """The branch this partition's branch is compared with. lakeFS keeps no record of the
    branch a branch was made from, so the default is the default branch."""

    compare_with: str = DEFAULT_BRANCH


@branch_asset(
    group="comparison",
    deps=[kronodroid_raw, malware_model, *EXPORT_ASSETS, device_benchmarks],
    description="The branch compared with another (run config `compare_with`, default main): "
    "raw and mart rows added/removed/changed by key, objects per area (lakeFS diff), the "
    "published models' metric deltas from MLflow (both splits), export size and latency deltas.",
)
def branch_comparison(
    context: dg.AssetExecutionContext,
    config: ComparisonConfig,
    lakefs: LakeFSResource,
    iceberg: IcebergCatalogResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    branch, other = context.partition_key, config.compare_with
    if other == branch:
        raise dg.Failure(
            f"branch_comparison of {branch!r} with itself: set run config compare_with to "
            "another branch"
        )
    tracker = mlflow.tracker()
    try:
        with lakefs.client() as client:
            result = compare_branches(
                client,
                other,
                branch,
                catalog_uri=iceberg.uri,
                metrics_of=lambda run_id: tracker.read(run_id).metrics,
            )
    except DiffError as exc:
        raise dg.Failure(str(exc)) from exc
    plot = base64.b64encode(result.plot_png()).decode()
    rows = {
        r.name: {"added": r.added, "removed": r.removed, "changed": r.changed} for r in result.rows
    }
    return dg.MaterializeResult(
        metadata={
            "compared_with": other,
            "comparison": dg.MetadataValue.md(result.markdown()),
            "comparison_plot": dg.MetadataValue.md(
                f"![rows and metric deltas](data:image/png;base64,{plot})"
            ),
            "rows": dg.MetadataValue.json(rows),
            "metric_deltas": dg.MetadataValue.json(
                {f"{d.group} {d.metric}": d.delta for d in result.metrics}
            ),
            "mlflow_runs": dg.MetadataValue.json(result.runs),
        }
    )

"""The one Definitions object that `dagster dev`, the daemon and the tests load."""

import dagster as dg

from dfp_assets.branches import (
    create_lakefs_branch,
    delete_lakefs_branch,
    lakefs_branch_sensor,
    lakefs_run_branch_cleanup,
)
from dfp_assets.features import feast_online, feast_registry, training_set
from dfp_assets.mobile import (
    EXPORT_ASSETS,
    device_benchmark_report,
    device_benchmark_sensor,
    device_benchmarks,
)
from dfp_assets.model import malware_model
from dfp_assets.raw import kronodroid_raw, kronodroid_raw_checks
from dfp_assets.staging import kronodroid_dbt
from dfp_assets.wap_executor import lakefs_wap_executor
from dfp_resources.environment import build_resources

resources = build_resources()

ingest_kronodroid = dg.define_asset_job(
    "ingest_kronodroid",
    selection=dg.AssetSelection.assets(kronodroid_raw),
    description="Load Kronodroid into a branch and audit it (write-audit-publish).",
)

build_staging = dg.define_asset_job(
    "build_staging",
    selection=dg.AssetSelection.assets(kronodroid_raw, kronodroid_dbt),
    description="Raw → dbt staging and mart (Iceberg) on a branch, write-audit-publish.",
)

FEATURES_AND_MODEL = dg.AssetSelection.assets(
    feast_registry, feast_online, training_set, malware_model
)

train_malware_model = dg.define_asset_job(
    "train_malware_model",
    selection=FEATURES_AND_MODEL,
    description="Mart → Feast registry, online store, training set → malware_model "
    "(MLflow), on a branch whose mart is built; write-audit-publish.",
)

MOBILE_EXPORTS = dg.AssetSelection.assets(*EXPORT_ASSETS)

export_mobile_models = dg.define_asset_job(
    "export_mobile_models",
    selection=MOBILE_EXPORTS,
    description="malware_model → ExecuTorch, TFLite and ONNX files on a branch, each gated by "
    "its blocking parity check; write-audit-publish.",
)

report_device_benchmarks = dg.define_asset_job(
    "report_device_benchmarks",
    selection=dg.AssetSelection.assets(device_benchmark_report),
    description="Rebuild the branch's device-benchmark table and plot (automation does this "
    "after each upload).",
)

build_all = dg.define_asset_job(
    "build_all",
    selection=dg.AssetSelection.assets(kronodroid_raw, kronodroid_dbt)
    | FEATURES_AND_MODEL
    | MOBILE_EXPORTS,
    description="Everything on a branch: raw → staging/mart → features → model → mobile exports.",
)

defs = dg.Definitions(
    assets=[
        kronodroid_raw,
        kronodroid_dbt,
        feast_registry,
        feast_online,
        training_set,
        malware_model,
        *EXPORT_ASSETS,
        device_benchmarks,
        device_benchmark_report,
    ],
    asset_checks=[kronodroid_raw_checks],
    jobs=[
        ingest_kronodroid,
        build_staging,
        train_malware_model,
        export_mobile_models,
        report_device_benchmarks,
        build_all,
        create_lakefs_branch,
        delete_lakefs_branch,
    ],
    sensors=[lakefs_branch_sensor, lakefs_run_branch_cleanup, device_benchmark_sensor],
    resources=resources,
    executor=lakefs_wap_executor(resources["lakefs"]),
)


def ingest_job() -> dg.JobDefinition:
    """Reconstructable handle for `dagster.execute_job` (scripts, tests, benchmarks)."""
    return defs.resolve_job_def("ingest_kronodroid")


def staging_job() -> dg.JobDefinition:
    """Reconstructable handle on `build_staging` (raw + dbt)."""
    return defs.resolve_job_def("build_staging")


def model_job() -> dg.JobDefinition:
    """Reconstructable handle on `train_malware_model` (features + model)."""
    return defs.resolve_job_def("train_malware_model")


def all_job() -> dg.JobDefinition:
    """Reconstructable handle on `build_all`."""
    return defs.resolve_job_def("build_all")


def export_job() -> dg.JobDefinition:
    """Reconstructable handle on `export_mobile_models`."""
    return defs.resolve_job_def("export_mobile_models")


def report_job() -> dg.JobDefinition:
    """Reconstructable handle on `report_device_benchmarks`."""
    return defs.resolve_job_def("report_device_benchmarks")

"""The asset jobs (one place, so sensors can target them without importing Definitions)."""

import dagster as dg

from dfp_assets.kronodroid.comparison import branch_comparison
from dfp_assets.kronodroid.evaluation import cross_branch_evaluation
from dfp_assets.kronodroid.features import feast_online, feast_registry, training_set
from dfp_assets.kronodroid.mobile import EXPORT_ASSETS, device_benchmark_report
from dfp_assets.kronodroid.model import malware_model
from dfp_assets.kronodroid.raw import kronodroid_raw
from dfp_assets.kronodroid.staging import kronodroid_dbt

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

evaluate_cross_branch = dg.define_asset_job(
    "evaluate_cross_branch",
    selection=dg.AssetSelection.assets(cross_branch_evaluation),
    description="Score another branch's published malware_model (config `model_from`, default "
    "main) on this branch's training set, beside this branch's own model.",
)

compare_branches = dg.define_asset_job(
    "compare_branches",
    selection=dg.AssetSelection.assets(branch_comparison),
    description="branch_comparison: the branch against another (config compare_with, default "
    "main): rows, objects, model metrics, exports.",
)

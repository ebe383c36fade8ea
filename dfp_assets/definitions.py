"""The one Definitions object that `dagster dev`, the daemon and the tests load."""

import dagster as dg

from dfp.kronodroid import online_publish
from dfp.settings import get_settings
from dfp_assets.kronodroid.automation import dfp_automation_sensor, lakefs_commit_sensor
from dfp_assets.kronodroid.comparison import branch_comparison
from dfp_assets.kronodroid.evaluation import cross_branch_evaluation
from dfp_assets.kronodroid.features import feast_online, feast_registry, training_set
from dfp_assets.kronodroid.jobs import (
    build_all,
    build_staging,
    compare_branches,
    evaluate_cross_branch,
    export_mobile_models,
    ingest_kronodroid,
    report_device_benchmarks,
    train_malware_model,
)
from dfp_assets.kronodroid.mobile import (
    EXPORT_ASSETS,
    device_benchmark_report,
    device_benchmark_sensor,
    device_benchmarks,
)
from dfp_assets.kronodroid.model import malware_model
from dfp_assets.kronodroid.raw import kronodroid_raw, kronodroid_raw_checks
from dfp_assets.kronodroid.staging import kronodroid_dbt
from dfp_assets.platform.automation import following_parents
from dfp_assets.platform.branches import (
    create_lakefs_branch,
    delete_lakefs_branch,
    lakefs_branch_sensor,
    run_branch_cleanup_sensor,
)
from dfp_assets.platform.wap_executor import lakefs_wap_executor
from dfp_assets.toxic.cdc_sensor import comments_cdc_sensor
from dfp_assets.toxic.jobs import (
    apply_comment_changes,
    build_comments,
    build_toxicity_model,
    export_toxicity_model,
    ingest_comments,
    train_toxicity_model,
)
from dfp_assets.toxic.mobile import TOXICITY_EXPORT_ASSETS
from dfp_assets.toxic.model import comment_embeddings, toxicity_model
from dfp_assets.toxic.production import toxic_dbt
from dfp_assets.toxic.raw import comments_raw, comments_raw_checks
from dfp_assets.toxic.staging import comments_tokenized, comments_tokenized_checks
from dfp_resources.environment import build_resources

resources = build_resources()

#: The systems runs stage data in outside lakeFS, each published with the run's merge (or
#: discarded) by the resource of this key: Postgres run schemas (toxic comments) and online
#: projects (Kronodroid's Feast). The cleanup sensor drops what killed runs left in them.
WAP_PARTICIPANTS = {"postgres": "postgres_staging", online_publish.SYSTEM: "feast"}
lakefs_run_branch_cleanup = run_branch_cleanup_sensor(list(WAP_PARTICIPANTS.values()))

defs = dg.Definitions(
    assets=[
        kronodroid_raw,
        *following_parents(
            [
                kronodroid_dbt,
                feast_registry,
                feast_online,
                training_set,
                malware_model,
                *EXPORT_ASSETS,
                device_benchmark_report,
            ]
        ),
        device_benchmarks,
        # Not automated: it answers a user's question about another branch's model.
        cross_branch_evaluation,
        branch_comparison,
        comments_raw,
        *following_parents([comments_tokenized, toxic_dbt]),
        # Not automated: encoding a branch's comments takes minutes on 2 cores.
        comment_embeddings,
        toxicity_model,
        *TOXICITY_EXPORT_ASSETS,
    ],
    asset_checks=[kronodroid_raw_checks, comments_raw_checks, comments_tokenized_checks],
    jobs=[
        ingest_kronodroid,
        build_staging,
        train_malware_model,
        export_mobile_models,
        report_device_benchmarks,
        build_all,
        evaluate_cross_branch,
        compare_branches,
        ingest_comments,
        build_comments,
        apply_comment_changes,
        train_toxicity_model,
        build_toxicity_model,
        export_toxicity_model,
        create_lakefs_branch,
        delete_lakefs_branch,
    ],
    sensors=[
        lakefs_branch_sensor,
        lakefs_run_branch_cleanup,
        lakefs_commit_sensor,
        device_benchmark_sensor,
        dfp_automation_sensor,
        comments_cdc_sensor,
    ],
    resources=resources,
    executor=lakefs_wap_executor(
        resources["lakefs"],
        default_mode=get_settings().executor(),
        participants={system: resources[key] for system, key in WAP_PARTICIPANTS.items()},
        # A multiprocess run's steps fork from a process that loaded these definitions once,
        # instead of each step importing dagster, pandas and the definitions anew (3-4 s each).
        preload_modules=["dfp_assets.definitions"],
    ),
)


def ingest_job() -> dg.JobDefinition:
    """Reconstructable handle for `dagster.execute_job` (scripts, tests, benchmarks)."""
    return defs.resolve_job_def("ingest_kronodroid")


def ingest_comments_job() -> dg.JobDefinition:
    """Reconstructable handle on `ingest_comments` (comments_raw and its checks)."""
    return defs.resolve_job_def("ingest_comments")


def comments_job() -> dg.JobDefinition:
    """Reconstructable handle on `build_comments` (raw → tokenized staging → table_clean)."""
    return defs.resolve_job_def("build_comments")


def toxicity_job() -> dg.JobDefinition:
    """Reconstructable handle on `build_toxicity_model` (build_comments + embeddings + model)."""
    return defs.resolve_job_def("build_toxicity_model")


def train_toxicity_job() -> dg.JobDefinition:
    """Reconstructable handle on `train_toxicity_model` (embeddings + model)."""
    return defs.resolve_job_def("train_toxicity_model")


def export_toxicity_job() -> dg.JobDefinition:
    """Reconstructable handle on `export_toxicity_model` (the three exports and their parity)."""
    return defs.resolve_job_def("export_toxicity_model")


def staging_job() -> dg.JobDefinition:
    """Reconstructable handle on `build_staging` (raw + dbt)."""
    return defs.resolve_job_def("build_staging")


def model_job() -> dg.JobDefinition:
    """Reconstructable handle on `train_malware_model` (features + model)."""
    return defs.resolve_job_def("train_malware_model")


def all_job() -> dg.JobDefinition:
    """Reconstructable handle on `build_all`."""
    return defs.resolve_job_def("build_all")


def evaluate_job() -> dg.JobDefinition:
    """Reconstructable handle on `evaluate_cross_branch`."""
    return defs.resolve_job_def("evaluate_cross_branch")


def export_job() -> dg.JobDefinition:
    """Reconstructable handle on `export_mobile_models`."""
    return defs.resolve_job_def("export_mobile_models")


def report_job() -> dg.JobDefinition:
    """Reconstructable handle on `report_device_benchmarks`."""
    return defs.resolve_job_def("report_device_benchmarks")


def comparison_job() -> dg.JobDefinition:
    """Reconstructable handle on `compare_branches` (branch_comparison)."""
    return defs.resolve_job_def("compare_branches")

"""The one Definitions object that `dagster dev`, the daemon and the tests load."""

import dagster as dg

from dfp_assets.branches import (
    create_lakefs_branch,
    delete_lakefs_branch,
    lakefs_branch_sensor,
    lakefs_run_branch_cleanup,
)
from dfp_assets.raw import kronodroid_raw, kronodroid_raw_checks
from dfp_assets.wap_executor import lakefs_wap_executor
from dfp_resources.environment import build_resources

resources = build_resources()

ingest_kronodroid = dg.define_asset_job(
    "ingest_kronodroid",
    selection=dg.AssetSelection.assets(kronodroid_raw),
    description="Load Kronodroid into a branch and audit it (write-audit-publish).",
)

defs = dg.Definitions(
    assets=[kronodroid_raw],
    asset_checks=[kronodroid_raw_checks],
    jobs=[ingest_kronodroid, create_lakefs_branch, delete_lakefs_branch],
    sensors=[lakefs_branch_sensor, lakefs_run_branch_cleanup],
    resources=resources,
    executor=lakefs_wap_executor(resources["lakefs"]),
)


def ingest_job() -> dg.JobDefinition:
    """Reconstructable handle for `dagster.execute_job` (scripts, tests, benchmarks)."""
    return defs.resolve_job_def("ingest_kronodroid")

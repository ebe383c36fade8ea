"""Keep the `lakefs_branch` partitions in sync with lakeFS, and clean up run branches."""

import dagster as dg

from dfp.lake import wap
from dfp.lake.branches import partition_changes, validate_user_branch_name
from dfp.settings import DEFAULT_BRANCH
from dfp_assets.platform.dagster_private import IN_PROGRESS_RUN_STATUSES
from dfp_assets.platform.partitions import lakefs_branch_partitions
from dfp_assets.platform.wap_executor import KEEP_RUN_BRANCH_TAG
from dfp_resources.feast import FeastResource
from dfp_resources.iceberg import IcebergCatalogResource
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.postgres_staging import PostgresStagingResource

PARTITIONS = lakefs_branch_partitions.name


@dg.sensor(
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a lakefs_branch partition per new lakeFS branch; removes deleted ones.",
)
def lakefs_branch_sensor(context: dg.SensorEvaluationContext, lakefs: LakeFSResource):
    with lakefs.client() as client:
        branches = client.list_branches()  # hidden run branches are not listed
    to_add, to_remove = partition_changes(
        branches, context.instance.get_dynamic_partitions(PARTITIONS)
    )
    if not to_add and not to_remove:
        return dg.SkipReason(f"{len(branches)} branches, partitions in sync")
    requests = []
    if to_add:
        requests.append(lakefs_branch_partitions.build_add_request(to_add))
    if to_remove:
        requests.append(lakefs_branch_partitions.build_delete_request(to_remove))
    context.log.info(f"partitions: +{to_add} -{to_remove}")
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Deletes hidden dfp-run-* branches whose run is no longer in progress "
    "(killed or crashed run workers), and their Iceberg catalog rows, Postgres run schemas "
    "and online projects no branch serves, unless the run asked to keep them.",
)
def lakefs_run_branch_cleanup(
    context: dg.SensorEvaluationContext,
    lakefs: LakeFSResource,
    iceberg: IcebergCatalogResource,
    postgres_staging: PostgresStagingResource,
    feast: FeastResource,
):
    live = set(
        context.instance.get_run_ids(dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))
    ) | set(context.instance.get_run_ids(dg.RunsFilter(tags={KEEP_RUN_BRANCH_TAG: "true"})))
    with lakefs.client() as client:
        orphans = wap.orphaned_run_branches(client, live)
        tables = iceberg.tables(client)
        for branch in orphans:
            client.delete_branch(branch)
            tables.forget(branch)  # catalog rows a killed dbt run left behind
        # Catalog rows of run branches already gone: the catalog was down as the run ended.
        indexes = wap.orphaned_runs(tables.indexed_branches(), live)
        for branch in indexes:
            tables.forget(branch)
        # Online projects of killed runs, or replaced while another branch still served them.
        projects = feast.discard_orphans(client, live)
    # Run schemas outlive their branch when Postgres was down as the run ended.
    schemas = postgres_staging.discard_orphans(live) if postgres_staging.configured else []
    if not orphans and not indexes and not schemas and not projects:
        return dg.SkipReason(
            "no orphaned run branches, catalog indexes, run schemas or online projects"
        )
    context.log.info(
        f"deleted orphaned run branches: {orphans}, catalog indexes: {indexes}, "
        f"run schemas: {schemas}, online projects: {projects}"
    )
    return dg.SkipReason(
        f"deleted {len(orphans)} orphaned run branches, {len(indexes)} catalog indexes, "
        f"{len(schemas)} run schemas and {len(projects)} online projects"
    )


class BranchConfig(dg.Config):
    name: str
    source: str = DEFAULT_BRANCH


@dg.op
def create_lakefs_branch_op(
    context: dg.OpExecutionContext, config: BranchConfig, lakefs: LakeFSResource
):
    name = validate_user_branch_name(config.name)
    with lakefs.client() as client:
        head = client.create_branch(name, config.source)
    context.instance.add_dynamic_partitions(PARTITIONS, [name])
    context.log.info(f"created lakeFS branch {name} from {config.source} @ {head[:12]}")


@dg.op
def delete_lakefs_branch_op(
    context: dg.OpExecutionContext, config: BranchConfig, lakefs: LakeFSResource
):
    name = validate_user_branch_name(config.name)
    if name == DEFAULT_BRANCH:
        raise dg.Failure(f"refusing to delete the default branch {name!r}")
    with lakefs.client() as client:
        client.delete_branch(name)
    context.instance.delete_dynamic_partition(PARTITIONS, name)


@dg.job(description="Create a lakeFS branch and its lakefs_branch partition.")
def create_lakefs_branch():
    create_lakefs_branch_op()


@dg.job(description="Delete a lakeFS branch and its lakefs_branch partition.")
def delete_lakefs_branch():
    delete_lakefs_branch_op()

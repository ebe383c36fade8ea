"""Keep the `lakefs_branch` partitions in sync with lakeFS, and clean up run branches."""

from collections.abc import Sequence

import dagster as dg

from dfp.lake import wap
from dfp.lake.branches import partition_changes, validate_user_branch_name
from dfp.settings import DEFAULT_BRANCH
from dfp_assets.platform.dagster_private import IN_PROGRESS_RUN_STATUSES
from dfp_assets.platform.partitions import lakefs_branch_partitions
from dfp_assets.platform.wap_executor import KEEP_RUN_BRANCH_TAG
from dfp_resources.iceberg import IcebergCatalogResource
from dfp_resources.lakefs import LakeFSResource

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


def run_branch_cleanup_sensor(participants: Sequence[str] = ()) -> dg.SensorDefinition:
    """`lakefs_run_branch_cleanup`: deletes hidden run branches whose run is no longer in
    progress, their Iceberg catalog rows, and what they staged elsewhere. `participants`:
    the keys of the resources of the systems runs stage data in outside lakeFS (the domains'
    write-audit-publish participants); each has `discard_orphans(client, live_run_ids)`,
    which drops what no run in progress (nor, for its system, a branch) holds and returns
    its names, and `orphans_name`, what it calls them."""

    @dg.sensor(
        name="lakefs_run_branch_cleanup",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Deletes hidden dfp-run-* branches whose run is no longer in progress "
        "(killed or crashed run workers), and their Iceberg catalog rows and what they staged "
        f"outside lakeFS ({', '.join(participants) or 'nothing'}), unless the run asked to "
        "keep them.",
        required_resource_keys={"lakefs", "iceberg", *participants},
    )
    def lakefs_run_branch_cleanup(context: dg.SensorEvaluationContext, **_resources: object):
        # The resources are read from `context.resources` (keys known only at build time);
        # a direct call (tests) passes them as keyword arguments too, which `_resources` takes.
        lakefs: LakeFSResource = context.resources.lakefs
        iceberg: IcebergCatalogResource = context.resources.iceberg
        live = set(
            context.instance.get_run_ids(dg.RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))
        ) | set(context.instance.get_run_ids(dg.RunsFilter(tags={KEEP_RUN_BRANCH_TAG: "true"})))
        with lakefs.client() as client:
            found = {"orphaned run branches": wap.orphaned_run_branches(client, live)}
            tables = iceberg.tables(client)
            for branch in found["orphaned run branches"]:
                client.delete_branch(branch)
                tables.forget(branch)  # catalog rows a killed dbt run left behind
            # Catalog rows of run branches already gone: the catalog was down as the run ended.
            found["catalog indexes"] = wap.orphaned_runs(tables.indexed_branches(), live)
            for branch in found["catalog indexes"]:
                tables.forget(branch)
            # What killed runs staged elsewhere (run schemas, online projects...), or what a
            # down service kept a finished run from discarding.
            for key in participants:
                resource = getattr(context.resources, key)
                found[resource.orphans_name] = resource.discard_orphans(client, live)
        if not any(found.values()):
            return dg.SkipReason(f"no {', '.join(found)}")
        context.log.info(
            "deleted " + ", ".join(f"{kind}: {names}" for kind, names in found.items())
        )
        counts = [f"{len(names)} {kind}" for kind, names in found.items()]
        return dg.SkipReason(f"deleted {', '.join(counts[:-1])} and {counts[-1]}")

    return lakefs_run_branch_cleanup


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

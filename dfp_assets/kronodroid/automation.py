"""What runs by itself: new files pushed to a branch rebuild that branch's partition, and
downstream assets follow their parents on the same branch (declarative automation)."""

import json

import dagster as dg

from dfp.kronodroid.sources import LANDING_PREFIX
from dfp.lake.branches import landing_changed, moved_heads
from dfp.settings import DEFAULT_BRANCH
from dfp_assets.kronodroid.jobs import build_all
from dfp_assets.kronodroid.mobile import device_benchmarks
from dfp_assets.kronodroid.raw import kronodroid_raw
from dfp_assets.platform.partitions import lakefs_branch_partitions
from dfp_resources.lakefs import LakeFSResource

#: kronodroid_raw reads what was pushed under landing/kronodroid/ on the partition's branch.
RAW_FROM_LANDING = {"ops": {"kronodroid_raw": {"config": {"source": "lakefs"}}}}
TRIGGER_TAG = "dfp/trigger"
COMMIT_TAG = "dfp/lakefs_commit"


@dg.sensor(
    jobs=[build_all],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A commit that adds or changes files under landing/kronodroid/ on a branch "
    "(pushed with lakectl or an SDK; dfp never writes there) requests build_all for that "
    "branch's partition, once per commit (run_key branch:commit). Benchmark JSON under "
    "benchmarks/ is device_benchmark_sensor's; dfp's own commits change neither.",
)
def lakefs_commit_sensor(context: dg.SensorEvaluationContext, lakefs: LakeFSResource):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    partitions = set(context.instance.get_dynamic_partitions(lakefs_branch_partitions.name))
    requests = []
    with lakefs.client() as client:
        # Branches without a partition yet wait for lakefs_branch_sensor to add it.
        moved, cursor = moved_heads(client.list_branches(), partitions, seen)
        for branch, head, previous in moved:
            if previous is None and branch == DEFAULT_BRANCH:
                continue  # nothing to compare with: only later commits count
            # A branch seen for the first time counts what it changed since it left main.
            base = previous or DEFAULT_BRANCH
            if not landing_changed(client.diff(base, head, prefix="landing/"), LANDING_PREFIX):
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"{branch}:{head}",
                    job_name=build_all.name,
                    partition_key=branch,
                    run_config=RAW_FROM_LANDING,
                    tags={TRIGGER_TAG: "lakefs_commit_sensor", COMMIT_TAG: head},
                )
            )
            context.log.info(f"new files under landing/ on {branch} @ {head[:12]}: build_all")
    if not requests:
        return dg.SensorResult(skip_reason="no new landing files", cursor=json.dumps(cursor))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))


#: Every asset below kronodroid_raw follows its parents on the same partition, once their
#: blocking checks passed; device_benchmarks is reported by devices, never run.
FOLLOWERS = dg.AssetSelection.assets(kronodroid_raw).downstream(include_self=False) - (
    dg.AssetSelection.assets(device_benchmarks.key)
)

dfp_automation_sensor = dg.AutomationConditionSensorDefinition(
    "dfp_automation",
    target=FOLLOWERS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Declarative automation: each asset below kronodroid_raw materializes after "
    "its parents updated on the same lakeFS branch partition and their blocking checks passed.",
)

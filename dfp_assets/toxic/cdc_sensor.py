"""The CDC sensor: new changes of `app.comments` request one `apply_comment_changes` run for
the target branch (`main`).

Exactly-once comes from where the offsets live, not from Kafka or the slot: the sensor reads
the offsets of the branch's newest publish from lakeFS commit metadata (`dfp.cdc.offsets`)
and asks for a run when changes follow them; the run reads from the same published offsets
(a redelivered change at or before them is skipped), applies the batch to `comments_raw` and
records the offsets it read up to with its publish. A failed run publishes nothing, so the
offsets stay where they were and the changes are read again by the next run.
"""

import json
import time

import dagster as dg

from dfp.settings import DEFAULT_BRANCH, load_settings
from dfp.toxic.cdc import LogicalReplicationReader, change_reader, ref_offsets
from dfp_assets.platform.dagster_private import NOT_FINISHED_STATUSES
from dfp_resources.lakefs import LakeFSResource

APPLY_JOB = "apply_comment_changes"
TRIGGER_TAG = "dfp/trigger"
SENSOR_NAME = "comments_cdc_sensor"
#: A tick with no new change waits this long for one on Debezium's topic, so a change is seen
#: at once rather than at the next tick of the daemon's 5 s loop (well below the sensor
#: evaluation timeout, 60 s; the daemon evaluates sensors in threads, so others still tick).
LONG_POLL_S = 15.0
IN_FLIGHT_POLL_S = 0.25


def offsets_key(offsets: dict[str, int]) -> str:
    return json.dumps(dict(sorted(offsets.items())), separators=(",", ":"))


@dg.sensor(
    job_name=APPLY_JOB,
    # Below the daemon's 5 s loop: a tick on every loop. At 5 the elapsed time since the last
    # tick is as often just under 5 s, and the tick waits a whole loop more.
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New changes of app.comments (Debezium's Kafka topic, or Postgres logical "
    "replication without Kafka) after the offsets main's last publish recorded request one "
    "run for that batch on main.",
)
def comments_cdc_sensor(context: dg.SensorEvaluationContext, lakefs: LakeFSResource):
    settings = load_settings()
    if settings.dfp_cdc_dsn is None:
        return dg.SkipReason("no DFP_CDC_DSN: change data capture of app.comments is off")
    branch = DEFAULT_BRANCH
    deadline = time.monotonic() + LONG_POLL_S
    while in_flight := context.instance.get_run_records(
        dg.RunsFilter(
            job_name=APPLY_JOB,
            tags={TRIGGER_TAG: SENSOR_NAME},
            statuses=list(NOT_FINISHED_STATUSES),
        ),
        limit=1,
    ):
        # Its publish moves the offsets; asking now would read the same changes twice. Wait
        # for it within this tick: changes made meanwhile are then seen when it ends.
        if time.monotonic() >= deadline:
            return dg.SkipReason(f"run {in_flight[0].dagster_run.run_id} applies changes now")
        time.sleep(IN_FLIGHT_POLL_S)
    with lakefs.client() as client:
        if not client.branch_exists(branch):
            return dg.SkipReason(f"lakeFS branch {branch} does not exist yet")
        after = ref_offsets(client, branch)
    reader = change_reader(
        settings.dfp_kafka_bootstrap_servers,
        settings.dfp_cdc_dsn.get_secret_value(),
        wait_s=max(0.0, deadline - time.monotonic()),
    )
    if isinstance(reader, LogicalReplicationReader) and reader.slot in after:
        # Published: the slot may free the WAL up to there.
        reader.acknowledge(after[reader.slot])
    changes, until = reader.read_batch(after)
    if not changes:
        return dg.SkipReason(f"no changes after {offsets_key(after)}")
    context.log.info(f"{len(changes)} changes after {offsets_key(after)}: a run for {branch}")
    # A new change gives a new key; a batch whose run failed is asked again once changes
    # follow it (e.g. the fix of the row its checks refused).
    return dg.RunRequest(
        run_key=f"{branch}:{offsets_key(after)}:{offsets_key(until)}",
        partition_key=branch,
        tags={TRIGGER_TAG: SENSOR_NAME, "dfp/cdc_after": offsets_key(after)},
    )

"""Feast on each lakeFS branch: the offline table and registry, the online store, and the
point-in-time training set. Thin glue over `dfp.kronodroid.features` and `dfp.kronodroid.training`.

Under write-audit-publish the offline table and the training set are written on the run
branch and published by its merge; the branch's registry always names the branch's own
offline path. The online store is not versioned by lakeFS: `feast_online` writes a project of
the run's own and a pointer to it on the run branch, which the merge publishes
(`dfp.kronodroid.online_publish`); until then the branch serves what it served before.
"""

import io
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

from dfp.kronodroid import online_publish, online_reuse
from dfp.kronodroid.features import (
    EARLIEST_EVENT,
    ENTITY_KEYS,
    FEATURE_GROUPS,
    OFFLINE_DIGEST_OBJECT,
    OFFLINE_OBJECT,
    SERVICE_NAME,
    apply_definitions,
    branch_project,
    export_offline,
    mart_to_feast_table,
    materialize,
    offline_uri,
    read_offline,
    read_offline_digest,
    registry_version,
)
from dfp.kronodroid.training import (
    ENTITY_COLUMNS,
    TRAINING_SET_OBJECT,
    TRAINING_SET_ROW_GROUP_ROWS,
    build_training_set,
    training_set_digest,
)
from dfp.lake import memo, wap
from dfp.lake.iceberg import BranchTables
from dfp_assets.platform.partitions import branch_asset
from dfp_assets.platform.step import BranchStep, branch_step, reuse_allowed
from dfp_assets.platform.wap_executor import register_staged
from dfp_resources.feast import FeastResource
from dfp_resources.iceberg import IcebergCatalogResource
from dfp_resources.lakefs import LakeFSResource

if TYPE_CHECKING:
    import pyarrow as pa

MART = ("marts", "mart_app_features")
MART_KEY = dg.AssetKey(list(MART))
#: Bump when the training-set logic changes: memos from older code are then not reused.
TRAINING_SET_CODE_VERSION = "training_set/2"
#: Bump when materialization changes: online rows written by older code are not copied.
FEAST_ONLINE_CODE_VERSION = "feast_online/1"
#: Bump when the mart -> offline table export changes.
OFFLINE_CODE_VERSION = "feast_offline/1"


def mart_feast_table(tables: BranchTables, ref: str) -> tuple["pa.Table", dict[str, str]]:
    """The mart on `ref` as Feast's table, plus its Iceberg lineage. `created_timestamp` is
    the snapshot's commit time, so rebuilding from the same snapshot gives the same table."""
    mart = tables.table(ref, *MART)
    snapshot = mart.current_snapshot()
    if snapshot is None:
        raise dg.Failure(f"{'.'.join(MART)} on {ref} has no snapshot: build staging first")
    created = datetime.fromtimestamp(snapshot.timestamp_ms / 1000, tz=UTC)
    table = mart_to_feast_table(mart.scan().to_arrow(), created_at=created)
    lineage = {
        "iceberg_table": ".".join(MART),
        "iceberg_snapshot_id": str(snapshot.snapshot_id),
        "iceberg_snapshot_created": created.isoformat(),
    }
    return table, lineage


@branch_asset(
    group="features",
    code_version=OFFLINE_CODE_VERSION,
    deps=[MART_KEY],
    description="The mart as Feast's offline table on the branch, and the branch's registry "
    "(entities, the syscalls/permissions/static_metadata views, service malware_model).",
)
def feast_registry(
    context: dg.AssetExecutionContext,
    lakefs: LakeFSResource,
    iceberg: IcebergCatalogResource,
    feast: FeastResource,
) -> dg.MaterializeResult:
    with branch_step(context, lakefs) as step:
        client, branch = step.client, step.branch
        pointer = iceberg.tables(client).pointers(step.run_branch).get(MART)
        inputs = (
            memo.input_version(OFFLINE_CODE_VERSION, pointer.metadata_location) if pointer else None
        )
        if step.lookup(inputs):
            # The mart this offline table was exported from is the one on the branch.
            lineage = {k: v for k, v in step.reused.metadata.items() if k != "dagster/row_count"}
            rows = step.reused.metadata["dagster/row_count"]
            uri = offline_uri(client.repository, branch)
        else:
            with iceberg.tables(client).run_index(step.run_branch, sync=True) as tables:
                table, lineage = mart_feast_table(tables, step.run_branch)
            rows = table.num_rows
            uri = export_offline(client, branch, table, io_ref=step.run_branch)
            step.record(
                [OFFLINE_OBJECT, OFFLINE_DIGEST_OBJECT], {**lineage, "dagster/row_count": rows}
            )
        store = feast.branch_store(client, branch)
        definitions = apply_definitions(store)
        version = registry_version(store)
        # Allow-empty: the same mart exports the same bytes (a branch rebuilt with no change).
        step.commit(f"feast offline table for {branch}")
    return dg.MaterializeResult(
        metadata=step.reported(
            {
                "feast_project": branch_project(client.repository, branch),
                "feast_registry_version": version,
                "feast_feature_service": SERVICE_NAME,
                "feature_views": [v.name for v in definitions.feature_views],
                "offline_uri": uri,
                "dagster/row_count": rows,
                **lineage,
            },
            wrote=OFFLINE_OBJECT,
        )
    )


class FeastOnlineConfig(dg.Config):
    """The materialization window (ISO timestamps, UTC). Dagster owns it: by default every
    row up to the run's start, since dfp rebuilds whole mart snapshots."""

    start: str | None = None
    end: str | None = None


def _window(config: FeastOnlineConfig, run_started: datetime) -> tuple[datetime, datetime]:
    def parse(value: str) -> datetime:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    start = parse(config.start) if config.start else EARLIEST_EVENT
    end = parse(config.end) if config.end else run_started
    if end < start:
        raise dg.Failure(f"empty materialization window: end {end} is before start {start}")
    return start, end


@branch_asset(
    group="features",
    code_version=FEAST_ONLINE_CODE_VERSION,
    deps=[feast_registry],
    description="The branch's online store (SQLite embedded, Redis for real), materialized "
    "over a window Dagster passes in into a project of the run's own, served once the run "
    "publishes its pointer.",
)
def feast_online(
    context: dg.AssetExecutionContext,
    config: FeastOnlineConfig,
    lakefs: LakeFSResource,
    feast: FeastResource,
) -> dg.MaterializeResult:
    run = context.instance.get_run_record_by_id(context.run.run_id)
    started = run.start_time if run and run.start_time else datetime.now(UTC).timestamp()
    start, end = _window(config, datetime.fromtimestamp(started, tz=UTC))
    online = feast.online_settings()
    with branch_step(context, lakefs) as step:
        repository = step.client.repository
        project = online_publish.run_project(repository, step.branch, step.run_id)
        # What the branch serves now (the run branch starts at the branch's head).
        served = feast.store(step.client, step.branch, ref=step.run_branch).project
        outcome = online_publish.with_online_retries(
            online,
            f"feast_online writing project {project} of {step.branch}",
            lambda: _write_online(step, feast, project, served, start, end),
        )
        rewritten = outcome.published != served
        if rewritten:
            pointer = online_publish.OnlinePointer(
                project=outcome.published, run_id=step.run_id, kind=online.kind
            )
            online_publish.write_pointer(step.client, step.run_branch, pointer)
        # No rows in lakeFS: the memo says which branch's project holds these rows.
        step.record([], {"branch": step.branch, "feast_project": outcome.published})
        # Allow-empty: the memo and pointer are unchanged when the same branch is refreshed.
        step.commit(f"feast online store of {step.branch}")
    reused = outcome.reused
    shown = (
        {"materialize_seconds": round(outcome.seconds, 2)}
        if reused is None
        else {
            "online_rows_from": reused["how"],
            "reuse_seconds": round(outcome.seconds, 2),
            "reused_from_run": reused["run"],
        }
    )
    # The rows live in the online store, not in lakeFS: only the memo's commit is linked.
    return dg.MaterializeResult(
        metadata=step.reported(
            {
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                "online_store": online.kind,
                "feast_project": outcome.published,
                "offline_digest": outcome.digest or "",
                "dagster/row_count": outcome.rows,
                **shown,
            },
            wrote=online_publish.POINTER_OBJECT if rewritten else None,
        )
    )


@dataclass
class _OnlineOutcome:
    published: str  # the project the branch serves once the run publishes
    digest: str | None
    rows: int
    seconds: float
    reused: dict[str, str] | None


def _write_online(
    step: BranchStep,
    feast: FeastResource,
    project: str,
    served: str,
    start: datetime,
    end: datetime,
) -> _OnlineOutcome:
    """Fill the run's own `project` (materialize, or copy another branch's rows), or keep the
    `served` one when it already holds this offline table's rows. Safe to repeat: `project`
    is this run's alone and starts empty."""
    import pyarrow.compute as pc

    context, kind = step.context, feast.online_settings().kind
    with feast.run_store(step.client, step.branch, step.run_branch, project=project) as store:
        digest = read_offline_digest(step.client, step.run_branch)  # None: materialize
        entities = read_offline(store, [*ENTITY_KEYS, "event_timestamp"])
        stamps = entities.column("event_timestamp")
        # A window holding every row gives the same online rows whatever its exact ends.
        complete = entities.num_rows == 0 or (
            start <= pc.min(stamps).as_py() and pc.max(stamps).as_py() <= end
        )
        began = time.monotonic()
        # The version is recorded whatever happens: the memo says where these rows are.
        step.version = memo.input_version(FEAST_ONLINE_CODE_VERSION, digest, kind)
        own = feast.store(step.client, step.branch, ref=step.run_branch)
        if _keeps(step, own, digest, complete):
            context.log.info(f"online rows of {served} are this offline table's: kept")
            state = online_reuse.read_state(own)
            reused = {"how": f"kept ({served})", "run": state.run_id if state else ""}
            # Applying the run store's definitions made the (empty) SQLite file of `project`.
            online_publish.drop_project(feast.online_settings(), project)
            return _OnlineOutcome(served, digest, entities.num_rows, _since(began), reused)
        # The run's project is staged before any row is written: a run that does not
        # publish drops it, the orphan sweep finds it if the run is killed.
        register_staged(context, wap.Staged(online_publish.SYSTEM, project, served))
        online_publish.register_project(feast.online_settings(), project)
        reused = _copy_online(step, feast, store, digest, complete, entities)
        if reused is None:
            online_reuse.clear_state(store)
            materialize(store, start, end)
        state = dict(
            project=project,
            offline_digest=digest or "",
            window_start=start,
            window_end=end,
            complete=complete,
            rows=entities.num_rows,
            run_id=reused["run"] if reused else context.run.run_id,
        )
        online_reuse.write_state(store, _online_state(**state))
    return _OnlineOutcome(project, digest, entities.num_rows, _since(began), reused)


def _since(began: float) -> float:
    return time.monotonic() - began


def _online_state(**fields) -> online_reuse.OnlineState:
    return online_reuse.OnlineState(**fields, nonce=uuid.uuid4().hex, written_at=datetime.now(UTC))


def _keeps(step: BranchStep, own, digest: str | None, complete: bool) -> bool:
    """The branch's served project already holds this offline table's rows (a refresh)."""
    if digest is None or not complete or not reuse_allowed(step.context):
        return False
    state = online_reuse.read_state(own)
    return bool(state and state.complete and state.offline_digest == digest)


def _copy_online(
    step: BranchStep,
    feast: FeastResource,
    store,
    digest: str | None,
    complete: bool,
    entities: "pa.Table",
) -> dict[str, str] | None:
    """Online rows for this offline table without materializing: the project the branch
    whose memo this branch inherited serves holds them, and is copied into the run's
    project. None: materialize."""
    context = step.context
    if digest is None or not complete or not reuse_allowed(context):
        return None
    found = step.find(step.version)
    if found is None or found.metadata.get("branch") == step.branch:
        return None
    try:
        source = feast.store(step.client, found.metadata["branch"])
    except Exception as exc:  # the source branch is gone: materialize instead
        context.log.info(f"no store for {found.metadata['branch']}: {exc}")
        return None
    before = online_reuse.read_state(source)
    if not before or not before.complete or before.offline_digest != digest:
        return None
    try:
        copied = online_reuse.copy_online(source, store, entities)
    except ValueError as exc:  # e.g. the source lacks some keys after all
        context.log.warning(f"no copy from {source.project} ({exc}): materializing")
        return None
    after = online_reuse.read_state(source)
    if after is None or after.nonce != before.nonce:
        # The source was rewritten while we copied: what we have may be mixed.
        context.log.warning(f"{source.project} changed during the copy: materializing")
        return None
    context.log.info(f"copied {copied:,} entities' online rows from {source.project}")
    return {
        "how": f"copied from {found.metadata['branch']} ({source.project})",
        "run": before.run_id,
    }


@branch_asset(
    group="features",
    code_version=TRAINING_SET_CODE_VERSION,
    deps=[feast_registry],
    description="Point-in-time training set from Feast's offline store (each app's features "
    "as of its own event time), as parquet on the branch.",
)
def training_set(
    context: dg.AssetExecutionContext, lakefs: LakeFSResource, feast: FeastResource
) -> dg.MaterializeResult:
    with branch_step(context, lakefs) as step:
        client, run_branch, branch = step.client, step.run_branch, step.branch
        snapshots = step.table_snapshots()
        groups = list(FEATURE_GROUPS)
        version = registry_version(feast.branch_store(client, branch))
        # The offline table's content (dbt gives a rebuilt mart new snapshot ids).
        offline = read_offline_digest(client, run_branch)
        lineage = {
            "iceberg_table": ".".join(MART),
            "iceberg_snapshot_id": str(snapshots.get(".".join(MART), "")),
            "iceberg_snapshots": json.dumps(snapshots, sort_keys=True),
            "feast_registry_version": version,
        }
        if step.lookup(
            memo.input_version(TRAINING_SET_CODE_VERSION, offline, groups) if offline else None
        ):
            # The join's result is the object already here; the commit is still the model's
            # lineage anchor, and the lineage is this branch's own mart, not the reused one's.
            digest = step.reused.metadata["training_set_digest"]
            reported = {
                k: v for k, v in step.reused.metadata.items() if k != "iceberg_snapshot_created"
            }
        else:
            with feast.run_store(client, branch, run_branch) as store:
                # The mart as feast_registry exported it: the offline table Feast joins against.
                table = read_offline(store, [*ENTITY_COLUMNS, "created_timestamp"])
                frame = build_training_set(store, table)
            digest = training_set_digest(frame, groups)
            import pyarrow as pa
            import pyarrow.parquet as pq

            sink = io.BytesIO()
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False),
                sink,
                row_group_size=TRAINING_SET_ROW_GROUP_ROWS,
            )
            client.upload(run_branch, TRAINING_SET_OBJECT, sink.getvalue())
            reported = {
                "dagster/row_count": len(frame),
                "malware_share": round(float(frame["label"].mean()), 4),
                "training_set_digest": digest,
                "feast_feature_service": SERVICE_NAME,
                **{k: v for k, v in lineage.items() if k != "feast_registry_version"},
            }
            if table.num_rows:
                # mart_feast_table stamps every row with the mart snapshot's commit time.
                created = table.column("created_timestamp")[0].as_py()
                reported["iceberg_snapshot_created"] = created.isoformat()
            step.record([TRAINING_SET_OBJECT], reported)
        commit = step.commit(
            f"training set for {branch}",
            {
                "training_set_digest": digest,
                "feast_registry_version": version,
                "iceberg_snapshots": lineage["iceberg_snapshots"],
            },
        )
    return dg.MaterializeResult(
        metadata=step.reported(
            {
                **reported,
                **lineage,
                "lakefs_commit": commit,
                "training_set_uri": client.s3_uri(branch, TRAINING_SET_OBJECT),
            },
            wrote=TRAINING_SET_OBJECT,
        ),
        data_version=dg.DataVersion(digest),
    )

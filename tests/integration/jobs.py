"""Reconstructable handles on the real Definitions' jobs (execute_job needs them)."""

import dagster as dg

from dfp_assets.definitions import ingest_job


def materialize_raw(
    instance: dg.DagsterInstance,
    partition: str,
    raw_config: dict,
    *,
    check_config: dict | None = None,
    tags: dict | None = None,
    in_process: bool = True,
):
    """Run `ingest_kronodroid` for one branch partition through the Definitions' executor."""
    if partition not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", [partition])
    run_config: dict = {"ops": {"kronodroid_raw": {"config": raw_config}}}
    if check_config:
        run_config["ops"]["kronodroid_raw_checks"] = {"config": check_config}
    run_config["execution"] = {"config": {"in_process": {}} if in_process else {"multiprocess": {}}}
    with dg.execute_job(
        dg.reconstructable(ingest_job),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": partition, **(tags or {})},
        raise_on_error=False,
    ) as result:
        return result

"""Reconstructable handles on the real Definitions' jobs (execute_job needs them)."""

import dagster as dg

from dfp.settings import load_settings
from dfp_assets.definitions import ingest_job, staging_job
from dfp_resources.environment import resource_run_config


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
    return run_job(
        ingest_job,
        instance,
        partition,
        raw_config,
        check_config=check_config,
        tags=tags,
        in_process=in_process,
    )


def build_staging(
    instance: dg.DagsterInstance,
    partition: str,
    raw_config: dict | None = None,
    *,
    asset_selection: list[dg.AssetKey] | None = None,
):
    """Run `build_staging` (raw → dbt staging/mart) for one branch partition."""
    return run_job(staging_job, instance, partition, raw_config, asset_selection=asset_selection)


def run_job(
    job_fn,
    instance: dg.DagsterInstance,
    partition: str,
    raw_config: dict | None,
    *,
    check_config: dict | None = None,
    tags: dict | None = None,
    in_process: bool = True,
    asset_selection: list[dg.AssetKey] | None = None,
):
    if partition not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", [partition])
    run_config: dict = {"ops": {}, "resources": _resources()}
    if raw_config is not None:
        run_config["ops"]["kronodroid_raw"] = {"config": raw_config}
    if check_config:
        run_config["ops"]["kronodroid_raw_checks"] = {"config": check_config}
    run_config["execution"] = {"config": {"in_process": {}} if in_process else {"multiprocess": {}}}
    with dg.execute_job(
        dg.reconstructable(job_fn),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": partition, **(tags or {})},
        raise_on_error=False,
        asset_selection=asset_selection,
    ) as result:
        return result


def train_model(instance: dg.DagsterInstance, partition: str, model_config: dict | None = None):
    """Run `train_malware_model` (Feast registry, online, training set, model)."""
    from dfp_assets.definitions import model_job

    ops = {"malware_model": {"config": model_config}} if model_config else None
    return _run_partition(model_job, instance, partition, ops)


def _run_partition(job_fn, instance: dg.DagsterInstance, partition: str, ops: dict | None = None):
    if partition not in instance.get_dynamic_partitions("lakefs_branch"):
        instance.add_dynamic_partitions("lakefs_branch", [partition])
    run_config: dict = {
        "ops": ops or {},
        "resources": _resources(),
        "execution": {"config": {"in_process": {}}},
    }
    with dg.execute_job(
        dg.reconstructable(job_fn),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": partition},
        raise_on_error=False,
    ) as result:
        return result


def export_models(instance: dg.DagsterInstance, partition: str, config: dict | None = None):
    """Run `export_mobile_models` (the three exports and their parity checks)."""
    from dfp_assets.definitions import export_job

    ops = {f"model_{fmt}": {"config": config} for fmt in ("executorch", "tflite", "onnx")}
    return _run_partition(export_job, instance, partition, ops if config else None)


def run_report(instance: dg.DagsterInstance, partition: str):
    """Run `report_device_benchmarks` for one partition."""
    from dfp_assets.definitions import report_job

    return _run_partition(report_job, instance, partition)


def _resources() -> dict:
    """The resources' settings as this test has them now: the Definitions were built once
    per process, but tests switch catalog, engine or online store per test."""
    return resource_run_config(load_settings())


def build_everything(
    instance: dg.DagsterInstance,
    partition: str,
    raw_config: dict,
    model_config: dict | None = None,
):
    """Run `build_all` (raw → dbt → features → model → exports) for one branch partition."""
    from dfp_assets.definitions import all_job

    ops: dict = {"kronodroid_raw": {"config": raw_config}}
    if model_config:
        ops["malware_model"] = {"config": model_config}
    return _run_partition(all_job, instance, partition, ops)


def evaluate_branch(instance: dg.DagsterInstance, partition: str, model_from: str | None = None):
    """Run `evaluate_cross_branch` (another branch's model on this branch's training set)."""
    from dfp_assets.definitions import evaluate_job

    ops = (
        {"cross_branch_evaluation": {"config": {"model_from": model_from}}} if model_from else None
    )
    return _run_partition(evaluate_job, instance, partition, ops)


def run_cleanup_sensor(instance: dg.DagsterInstance):
    """One tick of the definitions' `lakefs_run_branch_cleanup` with the resources as this
    test has them (the settings now: its catalog, Postgres and online store)."""
    from dfp_assets.definitions import WAP_PARTICIPANTS, lakefs_run_branch_cleanup
    from dfp_resources.environment import build_resources

    resources = build_resources(load_settings())
    keys = ("lakefs", "iceberg", *WAP_PARTICIPANTS.values())
    with dg.build_sensor_context(
        instance=instance, resources={name: resources[name] for name in keys}
    ) as context:
        return lakefs_run_branch_cleanup(context)

"""Which domain an asset, job or sensor belongs to: the `domain` label of every metric.

One entry per domain; a new domain (the toxic-comment one) adds a `Domain` to `DOMAINS`.
Patterns are `fnmatch` globs on the asset key's user string (`marts/mart_app_features`),
the job name or the sensor name. Anything unmatched is the platform's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

PLATFORM = "platform"


@dataclass(frozen=True)
class Domain:
    name: str
    assets: tuple[str, ...]
    jobs: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    #: Published models: asset -> the materialization metadata keys that are quality metrics.
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Published models: asset -> {quality metric: the check metadata key holding its floor}.
    model_floors: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Assets recorded by device benchmark uploads (metadata `<runtime>.<format>.p50_us`).
    benchmark_assets: tuple[str, ...] = ()
    #: The sensor whose cursor maps each partition branch to the last head it looked at.
    commit_sensor: str = ""
    #: Assets whose `dagster/row_count` is the size of an online store.
    online_store_assets: tuple[str, ...] = ()


DOMAINS: tuple[Domain, ...] = (
    Domain(
        name="kronodroid",
        assets=(
            "kronodroid_*",
            "staging/*",
            "marts/*",
            "feast_*",
            "training_set",
            "malware_model",
            "model_*",
            "device_benchmark*",
        ),
        jobs=(
            "ingest_kronodroid",
            "build_staging",
            "train_malware_model",
            "export_mobile_models",
            "report_device_benchmarks",
            "build_all",
        ),
        sensors=("lakefs_commit_sensor", "device_benchmark_sensor", "dfp_automation"),
        models={
            "malware_model": ("temporal_f1", "temporal_roc_auc", "random_f1", "random_roc_auc")
        },
        model_floors={"malware_model": {"temporal_f1": "f1_floor"}},
        benchmark_assets=("device_benchmarks",),
        online_store_assets=("feast_online",),
        commit_sensor="lakefs_commit_sensor",
    ),
)


def _match(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def domain_of_asset(asset: str) -> str:
    return next((d.name for d in DOMAINS if _match(asset, d.assets)), PLATFORM)


def domain_of_job(job: str) -> str:
    return next((d.name for d in DOMAINS if _match(job, d.jobs)), PLATFORM)


def domain_of_sensor(sensor: str) -> str:
    return next((d.name for d in DOMAINS if _match(sensor, d.sensors)), PLATFORM)


def model_metrics(asset: str) -> tuple[str, ...]:
    """The quality metric keys of `asset` if it is a domain's model, else ()."""
    for domain in DOMAINS:
        if asset in domain.models:
            return domain.models[asset]
    return ()


def model_floor_keys(asset: str) -> dict[str, str]:
    """{quality metric: check metadata key of its floor} of `asset` if it is a model, else {}."""
    for domain in DOMAINS:
        if asset in domain.model_floors:
            return domain.model_floors[asset]
    return {}


def commit_sensors() -> tuple[str, ...]:
    return tuple(d.commit_sensor for d in DOMAINS if d.commit_sensor)


def is_benchmark_asset(asset: str) -> bool:
    return any(asset in d.benchmark_assets for d in DOMAINS)


def is_online_store_asset(asset: str) -> bool:
    return any(asset in d.online_store_assets for d in DOMAINS)

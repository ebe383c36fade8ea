"""The one place that maps dfp's settings (`dfp.settings.DfpSettings`) to resources.

- local (default): services from `dfp stack up`; endpoints and credentials come from
  DFP_HOME/stack.env unless set in the environment; catalog, MLflow store and Feast home
  default to files under DFP_HOME.
- compose / k8s: every endpoint and secret must be set in the environment (docker-compose
  file, Helm values); nothing is read from local files.

Settings become declared resource config, so Dagster's launchpad shows them (the online
store kind, the dbt target, the catalog URI, ...) and a run may override them. Secrets are
passed as `dg.EnvVar(NAME)`: the UI shows the variable's name and the run process reads the
value from its environment (in local mode the launcher, `dfp dev` or a test fixture, passes
stack.env's variables to it). Nothing here writes `os.environ` or creates directories.
"""

import sys
import urllib.parse
from pathlib import Path
from typing import Any

import dagster as dg

from dfp.settings import (
    DBT_TARGETS,
    ENVIRONMENTS,
    PROJECT_ROOT,
    DfpSettings,
    get_settings,
)
from dfp_resources.dbt import DbtResource
from dfp_resources.feast import FeastResource
from dfp_resources.iceberg import IcebergCatalogResource
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.mlflow import MLflowResource
from dfp_resources.postgres_staging import PostgresStagingResource
from dfp_resources.spark import SparkResource

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt" / "kronodroid"

__all__ = [
    "DBT_PROJECT_DIR",
    "DBT_TARGETS",
    "ENVIRONMENTS",
    "build_resources",
    "current_env",
    "dbt_executable",
    "dbt_target",
    "resource_run_config",
]


def current_env() -> str:
    return get_settings().dfp_env


def dbt_target() -> str:
    """The staging engine: DFP_DBT_TARGET=duckdb (default, embedded) | spark."""
    return get_settings().dfp_dbt_target


def dbt_executable() -> str:
    """The dbt installed beside this Python (a venv not on PATH still finds it)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def _value_or_env(name: str, value: str | None) -> Any:
    """A URI as a plain value, unless it is unset (outside local mode: the run then reads
    and requires the variable) or carries a password (a secret: the variable's name)."""
    if value is None or urllib.parse.urlsplit(value).password:
        return dg.EnvVar(name)
    return value


def _settings_config(settings: DfpSettings) -> dict[str, dict[str, Any]]:
    """Each resource's settings-derived config (values or EnvVars), by resource key."""
    catalog = _value_or_env("DFP_ICEBERG_CATALOG_URI", settings.iceberg_catalog_uri())
    return {
        "iceberg": {"uri": catalog},
        "dbt": {
            "project_dir": str(DBT_PROJECT_DIR),
            "profiles_dir": str(DBT_PROJECT_DIR),
            "dbt_executable": dbt_executable(),
            "target": settings.dfp_dbt_target,
        },
        "spark": {"catalog_uri": catalog, "master": settings.dfp_spark_master},
        "feast": {
            "home": _value_or_env("DFP_FEAST_HOME", settings.feast_home()),
            "online": settings.dfp_feast_online,
            "offline_engine": settings.dfp_feast_offline,
            # A Redis URL carries its password: always the variable, only when it is used.
            "redis_url": dg.EnvVar("DFP_REDIS_URL")
            if settings.dfp_feast_online == "redis"
            else None,
        },
        "mlflow": {"tracking_uri": _value_or_env("MLFLOW_TRACKING_URI", settings.tracking_uri())},
        # The URL carries its password: always the variable, only when it is set.
        "postgres_staging": {
            "url": dg.EnvVar("DFP_POSTGRES_URL") if settings.dfp_postgres_url else None
        },
    }


def build_resources(settings: DfpSettings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    config = _settings_config(settings)
    return {
        "iceberg": IcebergCatalogResource(**config["iceberg"]),
        "dbt": DbtResource(**config["dbt"]),
        "spark": SparkResource(**config["spark"]),
        "feast": FeastResource(**config["feast"]),
        "mlflow": MLflowResource(**config["mlflow"]),
        "postgres_staging": PostgresStagingResource(**config["postgres_staging"]),
        # Endpoint and repository are variables too: the run-launching executor holds this
        # resource (not the run config), and one code location serves one lakeFS.
        "lakefs": LakeFSResource.from_env_vars(),
    }


def resource_run_config(settings: DfpSettings) -> dict[str, Any]:
    """Run config giving the non-lakeFS resources `settings` (EnvVars as `{"env": NAME}`):
    for runs in a process whose settings changed after the Definitions were built (tests
    that switch engine or store per test)."""

    def plain(value: Any) -> Any:
        return {"env": value.env_var_name} if isinstance(value, dg.EnvVar) else value

    return {
        key: {"config": {name: plain(v) for name, v in fields.items()}}
        for key, fields in _settings_config(settings).items()
    }

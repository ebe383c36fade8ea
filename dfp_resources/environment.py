"""The one place that picks embedded vs real services, from DFP_ENV.

- local (default): services from `dfp stack up`; their endpoints and credentials come from
  DFP_HOME/stack.env unless already set in the environment.
- compose / k8s: every endpoint and secret must be set in the environment (docker-compose
  file, Helm values); nothing is read from local files.
"""

import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource

from dfp.settings import DEFAULT_REPOSITORY, PROJECT_ROOT, dfp_home, load_stack_env
from dfp.tracking import default_tracking_uri
from dfp_resources.feast import FeastResource
from dfp_resources.iceberg import IcebergCatalogResource
from dfp_resources.lakefs import LakeFSResource
from dfp_resources.mlflow import MLflowResource
from dfp_resources.spark import SparkResource

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt" / "kronodroid"

ENVIRONMENTS = ("local", "compose", "k8s")
DBT_TARGETS = ("duckdb", "spark")


def current_env() -> str:
    env = os.environ.get("DFP_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"DFP_ENV={env!r} is not one of {ENVIRONMENTS}")
    return env


def dbt_target() -> str:
    """The staging engine: DFP_DBT_TARGET=duckdb (default, embedded) | spark."""
    target = os.environ.get("DFP_DBT_TARGET", "duckdb")
    if target not in DBT_TARGETS:
        raise ValueError(f"DFP_DBT_TARGET={target!r} is not one of {DBT_TARGETS}")
    return target


def dbt_executable() -> str:
    """The dbt installed beside this Python (a venv not on PATH still finds it)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def build_resources(env: str | None = None) -> dict[str, Any]:
    env = env or current_env()
    if env == "local":
        load_stack_env()
        os.environ.setdefault("LAKEFS_REPOSITORY", DEFAULT_REPOSITORY)
        catalog = dfp_home() / "iceberg" / "catalog.db"
        catalog.parent.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("DFP_ICEBERG_CATALOG_URI", f"sqlite:///{catalog}")
        os.environ.setdefault("MLFLOW_TRACKING_URI", default_tracking_uri())
        os.environ.setdefault("DFP_FEAST_HOME", str(dfp_home() / "feast"))
    return {
        "iceberg": IcebergCatalogResource(uri=dg.EnvVar("DFP_ICEBERG_CATALOG_URI")),
        # The engine is the dbt target, read when dbt runs: DFP_DBT_TARGET (see dbt_target).
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=dbt_executable(),
        ),
        "spark": SparkResource(catalog_uri=dg.EnvVar("DFP_ICEBERG_CATALOG_URI")),
        # Online store: DFP_FEAST_ONLINE=sqlite (default, embedded) | redis (DFP_REDIS_URL).
        "feast": FeastResource(home=dg.EnvVar("DFP_FEAST_HOME")),
        "mlflow": MLflowResource(tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI")),
        "lakefs": LakeFSResource(
            endpoint=dg.EnvVar("LAKEFS_ENDPOINT"),
            access_key_id=dg.EnvVar("LAKEFS_ACCESS_KEY_ID"),
            secret_access_key=dg.EnvVar("LAKEFS_SECRET_ACCESS_KEY"),
            repository=dg.EnvVar("LAKEFS_REPOSITORY"),
        ),
    }

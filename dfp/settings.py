"""Where dfp keeps local state, and every setting it reads from the environment.

Pure configuration: no Dagster imports. One `DfpSettings` object holds every variable the
code reads (same names as the variables), so the same code runs on the embedded local stack,
docker-compose and Kubernetes:

- DFP_ENV=local (default): variables unset in the environment are filled from
  `$DFP_HOME/stack.env` (written by `dfp stack up`); the environment always wins.
- DFP_ENV=compose / k8s: only the environment counts; no local file is read.

Reading never writes `os.environ` and never creates directories. `get_settings()` reads once
per process; `reload_settings()` reads again (tests, after changing the environment).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Pinned lakeFS release built from the Go module proxy (see deploy/lakefs-build/go.mod).
LAKEFS_VERSION = "v1.84.0"

DEFAULT_REPOSITORY = "kronodroid"
DEFAULT_BRANCH = "main"

ENVIRONMENTS = ("local", "compose", "k8s")
DBT_TARGETS = ("duckdb", "spark")
ONLINE_STORES = ("sqlite", "redis")
EXECUTORS = ("in_process", "multiprocess")
#: Feast offline stores for the point-in-time join: DuckDB (default), or the file (Dask) store
#: kept for comparison (minutes instead of seconds at full size).
OFFLINE_ENGINES = ("duckdb", "file")
DEFAULT_F1_FLOOR = "0.8"
DEFAULT_SPARK_MASTER = "local[2]"
# Spark's own master URLs that dfp drives: in-process local mode or a standalone cluster.
_SPARK_MASTER = re.compile(r"local(\[(\d+|\*)\])?|spark://[A-Za-z0-9.-]+:\d+")

LAKEFS_REQUIRED = ("LAKEFS_ENDPOINT", "LAKEFS_ACCESS_KEY_ID", "LAKEFS_SECRET_ACCESS_KEY")


def dfp_home() -> Path:
    """Root of git-ignored local state: build caches, service data, pid files, env file.

    Read straight from the environment: it locates stack.env, so it cannot come from it."""
    return Path(os.environ.get("DFP_HOME", PROJECT_ROOT / ".dfp")).resolve()


def cache_dir() -> Path:
    """Slow-to-build artifacts (lakeFS binary, jars), kept across runs, stack resets and
    clones: DFP_CACHE_DIR, else the user's cache directory (`~/.cache/dfp`), which `.ci/run`,
    `scripts/dev.sh` and the tests of every clone share."""
    if os.environ.get("DFP_CACHE_DIR"):
        return Path(os.environ["DFP_CACHE_DIR"]).resolve()
    user_cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(user_cache) / "dfp").resolve()


def stack_env_file() -> Path:
    """Credentials and endpoints written by `dfp stack up`, read by resources in local mode."""
    return dfp_home() / "stack.env"


def read_env_file(path: Path) -> dict[str, str]:
    """A KEY=VALUE file as a dict (python-dotenv; a missing file is empty)."""
    if not path.exists():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


class SettingsError(ValueError):
    """A variable holds a value dfp cannot use; the message names the variable and value."""


class DfpSettings(BaseSettings):
    """Every setting dfp's code reads, named as its environment variable (case-insensitive).

    Build it with `load_settings()` (or the cached `get_settings()`), which picks the
    env-file source by DFP_ENV and turns validation errors into `SettingsError`s.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_file_encoding="utf-8")

    dfp_env: str = "local"
    # lakeFS (the keys are secrets: resources get them as dg.EnvVar, never as values)
    lakefs_endpoint: str | None = None
    lakefs_access_key_id: str | None = None
    lakefs_secret_access_key: SecretStr | None = None
    lakefs_repository: str = DEFAULT_REPOSITORY
    # Engines and stores
    dfp_dbt_target: str = "duckdb"
    # Where dfp's Spark sessions run: local[2] in the driver, or a standalone cluster's
    # spark://host:port (`dfp stack up` with DFP_STACK_SERVICES=...,spark writes it to stack.env).
    dfp_spark_master: str = DEFAULT_SPARK_MASTER
    dfp_feast_online: str = "sqlite"
    dfp_feast_offline: str = "duckdb"
    dfp_feast_home: str | None = None
    dfp_redis_url: SecretStr | None = None
    dfp_iceberg_catalog_uri: str | None = None
    # dfp's data Postgres (per-branch staging schemas): a libpq URL with its password, so a
    # secret (resources get dg.EnvVar). `dfp stack up` with postgres writes it to stack.env.
    dfp_postgres_url: SecretStr | None = None
    # Change data capture of the application table app.comments: its database (libpq DSN
    # with a password) and, when Kafka carries Debezium's topic, its bootstrap servers (none:
    # the embedded reader uses Postgres logical replication directly).
    dfp_cdc_dsn: SecretStr | None = None
    dfp_kafka_bootstrap_servers: str | None = None
    mlflow_tracking_uri: str | None = None
    # Kept raw: a bad floor fails the run that needs it, not the code location (f1_floor()).
    dfp_f1_floor: str = DEFAULT_F1_FLOOR
    dfp_dagster_url: str = "http://127.0.0.1:3000"
    # The browser-facing lakeFS UI for links in materializations (lakefs_ui_url()).
    dfp_lakefs_ui_url: str | None = None
    # How a run executes its steps when its run config does not say (see executor()).
    dfp_executor: str | None = None

    @field_validator("dfp_env")
    @classmethod
    def _known_env(cls, env: str) -> str:
        if env not in ENVIRONMENTS:
            raise ValueError(f"DFP_ENV={env!r} is not one of {ENVIRONMENTS}")
        return env

    @field_validator("dfp_dbt_target")
    @classmethod
    def _known_target(cls, target: str) -> str:
        if target not in DBT_TARGETS:
            raise ValueError(f"DFP_DBT_TARGET={target!r} is not one of {DBT_TARGETS}")
        return target

    @field_validator("dfp_spark_master")
    @classmethod
    def _known_master(cls, master: str) -> str:
        if not _SPARK_MASTER.fullmatch(master):
            raise ValueError(
                f"DFP_SPARK_MASTER={master!r} is neither local[N] nor spark://host:port"
            )
        return master

    @field_validator("dfp_feast_online")
    @classmethod
    def _known_online(cls, online: str) -> str:
        if online not in ONLINE_STORES:
            raise ValueError(f"DFP_FEAST_ONLINE={online!r} is not one of sqlite, redis")
        return online

    @field_validator("dfp_executor")
    @classmethod
    def _known_executor(cls, executor: str | None) -> str | None:
        if executor is not None and executor not in EXECUTORS:
            raise ValueError(f"DFP_EXECUTOR={executor!r} is not one of {EXECUTORS}")
        return executor

    @field_validator("dfp_lakefs_ui_url")
    @classmethod
    def _http_ui_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"DFP_LAKEFS_UI_URL={url!r} is not an http(s) URL")
        return url

    @field_validator("dfp_feast_offline")
    @classmethod
    def _known_offline(cls, engine: str) -> str:
        if engine not in OFFLINE_ENGINES:
            raise ValueError(f"DFP_FEAST_OFFLINE={engine!r} is not one of {OFFLINE_ENGINES}")
        return engine

    @property
    def is_local(self) -> bool:
        return self.dfp_env == "local"

    # -- values with local-mode defaults (compose / k8s must set them; None when unset) ----
    def iceberg_catalog_uri(self) -> str | None:
        if self.dfp_iceberg_catalog_uri or not self.is_local:
            return self.dfp_iceberg_catalog_uri
        return f"sqlite:///{dfp_home() / 'iceberg' / 'catalog.db'}"

    def tracking_uri(self) -> str | None:
        if self.mlflow_tracking_uri or not self.is_local:
            return self.mlflow_tracking_uri
        return f"sqlite:///{dfp_home() / 'mlflow' / 'mlflow.db'}"

    def feast_home(self) -> str | None:
        if self.dfp_feast_home or not self.is_local:
            return self.dfp_feast_home
        return str(dfp_home() / "feast")

    def lakefs_ui_url(self) -> str | None:
        """Base URL of lakeFS's web UI as a browser reaches it: DFP_LAKEFS_UI_URL, else the
        lakeFS endpoint without `/api/v1` (right locally; on compose / k8s the endpoint is a
        host name only the containers resolve, so set DFP_LAKEFS_UI_URL there). None when
        neither is set."""
        from dfp.lake.links import ui_base

        url = self.dfp_lakefs_ui_url or self.lakefs_endpoint
        return ui_base(url) if url else None

    def executor(self) -> str:
        """The default step executor of every job: DFP_EXECUTOR, else "in_process" locally
        (a 2-core laptop pays ~3 s of process start-up per step under multiprocess, and the
        graph is mostly a chain) and "multiprocess" on compose / k8s (a run's pod has the
        cores to run independent steps side by side). A run config's `execution` wins."""
        if self.dfp_executor:
            return self.dfp_executor
        return "in_process" if self.is_local else "multiprocess"

    def f1_floor(self) -> float:
        """DFP_F1_FLOOR as a number in [0, 1]; SettingsError naming the value otherwise."""
        raw = self.dfp_f1_floor
        try:
            floor = float(raw)
        except ValueError:
            floor = -1.0
        if not 0.0 <= floor <= 1.0:
            raise SettingsError(f"DFP_F1_FLOOR={raw!r} is not a number in [0, 1]")
        return floor


def _env_name() -> str:
    return os.environ.get("DFP_ENV", "local")


def load_settings(**overrides: Any) -> DfpSettings:
    """Read the settings now: the environment, then (local mode only) stack.env."""
    env_file = stack_env_file() if _env_name() == "local" else None
    try:
        return DfpSettings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            cause = (error.get("ctx") or {}).get("error")
            messages.append(str(cause) if cause else f"{error['loc']}: {error['msg']}")
        raise SettingsError("; ".join(messages)) from None


@functools.cache
def get_settings() -> DfpSettings:
    """The process's settings, read once (`reload_settings()` reads again)."""
    return load_settings()


def reload_settings() -> DfpSettings:
    """Forget the cached settings and read them again (after the environment changed)."""
    get_settings.cache_clear()
    return get_settings()


def stack_environment() -> dict[str, str]:
    """The variables a process started by a local launcher (`dfp dev`, a test fixture, a
    benchmark script) needs from stack.env: those not already in the environment. Empty
    outside local mode. The launcher passes them to its child; nothing here sets them."""
    if _env_name() != "local":
        return {}
    return {k: v for k, v in read_env_file(stack_env_file()).items() if k not in os.environ}


@dataclass(frozen=True)
class LakeFSSettings:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    repository: str = DEFAULT_REPOSITORY

    @classmethod
    def from_env(cls) -> LakeFSSettings:
        """From a fresh read of the settings (environment, then stack.env in local mode)."""
        return cls.from_settings(load_settings())

    @classmethod
    def from_settings(cls, settings: DfpSettings) -> LakeFSSettings:
        secret = settings.lakefs_secret_access_key
        values = {
            "LAKEFS_ENDPOINT": settings.lakefs_endpoint,
            "LAKEFS_ACCESS_KEY_ID": settings.lakefs_access_key_id,
            "LAKEFS_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else None,
        }
        missing = [name for name in LAKEFS_REQUIRED if not values[name]]
        if missing:
            raise RuntimeError(
                f"lakeFS is not configured: {', '.join(missing)} unset. "
                "Run `dfp stack up` (local) or set them in the environment."
            )
        return cls(
            endpoint=values["LAKEFS_ENDPOINT"] or "",
            access_key_id=values["LAKEFS_ACCESS_KEY_ID"] or "",
            secret_access_key=values["LAKEFS_SECRET_ACCESS_KEY"] or "",
            repository=settings.lakefs_repository,
        )


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set variables for a subprocess (it inherits os.environ, e.g. dbt's), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

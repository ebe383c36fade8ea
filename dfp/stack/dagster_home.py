"""Prepare DAGSTER_HOME: the repo's dagster.yaml (SQLite) or the Postgres variant."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dfp import settings

POSTGRES_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def instance_config_source() -> Path:
    """Postgres storage when DAGSTER_PG_HOST is set (all of POSTGRES_ENV then required)."""
    if os.environ.get("DAGSTER_PG_HOST"):
        missing = [k for k in POSTGRES_ENV if not os.environ.get(k)]
        if missing:
            raise RuntimeError(f"DAGSTER_PG_HOST is set but {', '.join(missing)} are not")
        os.environ.setdefault("DAGSTER_PG_PORT", "5432")
        return settings.PROJECT_ROOT / "deploy" / "dagster" / "dagster-postgres.yaml"
    return settings.PROJECT_ROOT / "dagster.yaml"


def prepare_dagster_home() -> Path:
    """Set DAGSTER_HOME (default DFP_HOME/dagster_home) and install the instance config."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dfp_home() / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(instance_config_source(), home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home

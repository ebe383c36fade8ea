"""Running the toxic-comment dbt project (dbt/toxic_comments) for given schemas (no Dagster).

The project reads `<staging_schema>.text_comments` and builds `<production_schema>.table_clean`;
both schemas are dbt vars, so a write-audit-publish run can build into a schema of its own that
is swapped in for the branch at publish. The connection is dfp's data Postgres
(DFP_POSTGRES_URL): `postgres_env` turns the URL into the DFP_TOXIC_PG_* variables the project's
profiles.yml reads (dbt cannot read a URL), set for dbt's process only.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dfp.settings import PROJECT_ROOT, environ

if TYPE_CHECKING:
    from dfp.dbt_inprocess import DbtRun

PROJECT_DIR = PROJECT_ROOT / "dbt" / "toxic_comments"
# Unquoted Postgres identifiers (63 bytes at most); what the staging schemas are named like.
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(name: str, what: str = "schema") -> str:
    if not _SCHEMA.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a plain Postgres identifier "
            "(lower-case letters, digits, underscores; at most 63)"
        )
    return name


def dbt_vars(
    staging_schema: str, production_schema: str, staging_table: str = "text_comments"
) -> dict[str, str]:
    """The `--vars` of a build reading `staging_schema` into `production_schema`."""
    return {
        "staging_schema": check_schema_name(staging_schema, "staging schema"),
        "staging_table": check_schema_name(staging_table, "staging table"),
        "production_schema": check_schema_name(production_schema, "production schema"),
    }


def run_manifest(variables: Mapping[str, str], database: str):
    """The prepared project's parsed manifest with the relations of `variables` (dbt_vars):
    the staging source and table_clean in this run's schemas of `database` (the profile's
    DFP_TOXIC_PG_DBNAME), for dfp.dbt_inprocess. None when the project has no prepared
    manifest (dbt then parses with the vars)."""
    from dfp.dbt_inprocess import parsed_manifest, retarget

    manifest = parsed_manifest(PROJECT_DIR / "target")
    if manifest is None:
        return None
    return retarget(
        manifest,
        source_schemas={"staging": variables["staging_schema"]},
        source_identifiers={"staging.text_comments": variables["staging_table"]},
        model_schema=variables["production_schema"],
        database=database,
    )


def warm_up() -> None:
    """dbt's first-invocation costs, paid here before a build needs them (the dbt step's warm
    worker, or the warm run launcher's server, which forks runs after it): the prepared
    manifest loaded and cached, and a `dbt ls` on it (no database), which builds dbt's config
    schemas, imports its task modules and fills `inspect`'s module table, each once per
    process. In a forked run they cost 3-5 s of every CDC batch's dbt step."""
    from dfp.dbt_inprocess import invoke, project_args

    variables = dbt_vars("staging__main", "production__main")
    with tempfile.TemporaryDirectory(prefix="dfp-toxic-dbt-warm-") as scratch:
        args = ["ls", "--vars", json.dumps(variables), *project_args(PROJECT_DIR, Path(scratch))]
        invoke(args, run_manifest(variables, database="dfp"))


def postgres_env(url: str) -> dict[str, str]:
    """The profile's DFP_TOXIC_PG_* variables for a libpq or SQLAlchemy URL
    (postgresql://…, postgresql+psycopg2://…)."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        raise ValueError(f"not a Postgres URL: {parsed.render_as_string(hide_password=True)}")
    return {
        "DFP_TOXIC_PG_HOST": parsed.host or "127.0.0.1",
        "DFP_TOXIC_PG_PORT": str(parsed.port or 5432),
        "DFP_TOXIC_PG_USER": parsed.username or "",
        "DFP_TOXIC_PG_PASSWORD": parsed.password or "",
        "DFP_TOXIC_PG_DBNAME": parsed.database or "",
    }


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    resource_type: str  # model | test
    name: str
    status: str  # success | error | fail | warn | pass | skipped
    failures: int | None  # failing rows of a test
    message: str | None
    seconds: float


@dataclass(frozen=True)
class BuildResult:
    success: bool
    nodes: list[NodeResult]
    seconds: float
    error: str | None = None  # dbt itself failed (e.g. it could not connect)

    def failed(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in ("error", "fail")]

    def node(self, name: str) -> NodeResult:
        matches = [n for n in self.nodes if n.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} dbt nodes named {name!r}")
        return matches[0]


def run_dbt(
    staging_schema: str,
    production_schema: str,
    *,
    command: str = "build",
    env: Mapping[str, str] | None = None,
    staging_table: str = "text_comments",
    target_path: Path | None = None,
    extra_args: Sequence[str] = (),
) -> BuildResult:
    """`dbt <command>` in this process through dbt's Python API; `build` (the default) makes
    table_clean, then runs its tests (a failing test fails the build).

    Its target and log files go to `target_path` (default: a temporary directory, removed
    after), never the project's target/, whose manifest the Dagster definitions are built from
    and which runs for other branches would overwrite at the same time. dbt is not safe to run
    twice at once in one process."""

    with tempfile.TemporaryDirectory(prefix="dfp-toxic-dbt-") as scratch:
        return _invoke(
            command,
            dbt_vars(staging_schema, production_schema, staging_table),
            env or {},
            target_path or Path(scratch) / "target",
            Path(scratch) / "logs",
            extra_args,
        )


def _invoke(
    command: str,
    variables: Mapping[str, str],
    env: Mapping[str, str],
    target_path: Path,
    log_path: Path,
    extra_args: Sequence[str],
) -> BuildResult:
    args = [
        command,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
        "--vars",
        json.dumps(dict(variables)),
        "--target-path",
        str(target_path),
        "--log-path",
        str(log_path),
        *extra_args,
    ]
    start = time.perf_counter()
    outcome = _run(args, variables, env)
    seconds = time.perf_counter() - start
    nodes = []
    for r in getattr(outcome.result, "results", None) or []:
        nodes.append(
            NodeResult(
                unique_id=r.node.unique_id,
                resource_type=str(r.node.resource_type),
                name=r.node.name,
                status=str(r.status),
                failures=r.failures,
                message=r.message,
                seconds=r.execution_time,
            )
        )
    return BuildResult(
        success=outcome.success, nodes=nodes, seconds=seconds, error=outcome.exception
    )


def build_on_prepared_manifest(
    args: Sequence[str], variables: Mapping[str, str], env: Mapping[str, str]
) -> DbtRun:
    """`dbt <args>` (a build of `variables`' schemas, with the connection `env`) in this
    process on the prepared manifest, retargeted; picklable, so a step may run it in dfp's
    warm worker (dfp.warm_imports)."""
    return _run(list(args), variables, env).portable()


def _run(args: list[str], variables: Mapping[str, str], env: Mapping[str, str]) -> DbtRun:
    """`dbt <args>` in this process with `env` set; a build on the prepared manifest,
    retargeted at `variables`' schemas: no parse (which the per-run vars defeat)."""
    from dfp.dbt_inprocess import invoke

    with environ(**env):
        database = os.environ.get("DFP_TOXIC_PG_DBNAME", "")
        build = bool(args) and args[0] == "build"
        manifest = run_manifest(variables, database) if database and build else None
        return invoke(args, manifest)

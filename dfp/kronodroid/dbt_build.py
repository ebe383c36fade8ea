"""The Kronodroid dbt build in this process on the prepared manifest (no Dagster).

`dbt/kronodroid` names the run's lakeFS refs in `--vars`, which change every run: a `dbt`
process would re-parse the whole project each time (the vars defeat partial parsing). The
profile's vars (the plugin's refs) are rendered when dbt starts, from this
run's `--vars`; the only values the vars rendered into the parsed manifest are the models'
`location_root`s, which `run_manifest` points at this run's branch. The manifest is parsed
for DuckDB (`dfp dbt prepare`); on Spark the models' configs differ (materialization,
schema names), so a Spark build parses as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfp.lake.iceberg import ICEBERG_PREFIX
from dfp.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from dfp.dbt_inprocess import DbtRun

PROJECT_DIR = PROJECT_ROOT / "dbt" / "kronodroid"
#: The engine the prepared manifest is parsed for (the profile's default target).
PREPARED_ENGINE = "duckdb"


def location_root(repository: str, lakefs_branch: str, schema: str) -> str:
    """A model folder's `location_root` as dbt_project.yml renders it for these vars."""
    return f"s3://{repository}/{lakefs_branch}/{ICEBERG_PREFIX}/{schema}"


def run_manifest(repository: str, lakefs_branch: str) -> Any | None:
    """The prepared DuckDB manifest with every model's `location_root` on `lakefs_branch` of
    `repository`; None when there is none (dbt then parses)."""
    from dfp.dbt_inprocess import parsed_manifest, retarget

    manifest = parsed_manifest(PROJECT_DIR / "target", adapter_type=PREPARED_ENGINE)
    if manifest is None:
        return None
    return retarget(
        manifest,
        source_schemas={},
        model_configs=lambda node: {
            "location_root": location_root(repository, lakefs_branch, node.config.schema)
        },
    )


def build(
    args: Sequence[str],
    *,
    repository: str,
    lakefs_branch: str,
    env: Mapping[str, str],
    target_path: Path,
) -> DbtRun:
    """`dbt <args>` (a DuckDB build whose `--vars` name `lakefs_branch`) in this process with
    `env` set, on the prepared manifest; its artifacts go to `target_path`. dbt is not safe to
    run twice at once in one process."""
    from dfp.dbt_inprocess import invoke_prepared, project_args

    return invoke_prepared(
        [*args, *project_args(PROJECT_DIR, target_path)],
        env,
        lambda: run_manifest(repository, lakefs_branch),
    )

"""dbt run in this process (dbt-core's `dbtRunner`) on an already parsed project (no Dagster).

A `dbt` subprocess costs a whole interpreter start, dbt's imports and a parse each time; when
the schemas a project reads and writes are `--vars` that change every run (dfp's run schemas),
dbt's partial parsing is defeated and every build parses the project again. For a small,
frequent build (a CDC batch) that is most of its time. Here the manifest dbt wrote when the
project was prepared (`target/partial_parse.msgpack`, dbt's own serialized manifest) is loaded
once, the relations the vars named at parse time are pointed at this run's schemas, and dbt
builds with it without parsing. The build's events are returned as dbt's JSON log records,
the form dbt prints with `--log-format json`.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfp.settings import environ

PARTIAL_PARSE_FILE = "partial_parse.msgpack"

log = logging.getLogger(__name__)


@dataclass
class DbtRun:
    """A finished in-process invocation: its success, its events and dbt's own exception."""

    args: list[str]
    success: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    exception: str | None = None  # dbt's own exception, as text
    result: Any = None  # dbt's (for build: its RunExecutionResult)

    def portable(self) -> DbtRun:
        """Without dbt's objects: picklable, e.g. back from another process."""
        return DbtRun(self.args, self.success, self.events, self.exception)

    def error_messages(self) -> list[str]:
        return [e["info"]["msg"] for e in self.events if e["info"].get("level") == "error"]


@functools.lru_cache(maxsize=4)
def _load(path: Path, mtime_ns: int) -> Any:
    from dbt.contracts.graph.manifest import Manifest
    from dbt.version import __version__

    manifest = Manifest.from_msgpack(path.read_bytes())
    if manifest.metadata.dbt_version != __version__:
        raise ValueError(
            f"{path} was written by dbt {manifest.metadata.dbt_version}, this is {__version__}: "
            "run `dfp dbt prepare`"
        )
    return manifest


def parsed_manifest(target_dir: Path, adapter_type: str | None = None) -> Any | None:
    """The prepared project's manifest (dbt's `Manifest`), or None when there is none (or
    it is another dbt version's, or was parsed for another adapter than `adapter_type`, whose
    configs may differ): then dbt parses as usual."""
    path = target_dir / PARTIAL_PARSE_FILE
    try:
        manifest = _load(path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        return None
    except Exception as exc:  # another dbt's, or damaged: parsing is always correct
        log.warning("not using %s (dbt parses instead): %s", path, exc)
        return None
    if adapter_type is not None and manifest.metadata.adapter_type != adapter_type:
        log.info(
            "%s was parsed for %s, not %s: dbt parses",
            path,
            manifest.metadata.adapter_type,
            adapter_type,
        )
        return None
    return copy.deepcopy(manifest)


def _quoted(*parts: str) -> str:
    return ".".join(f'"{part}"' for part in parts)


def retarget(
    manifest: Any,
    *,
    source_schemas: Mapping[str, str],
    source_identifiers: Mapping[str, str] | None = None,
    model_schema: str | None = None,
    database: str | None = None,
    model_configs: Callable[[Any], Mapping[str, Any]] | None = None,
) -> Any:
    """Point the relations the project's vars and profile named at parse time at this run's:
    sources by source name (`staging` → schema; `staging.text_comments` → identifier), every
    model into `model_schema`, both in `database` (the profile's, as the run sees it). Tests
    reference their model and follow it. `model_configs(node)`: the config values of a model
    that vars rendered at parse time (e.g. a `location_root` naming a branch), as this run's."""
    identifiers = source_identifiers or {}
    for source in manifest.sources.values():
        schema = source_schemas.get(source.source_name)
        if schema is None:
            continue
        source.database = database or source.database
        source.schema = schema
        source.identifier = identifiers.get(
            f"{source.source_name}.{source.name}", source.identifier
        )
        source.relation_name = _quoted(source.database, source.schema, source.identifier)
    if model_schema is not None:
        for node in manifest.nodes.values():
            if node.resource_type == "model":
                node.database = database or node.database
                node.schema = model_schema
                node.relation_name = _quoted(node.database, model_schema, node.alias)
    if model_configs is not None:
        for node in manifest.nodes.values():
            if node.resource_type == "model":
                for key, value in model_configs(node).items():
                    node.config[key] = value
    return manifest


def project_args(project_dir: Path, target_path: Path) -> list[str]:
    """The arguments of a run of the project in `project_dir` (its profiles.yml beside it)
    whose artifacts and log go to `target_path`, not the project's target/ (whose prepared
    manifest other runs read at the same time)."""
    return [
        *("--project-dir", str(project_dir), "--profiles-dir", str(project_dir)),
        *("--target-path", str(target_path), "--log-path", str(target_path)),
    ]


def invoke_prepared(
    args: Sequence[str], env: Mapping[str, str], manifest: Callable[[], Any | None]
) -> DbtRun:
    """`dbt <args>` in this process with `env` set, on `manifest()` (made with `env` set: a
    prepared, retargeted manifest, or None to parse); picklable (dbt's objects left out)."""
    with environ(**env):
        return invoke(args, manifest()).portable()


def invoke(args: Sequence[str], manifest: Any | None = None) -> DbtRun:
    """`dbt <args>` in this process, with `manifest` (parsed) if given; dbt's console log is
    silent, every event is kept (the caller shows them)."""
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_dict

    events: list[dict[str, Any]] = []
    full = [*args, "--log-format", "json", "--log-level", "none", "--log-level-file", "none"]
    result = dbtRunner(
        manifest=manifest, callbacks=[lambda e: events.append(msg_to_dict(e))]
    ).invoke(full)
    exception = (
        f"{type(result.exception).__name__}: {result.exception}" if result.exception else None
    )
    return DbtRun(full, bool(result.success), events, exception, result.result)

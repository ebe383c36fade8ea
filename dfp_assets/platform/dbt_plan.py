"""dbt models and tests as Dagster assets and checks, without dagster-dbt while loading.

dagster-dbt (with dbt-core under it) costs a fresh process about twice `import dagster`, and
every code server, run worker and step worker pays it while loading the definitions. So the
asset specs dagster-dbt derives from a manifest are computed once, when the manifest is
prepared, and kept beside it as a plan (`target/dagster_asset_plan.json`, tied to the
manifest by its sha256). Loading reads the plan; only the step that runs dbt imports
dagster-dbt, and it runs dbt through dagster-dbt's resource and event stream as before.

The plan is what `@dbt_assets` produces with the domain's translator (keys, deps, groups,
code versions, kinds, descriptions, column schemas, and the tests as checks), so the graph,
the staleness and the checks are the same; tests/unit/test_dbt_plan.py compares them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from dfp.settings import environ
from dfp.warm_imports import WARM_IMPORTS_TAG

PLAN_NAME = "dagster_asset_plan.json"
#: Bump when the plan's layout changes: older plans are rebuilt.
PLAN_FORMAT = 1
# dagster-dbt's per-spec Python objects (the whole manifest, the translator, the project): the
# step rebuilds them from the manifest; they are neither JSON nor needed for the graph.
_RUNTIME_ONLY = {
    "dagster_dbt/manifest",
    "dagster_dbt/dagster_dbt_translator",
    "dagster_dbt/project",
}

log = logging.getLogger(__name__)


class StalePlan(Exception):
    """The plan is missing, of another format, or was made from another manifest."""


@dataclass(frozen=True)
class DbtAssetPlan:
    specs: list[dg.AssetSpec]
    check_specs: list[dg.AssetCheckSpec]


def plan_path(manifest_path: Path) -> Path:
    return manifest_path.with_name(PLAN_NAME)


def _manifest_sha256(manifest_path: Path) -> str:
    return hashlib.sha256(manifest_path.read_bytes()).hexdigest()


def _dump_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in _RUNTIME_ONLY:
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = {"raw": value}
        else:
            out[key] = {"serdes": dg.serialize_value(value)}  # metadata values are serdes
    return out


def _load_metadata(dumped: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: entry["raw"] if "raw" in entry else dg.deserialize_value(entry["serdes"])
        for key, entry in dumped.items()
    }


def _keys(deps: Sequence[Any]) -> list[list[str]]:
    return [list(dep.asset_key.path) for dep in deps]


def write_plan(manifest_path: Path, translator: Any, project: Any = None) -> Path:
    """Derive the specs with dagster-dbt (`@dbt_assets`, `translator`) and write the plan."""
    from dagster_dbt import dbt_assets  # the slow import: only when a manifest is new

    raw = manifest_path.read_bytes()
    # The parsed manifest, not its path: dagster-dbt caches a path's manifest per process.
    manifest = json.loads(raw)

    @dbt_assets(manifest=manifest, project=project, dagster_dbt_translator=translator)
    def derived():  # never run: only its specs are read
        raise NotImplementedError

    plan = {
        "format": PLAN_FORMAT,
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "specs": [
            {
                "key": list(spec.key.path),
                "deps": _keys(spec.deps),
                "description": spec.description,
                "metadata": _dump_metadata(spec.metadata),
                "group_name": spec.group_name,
                "code_version": spec.code_version,
                "owners": list(spec.owners),
                "tags": dict(spec.tags),
            }
            for spec in derived.specs
        ],
        "checks": [
            {
                "name": check.name,
                "asset_key": list(check.asset_key.path),
                "description": check.description,
                "blocking": check.blocking,
                "additional_deps": _keys(check.additional_deps),
                "metadata": _dump_metadata(check.metadata),
            }
            for check in derived.check_specs
        ],
    }
    path = plan_path(manifest_path)
    # Several processes may load at once: each writes its own file and renames it into place.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=PLAN_NAME, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(plan, handle)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from other users (an image's runtime)
    os.replace(tmp, path)
    return path


def load_plan(manifest_path: Path, partitions_def: dg.PartitionsDefinition | None) -> DbtAssetPlan:
    """The plan's specs (partitioned by `partitions_def`); StalePlan when it must be rebuilt."""
    path = plan_path(manifest_path)
    try:
        plan = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise StalePlan(f"{path}: {exc}") from exc
    if plan.get("format") != PLAN_FORMAT:
        raise StalePlan(f"{path}: format {plan.get('format')}, expected {PLAN_FORMAT}")
    if plan.get("manifest_sha256") != _manifest_sha256(manifest_path):
        raise StalePlan(f"{path} was made from another {manifest_path.name}")
    specs = [
        dg.AssetSpec(
            key=dg.AssetKey(spec["key"]),
            deps=[dg.AssetKey(dep) for dep in spec["deps"]],
            description=spec["description"],
            metadata=_load_metadata(spec["metadata"]),
            group_name=spec["group_name"],
            code_version=spec["code_version"],
            owners=spec["owners"],
            tags=spec["tags"],
            skippable=True,  # a subset of the models may run
            partitions_def=partitions_def,
        )
        for spec in plan["specs"]
    ]
    checks = [
        dg.AssetCheckSpec(
            name=check["name"],
            asset=dg.AssetKey(check["asset_key"]),
            description=check["description"],
            blocking=check["blocking"],
            additional_deps=[dg.AssetKey(dep) for dep in check["additional_deps"]],
            metadata=_load_metadata(check["metadata"]),
        )
        for check in plan["checks"]
    ]
    return DbtAssetPlan(specs=specs, check_specs=checks)


def ensure_plan(
    manifest_path: Path,
    partitions_def: dg.PartitionsDefinition | None,
    make_translator: Callable[[], Any],
    project: Callable[[], Any] | None = None,
) -> DbtAssetPlan:
    """The plan for this manifest, written first (with dagster-dbt) when it is stale."""
    try:
        return load_plan(manifest_path, partitions_def)
    except StalePlan as stale:
        log.info("rebuilding the dbt asset plan: %s", stale)
        write_plan(manifest_path, make_translator(), project() if project else None)
        return load_plan(manifest_path, partitions_def)


def dbt_multi_asset(
    name: str, plan: DbtAssetPlan, *, warm_imports: str | None = None
) -> Callable[..., dg.AssetsDefinition]:
    """`dg.multi_asset` of a plan's models, with its tests as checks; subsettable, since a
    job or the UI may select some models (dbt_events runs just those). `warm_imports`: the
    `dfp/warm_imports` tag value (modules, comma-separated) of a step that runs dbt in a
    run's warm worker, and the group it passes to `run_warm` (dfp.warm_imports)."""
    return dg.multi_asset(
        name=name,
        specs=plan.specs,
        check_specs=plan.check_specs,
        can_subset=True,
        op_tags={WARM_IMPORTS_TAG: warm_imports} if warm_imports else None,
    )


def dbt_selection(
    context: dg.AssetExecutionContext, manifest: Mapping[str, Any], translator: Callable[[], Any]
) -> tuple[list[str], str | None]:
    """The `--select` arguments and DBT_INDIRECT_SELECTION for the models and tests this step
    selected: none when it selected all of them (a whole build; no dagster-dbt needed), else
    dagster-dbt's own for the subset (`translator()` makes its translator)."""
    assets = context.assets_def
    if set(context.selected_asset_keys) == set(assets.keys) and set(
        context.selected_asset_check_keys
    ) == set(assets.check_keys):
        return [], None
    from dfp_assets.platform.dagster_private import dbt_subset_selection

    return dbt_subset_selection(
        context, manifest, translator(), os.getenv("DBT_INDIRECT_SELECTION")
    )


def step_results(
    context: dg.AssetExecutionContext, events: Iterable[Any]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetObservation]:
    """dagster-dbt's events (op form) as the results of this multi-asset's specs; a test dbt
    ran by its indirect selection but this step did not select is logged, not reported."""
    selected_checks = context.selected_asset_check_keys
    for event in events:
        if isinstance(event, dg.AssetMaterialization):
            yield dg.MaterializeResult(asset_key=event.asset_key, metadata=event.metadata)
        elif isinstance(event, dg.AssetCheckEvaluation):
            key = dg.AssetCheckKey(event.asset_key, event.check_name)
            if key in selected_checks:
                yield dg.AssetCheckResult(
                    asset_key=event.asset_key,
                    check_name=event.check_name,
                    passed=event.passed,
                    severity=event.severity,
                    metadata=event.metadata,
                )
            else:
                context.log.info(f"dbt test {key.to_user_string()} ran outside the selection")
        else:
            yield event


def dbt_events(
    context: dg.AssetExecutionContext,
    invoke: Callable[..., Any],
    args: Sequence[str],
    *,
    manifest: Mapping[str, Any],
    translator: Any,
    env: Mapping[str, str] | None = None,
    **cli_kwargs: Any,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetObservation]:
    """Run `dbt <args>` for the models and tests this step selected, as asset events.

    `invoke` is dagster-dbt's `DbtCliResource.cli`; `manifest` the parsed manifest the
    plan was made from. The selection (`--select`, indirect test
    selection) is dagster-dbt's own for the step's subset; its model and test events come
    back as the results of this multi-asset's specs."""
    selection, indirect = dbt_selection(context, manifest, lambda: translator)
    variables = {**(env or {}), **({"DBT_INDIRECT_SELECTION": indirect} if indirect else {})}
    with environ(**variables):  # dagster-dbt copies os.environ into the subprocess here
        invocation = invoke(
            [*args, *selection],
            manifest=manifest,
            dagster_dbt_translator=translator,
            **cli_kwargs,
        )
    yield from step_results(context, invocation.stream())


def dbt_inprocess_events(
    context: dg.AssetExecutionContext,
    build: Callable[[list[str], Mapping[str, str]], Any],
    args: Sequence[str],
    *,
    manifest: Mapping[str, Any],
    translator: Any,
    target_path: Path,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult | dg.AssetObservation]:
    """`dbt <args>` in this process for the models and tests this step selected, as asset
    events: `build(args, env)` runs it (a `dfp.dbt_inprocess.DbtRun`, its artifacts under
    `target_path`) with the selection's variables in `env`. A failed run raises after its
    events, so its failed tests show, like dagster-dbt's stream of a failed `dbt` process."""
    from dfp_assets.platform.dbt_cli import dbt_run_events, dbt_run_failure

    selection, indirect = dbt_selection(context, manifest, lambda: translator)
    run = build([*args, *selection], {"DBT_INDIRECT_SELECTION": indirect} if indirect else {})
    yield from step_results(context, dbt_run_events(run, manifest, translator, target_path))
    failure = dbt_run_failure(run)
    if failure:
        raise dg.Failure(description=failure)

"""kronodroid_raw: the Kronodroid releases as parquet on the run's lakeFS branch, and the
blocking checks that audit them before anything is published."""

import dataclasses
import hashlib
import tempfile
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa

from dfp.kronodroid.load import RAW_OBJECTS_PREFIX, load_to_lakefs, read_releases
from dfp.kronodroid.quality import (
    CHECK_DESCRIPTIONS,
    CheckOutcome,
    RawQualityThresholds,
    audit,
    to_pandas,
)
from dfp.kronodroid.schema import LABEL_COLUMN, KronodroidInputError
from dfp.kronodroid.sources import (
    KAGGLE_DATASET,
    SourceConfig,
    collect_files,
    download_landing,
    read_tables,
)
from dfp.lake import memo
from dfp_assets.platform.partitions import blocking_check, branch_asset
from dfp_assets.platform.step import BranchStep, branch_step, reuse_allowed
from dfp_resources.lakefs import LakeFSResource

RAW_ASSET = dg.AssetKey("kronodroid_raw")
#: Bump when parsing or loading changes: memos of older loads are then not reused.
RAW_CODE_VERSION = "kronodroid_raw/1"


def source_files_version(files: dict) -> str:
    """The content version of a load: every source file's release, name and sha256."""
    digests = []
    for release, paths in sorted(files.items(), key=lambda item: str(item[0])):
        for path in sorted(paths, key=lambda p: p.name):
            sha = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(block)
            digests.append((str(release), path.name, sha.hexdigest()))
    return memo.input_version(RAW_CODE_VERSION, digests)


class KronodroidRawConfig(dg.Config):
    source: str = "auto"  # auto | kaggle | local | synthetic | lakefs (see SourceConfig)
    local_dir: str | None = None
    kaggle_dataset: str = KAGGLE_DATASET
    synthetic_scale: float = 1.0
    synthetic_seed: int = 0


def _input_failure(exc: KronodroidInputError) -> dg.Failure:
    meta = {"file": exc.file}
    if exc.column is not None:
        meta["column"] = exc.column
    if exc.row is not None:
        meta["row"] = exc.row
    if exc.value is not None:
        meta["value"] = repr(exc.value)
    return dg.Failure(description=f"bad Kronodroid input: {exc}", metadata=meta)


@branch_asset(
    group="raw",
    kinds={"dlt", "lakefs", "parquet"},
    code_version=RAW_CODE_VERSION,
    description="Kronodroid real-device and emulator releases as parquet under "
    "raw/kronodroid/<release>/ on the partition's lakeFS branch (loaded by dlt).",
)
def kronodroid_raw(
    context: dg.AssetExecutionContext, config: KronodroidRawConfig, lakefs: LakeFSResource
) -> dg.MaterializeResult:
    try:
        source_config = SourceConfig.model_validate(config.model_dump())
    except ValueError as exc:
        raise dg.Failure(description=f"bad kronodroid_raw config: {exc}") from exc
    started = time.monotonic()
    with (
        branch_step(context, lakefs) as step,
        tempfile.TemporaryDirectory(prefix="dfp-kronodroid-") as work,
    ):
        try:
            if source_config.source == "lakefs":
                # The files pushed to the partition's branch (the run branch starts there).
                landing = download_landing(step.client, step.run_branch, Path(work) / "landing")
                source_config = source_config.model_copy(
                    update={"source": "local", "local_dir": str(landing)}
                )
            source, files = collect_files(source_config, Path(work))
            if config.source == "lakefs":
                source = "lakefs"
            # The same files loaded into exactly these raw objects: keep them (a reload would
            # write the same rows under new dlt file names, and rebuild everything downstream).
            if step.lookup(source_files_version(files), exact_prefix=RAW_OBJECTS_PREFIX):
                commit = step.commit(f"kronodroid_raw: {source} files", {"source": source})
                return _raw_result(step, step.reused.metadata, source, commit, started)
            tables = read_tables(files)
        except KronodroidInputError as exc:
            raise _input_failure(exc) from exc
        context.log.info(
            f"read {sum(t.num_rows for t in tables.values()):,} rows from {source} "
            f"({', '.join(p.name for ps in files.values() for p in ps)}) "
            f"in {time.monotonic() - started:.1f}s"
        )

        # The raw dataset is replaced as a whole: a release absent from this load must not
        # linger from an earlier one.
        step.client.delete_prefix(step.run_branch, RAW_OBJECTS_PREFIX)
        result = load_to_lakefs(
            tables,
            repository=step.client.repository,
            branch=step.run_branch,
            credentials=lakefs.dlt_credentials(),
        )
        malware_share = {
            str(r): round(float(t.column(LABEL_COLUMN).to_numpy().mean()), 4)
            for r, t in tables.items()
        }
        union_schema = pa.unify_schemas([t.schema for t in tables.values()])
        reported = {
            "dagster/row_count": sum(result.rows.values()),
            **{f"rows_{r}": n for r, n in result.rows.items()},
            **{f"malware_share_{r}": s for r, s in malware_share.items()},
            "dlt_load_id": result.load_id,
            "columns": [[f.name, str(f.type)] for f in union_schema],
        }
        step.record(memo.listing(step.client, step.run_branch, RAW_OBJECTS_PREFIX), reported)
        commit = step.commit(
            f"kronodroid_raw: {source} load {result.load_id}",
            {
                "source": source,
                "dlt_load_id": result.load_id,
                **{f"rows.{r}": str(n) for r, n in result.rows.items()},
            },
            allow_empty=False,
        )
        return _raw_result(step, reported, source, commit, started)


def _raw_result(
    step: BranchStep, reported: dict, source: str, commit: str, started: float
) -> dg.MaterializeResult:
    shown = {k: v for k, v in reported.items() if k != "columns"}
    return dg.MaterializeResult(
        metadata=step.reported(
            {
                **shown,
                "source": source,
                "lakefs_commit": commit,
                "lakefs_run_branch": step.run_branch,
                "seconds": round(time.monotonic() - started, 2),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name, kind) for name, kind in reported["columns"]]
                ),
            },
            wrote=RAW_OBJECTS_PREFIX,
        )
    )


class RawQualityConfig(dg.Config):
    min_rows_per_release: int = 1000
    malware_share_min: float = 0.02
    malware_share_max: float = 0.98
    max_conflicting_sha256_share: float = 0.001


#: Bump when the raw audit changes: outcomes of older audits are then not reused.
RAW_CHECKS_CODE_VERSION = "kronodroid_raw_checks/1"
#: The memo name of the raw checks' outcomes (`_dfp/memo/<name>.json`).
RAW_CHECKS_MEMO = "kronodroid_raw_checks"

RAW_CHECK_SPECS = [
    blocking_check(name, RAW_ASSET.to_user_string(), description)
    for name, description in CHECK_DESCRIPTIONS.items()
]


def _failures_markdown(failures: list[dict]) -> str:
    header = "| release | file | row | column | check | value |\n|---|---|---|---|---|---|\n"
    return header + "".join(
        f"| {f['release']} | {f['file']} | {f['row']} | {f['column']} | {f['check']} | "
        f"{str(f['value']).replace('|', '/')} |\n"
        for f in failures
    )


@dg.multi_asset_check(specs=RAW_CHECK_SPECS, name="kronodroid_raw_checks")
def kronodroid_raw_checks(
    context: dg.AssetCheckExecutionContext, config: RawQualityConfig, lakefs: LakeFSResource
):
    """Read what landed on the run branch back from lakeFS and audit it; the same raw objects
    audited with the same thresholds by this code before give that audit's outcomes (a memo
    beside them, committed with them: a branch made from main with no data change)."""
    branch = lakefs.run_branch(context)
    thresholds = RawQualityThresholds.model_validate(config.model_dump())
    with lakefs.client() as client:
        commit = client.head(branch)
        objects = memo.listing(client, commit, RAW_OBJECTS_PREFIX)
        version = memo.input_version(RAW_CHECKS_CODE_VERSION, thresholds.model_dump(), objects)
        found = (
            memo.lookup(client, commit, RAW_CHECKS_MEMO, version, exact_prefix=RAW_OBJECTS_PREFIX)
            if reuse_allowed(context)
            else None
        )
        if found is not None:
            outcomes = [CheckOutcome(**o) for o in found.metadata["outcomes"]]
            context.log.info(f"raw objects audited by run {found.run_id}: its outcomes reused")
        else:
            frames = {r: to_pandas(t) for r, t in read_releases(client, commit).items()}
            outcomes = audit(frames, thresholds)
            if all(o.passed for o in outcomes):
                # Only a passing audit is remembered: a failing run publishes nothing anyway.
                memo.record(
                    client,
                    branch,
                    RAW_CHECKS_MEMO,
                    version,
                    objects,
                    {"outcomes": [dataclasses.asdict(o) for o in outcomes]},
                    context.run.run_id,
                )
                client.commit(
                    branch, "kronodroid_raw_checks memo", {"dagster_run_id": context.run.run_id}
                )
    for outcome in outcomes:
        metadata: dict = {"lakefs_commit": commit}
        if found is not None:
            metadata["reused_from_run"] = found.run_id
        for key, value in outcome.metadata.items():
            if key == "failures":
                if value:
                    metadata["failures"] = dg.MetadataValue.md(_failures_markdown(value))
            elif isinstance(value, list):
                metadata[key] = dg.MetadataValue.json(value)
            else:
                metadata[key] = value
        yield dg.AssetCheckResult(
            asset_key=RAW_ASSET,
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
        )

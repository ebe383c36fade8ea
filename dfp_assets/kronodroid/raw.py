"""kronodroid_raw: the Kronodroid releases as parquet on the run's lakeFS branch, and the
blocking checks that audit them before anything is published."""

import hashlib
import tempfile
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa

from dfp.kronodroid.load import RAW_OBJECTS_PREFIX, load_to_lakefs, read_releases
from dfp.kronodroid.parse import KronodroidInputError
from dfp.kronodroid.quality import CHECK_DESCRIPTIONS, RawQualityThresholds, audit, to_pandas
from dfp.kronodroid.schema import LABEL_COLUMN
from dfp.kronodroid.sources import (
    KAGGLE_DATASET,
    SourceConfig,
    collect_files,
    download_landing,
    read_tables,
)
from dfp.lake import memo
from dfp_assets.platform import reuse
from dfp_assets.platform.partitions import lakefs_branch_partitions
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


@dg.asset(
    partitions_def=lakefs_branch_partitions,
    group_name="raw",
    kinds={"dlt", "lakefs", "parquet"},
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
    branch = lakefs.run_branch(context)
    with tempfile.TemporaryDirectory(prefix="dfp-kronodroid-") as work:
        try:
            if source_config.source == "lakefs":
                # The files pushed to the partition's branch (the run branch starts there).
                with lakefs.client() as client:
                    landing = download_landing(client, branch, Path(work) / "landing")
                source_config = source_config.model_copy(
                    update={"source": "local", "local_dir": str(landing)}
                )
            source, files = collect_files(source_config, Path(work))
            if config.source == "lakefs":
                source = "lakefs"
            inputs = source_files_version(files)
            with lakefs.client() as client:
                reused = reuse.lookup(
                    context,
                    client,
                    branch,
                    "kronodroid_raw",
                    inputs,
                    exact_prefix=RAW_OBJECTS_PREFIX,
                )
                if reused is not None:
                    return _reused_raw(context, client, branch, source, reused, started)
            tables = read_tables(files)
        except KronodroidInputError as exc:
            raise _input_failure(exc) from exc
        context.log.info(
            f"read {sum(t.num_rows for t in tables.values()):,} rows from {source} "
            f"({', '.join(p.name for ps in files.values() for p in ps)}) "
            f"in {time.monotonic() - started:.1f}s"
        )

    with lakefs.client() as client:
        # The raw dataset is replaced as a whole: a release absent from this load must not
        # linger from an earlier one.
        client.delete_prefix(branch, RAW_OBJECTS_PREFIX)
        result = load_to_lakefs(
            tables,
            repository=client.repository,
            branch=branch,
            credentials=lakefs.dlt_credentials(),
        )
        rows = sum(result.rows.values())
        malware_share = {
            str(r): round(float(t.column(LABEL_COLUMN).to_numpy().mean()), 4)
            for r, t in tables.items()
        }
        union_schema = pa.unify_schemas([t.schema for t in tables.values()])
        reported = {
            "dagster/row_count": rows,
            **{f"rows_{r}": n for r, n in result.rows.items()},
            **{f"malware_share_{r}": s for r, s in malware_share.items()},
            "dlt_load_id": result.load_id,
            "columns": [[f.name, str(f.type)] for f in union_schema],
        }
        memo.record(
            client,
            branch,
            "kronodroid_raw",
            inputs,
            memo.listing(client, branch, RAW_OBJECTS_PREFIX),
            reported,
            context.run.run_id,
        )
        commit = client.commit(
            branch,
            f"kronodroid_raw: {source} load {result.load_id}",
            {
                "dagster_run_id": context.run.run_id,
                "asset": "kronodroid_raw",
                "source": source,
                "dlt_load_id": result.load_id,
                **{f"rows.{r}": str(n) for r, n in result.rows.items()},
            },
        )
    return _raw_result(reported, source, commit, branch, started)


def _raw_result(
    reported: dict, source: str, commit: str, branch: str, started: float, **extra
) -> dg.MaterializeResult:
    shown = {k: v for k, v in reported.items() if k != "columns"}
    return dg.MaterializeResult(
        metadata={
            **shown,
            "source": source,
            "lakefs_commit": commit,
            "lakefs_run_branch": branch,
            "seconds": round(time.monotonic() - started, 2),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, kind) for name, kind in reported["columns"]]
            ),
            **extra,
        }
    )


def _reused_raw(
    context: dg.AssetExecutionContext,
    client,
    branch: str,
    source: str,
    reused: memo.Memo,
    started: float,
) -> dg.MaterializeResult:
    """The same source files were loaded into exactly the raw objects on the branch: keep
    them (a reload would write the same rows under new dlt file names, and every table
    downstream would be rebuilt)."""
    context.log.info(f"source files unchanged since run {reused.run_id}: raw objects kept")
    commit = client.commit(
        branch,
        f"kronodroid_raw: {source} files unchanged since run {reused.run_id[:8]}",
        {
            "dagster_run_id": context.run.run_id,
            "asset": "kronodroid_raw",
            "source": source,
            "reused_from_run": reused.run_id,
        },
        allow_empty=True,  # the commit is the lineage anchor of this materialization
    )
    return _raw_result(
        reused.metadata, source, commit, branch, started, reused_from_run=reused.run_id
    )


class RawQualityConfig(dg.Config):
    min_rows_per_release: int = 1000
    malware_share_min: float = 0.02
    malware_share_max: float = 0.98
    max_conflicting_sha256_share: float = 0.001


RAW_CHECK_SPECS = [
    dg.AssetCheckSpec(name, asset=RAW_ASSET, blocking=True, description=description)
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
    """Read what landed on the run branch back from lakeFS and audit it."""
    branch = lakefs.run_branch(context)
    with lakefs.client() as client:
        commit = client.head(branch)
        frames = {r: to_pandas(t) for r, t in read_releases(client, commit).items()}
    thresholds = RawQualityThresholds.model_validate(config.model_dump())
    for outcome in audit(frames, thresholds):
        metadata: dict = {"lakefs_commit": commit}
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

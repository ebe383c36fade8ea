"""comments_raw: the toxic comments as a Delta table on the run's lakeFS branch, and the
blocking checks that audit it (read back from the branch) before anything is published."""

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from dfp.lake import memo
from dfp.settings import PROJECT_ROOT, load_settings
from dfp.toxic import synthetic
from dfp.toxic.cdc import change_reader, offsets_metadata, ref_offsets
from dfp.toxic.load import (
    RAW_OBJECTS_PREFIX,
    TABLE_PREFIX,
    apply_changes,
    load_comments,
    read_table,
)
from dfp.toxic.quality import CHECK_DESCRIPTIONS, RawQualityThresholds, audit
from dfp.toxic.sources import (
    DEFAULT_MAX_COMMENT_BYTES,
    ToxicInputError,
    discover_files,
    read_comments_files,
)
from dfp_assets.platform.partitions import blocking_check, branch_asset
from dfp_assets.platform.step import BranchStep, branch_step
from dfp_resources.lakefs import LakeFSResource

RAW_ASSET = dg.AssetKey("comments_raw")
#: Bump when reading, validation or loading changes: memos of older loads are then not reused.
RAW_CODE_VERSION = "comments_raw/1"
SHARED_SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "toxic_comments"


class CommentsRawConfig(dg.Config):
    source: Literal["local", "shared", "synthetic", "cdc"] = Field(
        "shared",
        description="local = the files at local_dir; shared = ../shared/data/toxic_comments "
        "(the 10,000-comment sample); synthetic = generated comments of the sample's shape; "
        "cdc = apply the changes of app.comments after the offsets the branch last published",
    )
    local_dir: str | None = Field(
        None, description="a CSV (.csv, .csv.gz) or parquet file, or a directory of them"
    )
    synthetic_scale: float = Field(1.0, gt=0, le=1.0, description="1.0 = 160,000 comments")
    synthetic_seed: int = 0
    max_comment_bytes: int = Field(DEFAULT_MAX_COMMENT_BYTES, gt=0)


def source_files_version(files: list[Path], config: CommentsRawConfig) -> str:
    """The content version of a load: every file's name and sha256, and the validation limit."""
    digests = []
    for path in sorted(files, key=lambda p: p.name):
        sha = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digests.append((path.name, sha.hexdigest()))
    return memo.input_version(RAW_CODE_VERSION, config.max_comment_bytes, digests)


def collect_files(config: CommentsRawConfig, workdir: Path) -> list[Path]:
    if config.source == "synthetic":
        rows = synthetic.comment_count(config.synthetic_scale)
        path = workdir / f"synthetic_{rows}_seed{config.synthetic_seed}.csv"
        return [synthetic.write_csv(path, rows, config.synthetic_seed)]
    if config.source == "shared":
        if not SHARED_SAMPLE.is_dir():
            raise ToxicInputError(str(SHARED_SAMPLE), "the shared sample is not present")
        return discover_files(SHARED_SAMPLE)
    if not config.local_dir:
        raise ToxicInputError("<config>", "source 'local' needs local_dir")
    return discover_files(Path(config.local_dir))


def _input_failure(exc: ToxicInputError) -> dg.Failure:
    meta: dict = {"file": exc.file}
    if exc.column is not None:
        meta["column"] = exc.column
    if exc.row is not None:
        meta["row"] = exc.row
    if exc.value is not None:
        meta["value"] = repr(exc.value)
    return dg.Failure(description=f"bad toxic-comment input: {exc}", metadata=meta)


@branch_asset(
    group="toxic_raw",
    kinds={"dlt", "lakefs", "deltalake"},
    code_version=RAW_CODE_VERSION,
    description="Labelled comments (id, comment_text, labels, source, ingested_at) as a Delta "
    f"table at {TABLE_PREFIX} on the partition's lakeFS branch (loaded by dlt).",
)
def comments_raw(
    context: dg.AssetExecutionContext, config: CommentsRawConfig, lakefs: LakeFSResource
) -> dg.MaterializeResult:
    started = time.monotonic()
    if config.source == "cdc":
        with branch_step(context, lakefs) as step:
            return _apply_captured_changes(context, step, config, started)
    with (
        branch_step(context, lakefs) as step,
        tempfile.TemporaryDirectory(prefix="dfp-toxic-") as work,
    ):
        try:
            files = collect_files(config, Path(work))
            # The same files loaded into exactly these raw objects: keep them (a reload would
            # write the same rows under new file names and rebuild everything downstream).
            if step.lookup(source_files_version(files, config), exact_prefix=RAW_OBJECTS_PREFIX):
                commit = step.commit(f"comments_raw: {config.source} files")
                return _result(step, step.reused.metadata, commit, started)
            comments = read_comments_files(
                files, source=config.source, max_comment_bytes=config.max_comment_bytes
            )
        except ToxicInputError as exc:
            raise _input_failure(exc) from exc
        table = comments.to_arrow()
        read_seconds = time.monotonic() - started
        context.log.info(
            f"read {comments.rows_read:,} rows from {', '.join(comments.files)} in "
            f"{read_seconds:.1f}s ({comments.duplicates_collapsed:,} exact duplicates collapsed)"
        )
        # A full load replaces the table as a whole: a fresh Delta table, no files of the old.
        step.client.delete_prefix(step.run_branch, RAW_OBJECTS_PREFIX)
        result = load_comments(
            table,
            repository=step.client.repository,
            branch=step.run_branch,
            credentials=lakefs.dlt_credentials(),
        )
        reported = {
            "dagster/row_count": result.rows,
            "rows_read": comments.rows_read,
            "duplicates_collapsed": comments.duplicates_collapsed,
            "toxic_share": round(sum(comments.labels) / max(len(comments.labels), 1), 4),
            "files": ", ".join(comments.files),
            "dlt_load_id": result.load_id,
            "load_seconds": round(result.seconds, 2),
            "rows_per_second": round(result.rows / max(result.seconds, 1e-9)),
            "columns": [[f.name, str(f.type)] for f in table.schema],
        }
        step.record(memo.listing(step.client, step.run_branch, RAW_OBJECTS_PREFIX), reported)
        commit = step.commit(
            f"comments_raw: {config.source} load {result.load_id}",
            {"source": config.source, "dlt_load_id": result.load_id, "rows": str(result.rows)},
            allow_empty=False,
        )
        return _result(step, reported, commit, started)


def _apply_captured_changes(
    context: dg.AssetExecutionContext,
    step: BranchStep,
    config: CommentsRawConfig,
    started: float,
) -> dg.MaterializeResult:
    """Exactly-once CDC: the offsets to read after are the ones the branch's newest publish
    recorded (the run branch starts at that head), and the offsets read up to are recorded
    with this step's lineage commit, so they reach the branch only with the publish. A failed
    run publishes nothing: the next run reads the same changes again."""
    settings = load_settings()
    if settings.dfp_cdc_dsn is None:
        raise dg.Failure(
            description="comments_raw source 'cdc' needs DFP_CDC_DSN (the database of "
            "app.comments; `dfp stack up` with postgres writes it to stack.env)"
        )
    after = ref_offsets(step.client, step.run_branch)
    reader = change_reader(
        settings.dfp_kafka_bootstrap_servers, settings.dfp_cdc_dsn.get_secret_value()
    )
    changes, until = reader.read_batch(after)
    try:
        applied = apply_changes(
            step.client, step.run_branch, changes, max_comment_bytes=config.max_comment_bytes
        )
    except ToxicInputError as exc:
        raise _input_failure(exc) from exc
    context.log.info(f"applied {len(changes)} changes after {after or 'the beginning'}: {applied}")
    table = read_table(step.client, step.run_branch)
    reported = {
        "dagster/row_count": table.num_rows,
        "cdc_changes": len(changes),
        "cdc_after": dg.MetadataValue.json(after),
        "cdc_until": dg.MetadataValue.json(until),
        "upserts": applied.upserts,
        "deletes": applied.deletes,
        "inserted": applied.inserted,
        "updated": applied.updated,
        "deleted": applied.deleted,
        "delta_version": applied.version,
        "columns": [[f.name, str(f.type)] for f in table.schema],
    }
    commit = step.commit(
        f"comments_raw: {len(changes)} changes of app.comments",
        {**offsets_metadata(until), "cdc_changes": str(len(changes))},
        allow_empty=True,
    )
    return _result(step, reported, commit, started)


def _result(step: BranchStep, reported: dict, commit: str, started: float) -> dg.MaterializeResult:
    shown = {k: v for k, v in reported.items() if k != "columns"}
    return dg.MaterializeResult(
        metadata=step.reported(
            {
                **shown,
                "lakefs_commit": commit,
                "lakefs_run_branch": step.run_branch,
                "seconds": round(time.monotonic() - started, 2),
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name, kind) for name, kind in reported["columns"]]
                ),
            }
        )
    )


class CommentsRawQualityConfig(dg.Config):
    min_rows: int = 1000
    max_duplicate_text_share: float = 0.01


RAW_CHECK_SPECS = [
    blocking_check(name, RAW_ASSET.to_user_string(), description)
    for name, description in CHECK_DESCRIPTIONS.items()
]


def _failures_markdown(failures: list[dict]) -> str:
    header = "| id | column | value |\n|---|---|---|\n"
    return header + "".join(
        f"| {f['id']} | {f['column']} | {str(f['value']).replace('|', '/')} |\n" for f in failures
    )


@dg.multi_asset_check(specs=RAW_CHECK_SPECS, name="comments_raw_checks")
def comments_raw_checks(
    context: dg.AssetCheckExecutionContext,
    config: CommentsRawQualityConfig,
    lakefs: LakeFSResource,
):
    """Read the Delta table back from the run branch's head commit and audit it."""
    branch = lakefs.run_branch(context)
    with lakefs.client() as client:
        commit = client.head(branch)
        table = read_table(client, commit)
    limits = RawQualityThresholds.model_validate(config.model_dump())
    for outcome in audit(table, limits):
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

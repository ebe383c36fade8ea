"""Benchmark: comments_raw at full synthetic size (160,000 comments) on lakeFS.

Phases, each timed: generate the synthetic CSV, read + validate it (`dfp.toxic.sources`), the
dlt load into the Delta table on a branch (rows/s), read back with deltalake, one batch of
changes applied by Delta MERGE (`apply_changes`), and the lakeFS commit.

Needs lakeFS: the local stack (`dfp stack up`), or `--own-stack` to start a private one in a
temporary DFP_HOME (stopped at the end). Uses a throwaway repository, deleted at the end.
Run: `uv run python benchmarks/toxic_raw.py --scale 1.0`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from dfp.settings import read_env_file, stack_environment
from dfp.stack.benchmarking import print_figures, throwaway_client


@contextlib.contextmanager
def _own_stack() -> Iterator[None]:
    from dfp.stack.services import LocalStack

    home = Path(tempfile.mkdtemp(prefix="dfp-bench-toxic-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update({"DFP_HOME": str(home), "DFP_LAKEFS_PORT": str(port)})
    stack = LocalStack(home)
    stack.up(log=lambda msg: None)
    os.environ.update(read_env_file(stack.env_file))
    try:
        yield
    finally:
        stack.down(log=lambda msg: None)
        shutil.rmtree(home, ignore_errors=True)


def run(scale: float, seed: int, changes: int) -> dict[str, object]:
    from dfp.toxic import synthetic
    from dfp.toxic.load import apply_changes, load_comments, read_comments
    from dfp.toxic.records import CommentChange
    from dfp.toxic.sources import read_source

    figures: dict[str, object] = {}
    repo = f"bench-toxic-{uuid.uuid4().hex[:8]}"
    client = throwaway_client(repo)
    try:
        with tempfile.TemporaryDirectory(prefix="dfp-bench-toxic-") as work:
            rows = synthetic.comment_count(scale)
            t = time.perf_counter()
            path = synthetic.write_csv(Path(work) / "synthetic.csv", rows, seed)
            figures["generate_s"] = round(time.perf_counter() - t, 2)
            figures["csv_mb"] = round(path.stat().st_size / 1e6, 1)

            t = time.perf_counter()
            comments = read_source(path, source="synthetic")
            read_s = time.perf_counter() - t
            figures["read_validate_s"] = round(read_s, 2)
            figures["read_validate_rows_per_s"] = round(rows / read_s)

            table = comments.to_arrow()
            s = client.settings
            t = time.perf_counter()
            load_comments(
                table,
                repository=repo,
                branch="main",
                credentials={
                    "aws_access_key_id": s.access_key_id,
                    "aws_secret_access_key": s.secret_access_key,
                    "endpoint_url": s.endpoint,
                    "region_name": "us-east-1",
                    "s3_url_style": "path",
                },
            )
            load_s = time.perf_counter() - t
            figures["rows"] = table.num_rows
            figures["dlt_delta_load_s"] = round(load_s, 2)
            figures["dlt_delta_load_rows_per_s"] = round(table.num_rows / load_s)
            figures["raw_end_to_end_rows_per_s"] = round(table.num_rows / (load_s + read_s))
            t = time.perf_counter()
            client.commit("main", "bench: full load", {})
            figures["lakefs_commit_s"] = round(time.perf_counter() - t, 2)

            t = time.perf_counter()
            back = read_comments(client, "main")
            figures["deltalake_read_s"] = round(time.perf_counter() - t, 2)
            assert back.num_rows == table.num_rows

            ids = table.column("id").to_pylist()
            now = datetime.now(UTC)
            batch = [
                CommentChange("upsert", ids[i], f"edited {i}", i % 2, now, f"b:0:{i}")
                if i % 5
                else CommentChange("delete", ids[i], None, None, now, f"b:0:{i}")
                for i in range(changes)
            ]
            t = time.perf_counter()
            applied = apply_changes(client, "main", batch)
            figures[f"apply_{changes}_changes_s"] = round(time.perf_counter() - t, 2)
            assert applied.deleted == changes // 5 and applied.updated == changes - changes // 5
    finally:
        client.repositories.delete_repository(repo, force=True)
        client.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 160,000 comments")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--own-stack", action="store_true", help="start a private lakeFS")
    args = parser.parse_args(argv)
    with _own_stack() if args.own_stack else contextlib.nullcontext():
        os.environ.update(stack_environment())
        print_figures(run(args.scale, args.seed, args.changes))


if __name__ == "__main__":
    main()

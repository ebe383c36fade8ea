"""Benchmark: `dbt build` of dbt/toxic_comments (table_clean and its tests) and the Great
Expectations staging suite, on N synthetic staging rows generated in SQL.

Rows have 8-257 tokens (about 130 on average, the shared sample's order of magnitude) and 1%
are malformed (label 2), so the filters have something to drop. Figures per size: seconds to
generate, to build (dbt wall, and the model and the tests alone), and to read and validate
staging with the GE suite.
Starts a private Postgres through the stack manager (or uses `--url`).
Run: `uv run python benchmarks/toxic_dbt.py [--rows 10000 160000] [--no-ge]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from dfp.stack.benchmarking import print_figures
from dfp.stack.services import free_port

GENERATE = """
insert into {schema}.text_comments (id, labels, input_ids, attention_mask)
select gen_random_uuid(),
       (case when i % 100 = 0 then 2 else i % 2 end)::smallint,
       array(select (1000 + (i * 31 + j * 17) % 29000)::int from generate_series(1, n) as j),
       array_fill(1::smallint, array[n])
from (select i, 8 + (i * 7919) % 250 as n from generate_series(1, :rows) as i) as g
"""


def _start_postgres(home: Path):
    from dfp import settings
    from dfp.stack.services import LocalStack

    os.environ["DFP_POSTGRES_PORT"] = str(free_port())
    os.environ["DFP_STACK_SERVICES"] = "lakefs,postgres"
    stack = LocalStack(home / "home")
    stack.postgres.start()
    password = settings.read_env_file(stack.env_file)["DFP_POSTGRES_PASSWORD"]
    url = f"postgresql+psycopg2://dfp:{password}@127.0.0.1:{stack.postgres_port}/dagster"
    return stack, url


def run_size(url: str, rows: int, ge: bool) -> dict[str, object]:
    from dfp.toxic.dbt_build import postgres_env, run_dbt

    suffix = uuid.uuid4().hex[:8]
    staging, production = f"staging__bench{suffix}", f"production__bench{suffix}"
    engine = sa.create_engine(url)
    figures: dict[str, object] = {}
    try:
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.text(f"create schema {staging}"))
            conn.execute(
                sa.text(
                    f"create table {staging}.text_comments (id uuid, labels smallint, "
                    "input_ids integer[], attention_mask smallint[])"
                )
            )
            conn.execute(sa.text(GENERATE.format(schema=staging)), {"rows": rows})
            conn.execute(sa.text(f"analyze {staging}.text_comments"))
        figures[f"{rows}: generate_s"] = round(time.perf_counter() - start, 2)

        result = run_dbt(staging, production, env=postgres_env(url))
        if not result.success:
            raise SystemExit(f"dbt build failed: {result.failed() or result.error}")
        model = result.node("table_clean")
        tests = [n for n in result.nodes if n.resource_type == "test"]
        with engine.connect() as conn:
            kept = conn.execute(sa.text(f"select count(*) from {production}.table_clean")).scalar()
        figures[f"{rows}: dbt_build_wall_s"] = round(result.seconds, 2)
        figures[f"{rows}: table_clean_model_s"] = round(model.seconds, 2)
        figures[f"{rows}: dbt_tests_s (sum of {len(tests)})"] = round(
            sum(n.seconds for n in tests), 2
        )
        figures[f"{rows}: table_clean_rows"] = int(kept or 0)

        if ge:
            start = time.perf_counter()
            import great_expectations  # noqa: F401  (its import is timed on its own)

            figures[f"{rows}: ge_import_s"] = round(time.perf_counter() - start, 2)
            from dfp.toxic.expectations import read_staging, validate_staging

            start = time.perf_counter()
            frame = read_staging(url, staging)
            read_s = time.perf_counter() - start
            suite = validate_staging(frame)
            figures[f"{rows}: ge_read_s"] = round(read_s, 2)
            figures[f"{rows}: ge_validate_s"] = round(time.perf_counter() - start - read_s, 2)
            figures[f"{rows}: ge_failures"] = ",".join(r.name for r in suite.failures())
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"drop schema if exists {staging} cascade"))
            conn.execute(sa.text(f"drop schema if exists {production} cascade"))
        engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 160_000])
    parser.add_argument("--url", default=None, help="use this Postgres (SQLAlchemy URL)")
    parser.add_argument("--no-ge", action="store_true", help="skip the Great Expectations suite")
    args = parser.parse_args()

    stack, home = None, None
    url = args.url
    if url is None:
        # Postgres runs as user 'postgres': its state must sit under world-traversable dirs.
        home = Path(tempfile.mkdtemp(prefix="dfp-pg-bench-", dir="/tmp"))
        home.chmod(0o755)
        stack, url = _start_postgres(home)
    try:
        figures: dict[str, object] = {}
        for rows in args.rows:
            figures.update(run_size(url, rows, ge=not args.no_ge))
        print_figures(figures)
    finally:
        if stack is not None:
            stack.postgres.stop()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

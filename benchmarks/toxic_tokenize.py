"""Benchmark: WordPiece tokenization rows/s, Arrow engine and Spark engine (mapInPandas).

Reads the shared 10k sample (../shared/data/toxic_comments/text_comment_1.csv, or --csv), ids
from content hashes, max length 512, no padding. Arrow: `tokenize_batch` in this process
(median of --repeat runs, vocabulary already loaded). Spark: a local[N] session, the same
function through `mapInPandas`; timed over a full `count()` of the tokenized frame after one
warm-up pass (Python workers started, tokenizer cached in them), session start excluded.
`uv run python benchmarks/toxic_tokenize.py [--master local[2]] [--repeat 3]`
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from dfp.toxic.records import comment_id
from dfp.toxic.tokenize import tokenize_batch, tokenize_spark

DEFAULT_CSV = (
    Path(__file__).resolve().parents[1].parent / "shared/data/toxic_comments/text_comment_1.csv"
)


def load(csv: Path) -> pa.Table:
    table = pacsv.read_csv(csv, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    ids = [comment_id(t) for t in table["comment_text"].to_pylist()]
    return table.append_column("id", pa.array(ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = load(args.csv)
    rows = table.num_rows
    tokens = sum(map(len, tokenize_batch(table)["input_ids"].to_pylist()))  # also warms up
    arrow = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        tokenize_batch(table)
        arrow.append(time.perf_counter() - start)
    arrow_s = statistics.median(arrow)

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(args.master)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    df = spark.createDataFrame(table.to_pandas()).cache()
    df.count()
    out = tokenize_spark(df)
    out.count()  # warm-up
    runs = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        assert out.count() == rows
        runs.append(time.perf_counter() - start)
    spark_s = statistics.median(runs)
    spark.stop()
    print(f"rows: {rows}, tokens: {tokens} (max length 512, no padding)")
    print(f"arrow: {arrow_s:.2f} s, {rows / arrow_s:,.0f} rows/s")
    print(f"spark ({args.master}, mapInPandas): {spark_s:.2f} s, {rows / spark_s:,.0f} rows/s")


if __name__ == "__main__":
    main()

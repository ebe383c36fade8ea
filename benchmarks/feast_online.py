"""Benchmark: Feast at Kronodroid size (142,128 apps x 476 features) with dfp's vector views.

1. builds a full-size synthetic mart (`marts.mart_app_features` columns, int64, some nulls)
   directly with numpy and times `dfp.kronodroid.features.mart_to_feast_table` on it;
2. writes the Feast table to a LOCAL parquet file: this benchmark measures Feast, not
   lakeFS, so the offline source is a local path (the integration tests cover reading the
   branch's table through lakeFS's S3 gateway);
3. per online store (Redis, SQLite), in a fresh child process so peak RSS is per store:
   `apply_definitions` + one full `dfp.kronodroid.features.materialize` (3 views x 142k entities);
   prints seconds, entities/s and the child's peak RSS; then 1,000 single-entity
   `online_features` calls (random apps, after 20 warm-up calls) and their p50 / p99 latency.
   `--engine feast` times Feast's own `FeatureStore.materialize` (file/Dask offline store)
   instead of dfp's default arrow path (pyarrow read + Feast's online-store writes).

Targets (printed, not asserted): full materialization <= 60 s, read p99 <= 10 ms.

Redis: a private `redis-server` (Debian's, started through `dfp.stack` on a free port under a
temporary DFP_HOME and stopped at the end), unless `--redis-url` names one. No lakeFS needed.
Run: `uv run python benchmarks/feast_online.py [--rows 142128] [--stores redis,sqlite]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FULL_ROWS = {"real_device": 78_137, "emulator": 63_991}
TARGET_MATERIALIZE_S = 60.0
TARGET_P99_MS = 10.0
READS = 1_000
WARMUP = 20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_mart(rows: int, seed: int = 0) -> pa.Table:
    """A mart-shaped table: both captures in Kronodroid's proportions, sparse syscall counts,
    0/1 permission flags, metadata with ~1.5 % nulls, ~3 % null event dates."""
    from dfp.kronodroid.features import FEATURE_GROUPS
    from dfp.kronodroid.schema import sql_feature_columns

    rng = np.random.default_rng(seed)
    n_real = round(rows * FULL_ROWS["real_device"] / sum(FULL_ROWS.values()))
    capture = np.array(["real_device"] * n_real + ["emulator"] * (rows - n_real))
    sha = np.array([f"{x:064x}" for x in rng.integers(0, 2**63, rows, dtype=np.int64)])
    start = date(2008, 1, 1)
    days = rng.integers(0, (date(2020, 12, 31) - start).days, rows)
    dates = np.array([start + timedelta(days=int(d)) for d in days], dtype="datetime64[D]")
    columns: dict[str, pa.Array] = {
        "app_capture_id": pa.array(np.char.add(np.char.add(sha, ":"), capture)),
        "sha256": pa.array(sha),
        "capture": pa.array(capture),
        "event_date": pa.array(dates, pa.date32(), mask=rng.random(rows) < 0.03),
        "label": pa.array(rng.integers(0, 2, rows), pa.int64()),
    }
    groups = {c: g for g, cs in FEATURE_GROUPS.items() for c in cs}
    for column in sql_feature_columns():
        group = groups[column]
        if group == "syscalls":
            active = rng.random(rows) < rng.uniform(0.05, 0.9)
            values = np.where(active, rng.lognormal(3, 2, rows).astype(np.int64), 0)
            columns[column] = pa.array(values, pa.int64())
        elif group == "permissions":
            columns[column] = pa.array(rng.random(rows) < 0.1, pa.bool_()).cast(pa.int64())
        else:
            values = rng.lognormal(8, 3, rows).astype(np.int64)
            columns[column] = pa.array(values, pa.int64(), mask=rng.random(rows) < 0.015)
    return pa.table(columns)


# -- child: one store -----------------------------------------------------------------------
def run_store(kind: str, parquet: Path, work: Path, redis_url: str | None, engine: str) -> dict:
    from dfp.kronodroid import features

    online: features.SqliteOnline | features.RedisOnline
    if kind == "redis":
        online = features.RedisOnline(url=redis_url)
    else:
        online = features.SqliteOnline(directory=work / "online")
    store = features.feature_store(
        f"bench-{kind}",
        repository="bench",
        online=online,
        registry_dir=work / "registry",
        offline_path=str(parquet),
    )
    features.apply_definitions(store)
    keys = pq.read_table(parquet, columns=["sha256", "capture"])
    rows = keys.num_rows

    started = time.perf_counter()
    features.materialize(store, features.EARLIEST_EVENT, datetime.now(UTC), engine=engine)
    materialize_s = time.perf_counter() - started
    rss_after_materialize = _peak_rss_mb()

    rng = np.random.default_rng(1)
    picks = rng.integers(0, rows, WARMUP + READS)
    sha = keys.column("sha256").to_numpy(zero_copy_only=False)
    cap = keys.column("capture").to_numpy(zero_copy_only=False)
    latencies = []
    for n, i in enumerate(picks):
        row = {"sha256": str(sha[i]), "capture": str(cap[i])}
        t0 = time.perf_counter()
        answer = features.online_features(store, [row])
        elapsed = time.perf_counter() - t0
        if answer["syscalls"][0] is None:
            raise RuntimeError(f"{kind}: no features for {row}")
        if n >= WARMUP:
            latencies.append(elapsed * 1000)

    # one exact check against the offline table
    check = pq.read_table(parquet).slice(int(picks[0]), 1).to_pylist()[0]
    answer = features.online_features(
        store, [{"sha256": check["sha256"], "capture": check["capture"]}]
    )
    for group in features.FEATURE_GROUPS:
        got = np.asarray(answer[group][0], np.float32)
        if not np.array_equal(got, np.asarray(check[group], np.float32)):
            raise RuntimeError(f"{kind}: {group} differs from the offline table")

    size_mb = None
    if kind == "sqlite":
        size_mb = round(Path(store.config.online_store.path).stat().st_size / 2**20)
    return {
        "store": kind,
        "engine": engine,
        "rows": rows,
        "materialize_s": round(materialize_s, 1),
        "entities_per_s": round(rows / materialize_s),
        "peak_rss_mb_materialize": round(rss_after_materialize),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "max_ms": round(max(latencies), 3),
        "sqlite_file_mb": size_mb,
        "registry_version": features.registry_version(store),
    }


# -- parent ---------------------------------------------------------------------------------
def _start_redis(home: Path):
    from dfp import settings
    from dfp.stack.services import LocalStack, free_port, redis_url

    os.environ["DFP_REDIS_PORT"] = str(free_port())
    stack = LocalStack(home)
    stack.redis.start()
    password = settings.read_env_file(stack.env_file)["DFP_REDIS_PASSWORD"]
    return stack, redis_url(stack.redis_port, password)


def _redis_used_mb(url: str) -> float:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return round(client.info("memory")["used_memory"] / 2**20)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=sum(FULL_ROWS.values()))
    parser.add_argument("--stores", default="redis,sqlite")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of a private one")
    parser.add_argument("--engine", default="arrow", choices=["arrow", "feast"])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--parquet", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = run_store(
            args.child, Path(args.parquet), Path(args.work), args.redis_url, args.engine
        )
        print("RESULT " + json.dumps(result), flush=True)
        return

    from dfp.kronodroid.features import mart_to_feast_table

    with tempfile.TemporaryDirectory(prefix="dfp-feast-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        mart = synthetic_mart(args.rows)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = mart_to_feast_table(mart)
        convert_s = time.perf_counter() - t0
        del mart
        parquet = work / "app_features.parquet"
        pq.write_table(table, parquet, compression="zstd")
        print(
            f"synthetic mart: {args.rows:,} rows x 476 features built in {build_s:.1f}s; "
            f"mart_to_feast_table {convert_s:.1f}s; "
            f"parquet {parquet.stat().st_size / 2**20:.0f} MB",
            flush=True,
        )
        del table

        redis_stack = None
        redis_url = args.redis_url
        results = []
        try:
            for kind in [s.strip() for s in args.stores.split(",") if s.strip()]:
                if kind == "redis" and redis_url is None:
                    redis_stack, redis_url = _start_redis(work / "redis-home")
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    kind,
                    "--parquet",
                    str(parquet),
                    "--work",
                    str(work / kind),
                    "--engine",
                    args.engine,
                ]
                if kind == "redis":
                    cmd += ["--redis-url", redis_url]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{kind} failed:\n{proc.stderr[-4000:]}")
                line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
                result = json.loads(line.removeprefix("RESULT "))
                result["child_wall_s"] = round(time.perf_counter() - t0, 1)
                if kind == "redis":
                    result["redis_used_mb"] = _redis_used_mb(redis_url)
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            if redis_stack is not None:
                redis_stack.redis.stop()

    print()
    print(
        f"{'store':<8} {'materialize':>12} {'entities/s':>11} {'peak RSS':>9} "
        f"{'p50':>8} {'p99':>8}   engine {args.engine}; targets: materialize <= "
        f"{TARGET_MATERIALIZE_S:.0f} s, "
        f"p99 <= {TARGET_P99_MS:.0f} ms"
    )
    for r in results:
        ok_m = "ok" if r["materialize_s"] <= TARGET_MATERIALIZE_S else "MISSED"
        ok_p = "ok" if r["p99_ms"] <= TARGET_P99_MS else "MISSED"
        print(
            f"{r['store']:<8} {r['materialize_s']:>10.1f} s {r['entities_per_s']:>11,} "
            f"{r['peak_rss_mb_materialize']:>6} MB {r['p50_ms']:>5.2f} ms {r['p99_ms']:>5.2f} ms"
            f"   materialize {ok_m}, p99 {ok_p}"
        )


if __name__ == "__main__":
    main()

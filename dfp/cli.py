"""`dfp`: the platform's command line (stack, branches, benchmarks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.group()
def main() -> None:
    """dfp: Kronodroid malware-detection platform on Dagster and lakeFS."""


# -- stack ---------------------------------------------------------------------------------
@main.group()
def stack() -> None:
    """Local services (lakeFS, ...) with state under DFP_HOME (default ./.dfp)."""


def _stack_or_exit():
    from dfp.stack.services import LocalStack

    return LocalStack()


@stack.command("build")
def stack_build() -> None:
    """Build the pinned lakeFS from the Go module proxy into the cache (if missing)."""
    from dfp.stack.services import StackError, ensure_lakefs_binary

    try:
        click.echo(ensure_lakefs_binary())
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@stack.command("jars")
@click.option(
    "--cdc",
    is_flag=True,
    help="Also the change-data-capture jars: Kafka broker, Kafka Connect + Debezium Postgres.",
)
def stack_jars(cdc: bool) -> None:
    """Fetch the Spark jars (Iceberg runtime, S3A, JDBC drivers) into the cache and compile
    dfp's branch FileIO; with --cdc also the pinned CDC jar sets (deploy/cdc-jars)."""
    from dfp.lake.spark import spark_jars
    from dfp.stack.jars import JarError

    def say(msg: str) -> None:
        click.echo(f"[dfp stack] {msg}")

    try:
        for path in spark_jars(log=say):
            click.echo(path)
        if cdc:
            from dfp.stack.cdc_jars import all_cdc_jars

            for name, paths in all_cdc_jars(log=say).items():
                total = sum(p.stat().st_size for p in paths) / 2**20
                say(f"{name}: {len(paths)} jars, {total:.1f} MB, sha1 verified")
                for path in paths:
                    click.echo(path)
    except JarError as exc:
        raise click.ClickException(str(exc)) from exc


@stack.command("up")
def stack_up() -> None:
    """Build (once) and start the local services; create the lakeFS repository."""
    from dfp.stack.services import StackError

    try:
        _stack_or_exit().up()
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    _register_branches()


def _register_branches() -> None:
    """Make every lakeFS branch a `lakefs_branch` partition of the Dagster instance now, so a
    CLI launch (`dagster job execute ... dagster/partition=main`) works before any daemon tick."""
    from dfp.settings import stack_environment

    # The instance this process opens is the one `dagster dev` and the CLI use: same
    # DAGSTER_HOME and, when the stack runs Postgres, the same DAGSTER_PG_* from stack.env.
    os.environ.update(stack_environment())
    added, _ = sync_partitions(_client(), _instance())
    if added:
        click.echo(f"[dfp stack] partitions added to {os.environ['DAGSTER_HOME']}: {added}")


@stack.command("down")
def stack_down() -> None:
    """Stop the services that `dfp stack up` started (only those)."""
    _stack_or_exit().down()


@stack.command("status")
def stack_status() -> None:
    """Show each service, its state and URL. Exit code 1 if any is not running."""
    rows = _stack_or_exit().status()
    click.echo(f"{'SERVICE':<10} {'STATE':<10} {'PID':<8} URL")
    for row in rows:
        click.echo(f"{row['service']:<10} {row['state']:<10} {row['pid']:<8} {row['url']}")
    sys.exit(0 if all(r["state"] == "running" for r in rows) else 1)


# -- branches ------------------------------------------------------------------------------
PARTITIONS_NAME = "lakefs_branch"


def _client():
    from dfp.lake.lakefs_client import LakeFSClient
    from dfp.settings import LakeFSSettings

    try:
        return LakeFSClient(LakeFSSettings.from_env())
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


def _instance():
    from dagster import DagsterInstance

    from dfp.stack.dagster_home import prepare_dagster_home

    prepare_dagster_home()
    return DagsterInstance.get()


def sync_partitions(client, instance) -> tuple[list[str], list[str]]:
    """Make lakefs_branch partitions mirror lakeFS's user branches now (the sensor's job)."""
    from dfp.lake.branches import partition_changes

    to_add, to_remove = partition_changes(
        client.list_branches(), instance.get_dynamic_partitions(PARTITIONS_NAME)
    )
    if to_add:
        instance.add_dynamic_partitions(PARTITIONS_NAME, to_add)
    for name in to_remove:
        instance.delete_dynamic_partition(PARTITIONS_NAME, name)
    return to_add, to_remove


@main.group()
def branch() -> None:
    """lakeFS branches, each a `lakefs_branch` partition of every asset."""


@branch.command("create")
@click.argument("name")
@click.option("--from", "source", default="main", show_default=True, help="source branch/ref")
def branch_create(name: str, source: str) -> None:
    """Create lakeFS branch NAME (zero-copy) and its Dagster partition."""
    from dfp.lake.branches import BranchNameError, validate_user_branch_name
    from dfp.lake.lakefs_client import LakeFSError

    try:
        validate_user_branch_name(name)
        head = _client().create_branch(name, source)
    except (BranchNameError, LakeFSError) as exc:
        raise click.ClickException(str(exc)) from exc
    _instance().add_dynamic_partitions(PARTITIONS_NAME, [name])
    click.echo(f"created branch {name} from {source} at {head[:12]} (partition added)")


@branch.command("delete")
@click.argument("name")
def branch_delete(name: str) -> None:
    """Delete lakeFS branch NAME and its Dagster partition."""
    from dfp.lake.branches import BranchNameError, validate_user_branch_name

    try:
        validate_user_branch_name(name)
    except BranchNameError as exc:
        raise click.ClickException(str(exc)) from exc
    if name == "main":
        raise click.ClickException("refusing to delete the default branch 'main'")
    existed = _client().delete_branch(name)
    instance = _instance()
    if name in instance.get_dynamic_partitions(PARTITIONS_NAME):
        instance.delete_dynamic_partition(PARTITIONS_NAME, name)
    click.echo(f"deleted branch {name}" if existed else f"branch {name} did not exist")


@branch.command("list")
def branch_list() -> None:
    """Branches with their head commit and whether Dagster has the partition."""
    client = _client()
    partitions = set(_instance().get_dynamic_partitions(PARTITIONS_NAME))
    for name, commit in sorted(client.list_branches().items()):
        click.echo(f"{name:<30} {commit[:12]}  {'partition' if name in partitions else '-'}")


# -- platform ------------------------------------------------------------------------------
@main.command()
@click.option("--port", default=3000, show_default=True)
def dev(port: int) -> None:
    """Start the local stack and `dagster dev` on it (embedded defaults)."""
    from dfp.settings import PROJECT_ROOT, stack_environment

    stack_up.callback()  # registers the branches as partitions too
    # `dagster dev` and the code servers / run workers it starts get the stack's variables
    # (stack.env, the environment winning) in their environment: resources read secrets
    # as dg.EnvVar, and the code location never imports stack.env into os.environ itself.
    env = {
        "DFP_DAGSTER_URL": f"http://127.0.0.1:{port}",
        **os.environ,
        **stack_environment(),
    }
    dagster = Path(sys.executable).with_name("dagster")
    os.execve(
        dagster,
        [
            str(dagster),
            "dev",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env,
    )


# -- dbt ------------------------------------------------------------------------------------
@main.group()
def dbt() -> None:
    """The dbt projects: dbt/kronodroid (staging assets) and dbt/toxic_comments (table_clean)."""


@dbt.command("prepare")
def dbt_prepare() -> None:
    """Parse the dbt project into target/manifest.json, which loading the Dagster definitions
    needs (`dagster dev` does it itself when the project changed)."""
    from dfp_assets.kronodroid.dbt_project import prepare
    from dfp_assets.toxic.dbt_project import prepare as prepare_toxic

    click.echo(prepare())
    click.echo(prepare_toxic())


# -- reproduce -----------------------------------------------------------------------------
@main.command("reproduce")
@click.argument("run_id")
@click.option("--tolerance", default=1e-6, show_default=True, help="allowed metric difference")
def reproduce_command(run_id: str, tolerance: float) -> None:
    """Rebuild an MLflow run's inputs from its lakeFS commit (and Iceberg snapshot), retrain,
    and compare metrics (exit 1 when anything differs). Kronodroid's malware_model and the
    toxic-comment domain's toxicity_model runs alike."""
    from dfp.settings import get_settings
    from dfp.toxic.reproduce import is_toxic_run
    from dfp.tracking import Tracker

    config = get_settings()  # environment, then stack.env in local mode
    tracker = Tracker(config.tracking_uri())
    if is_toxic_run(tracker.read(run_id)):
        _reproduce_toxic(run_id, tracker, tolerance)
    else:
        _reproduce_kronodroid(run_id, tracker, tolerance)


def _reproduce_toxic(run_id: str, tracker, tolerance: float) -> None:
    from dfp.lake.lakefs_client import LakeFSClient
    from dfp.progress import elapsed_log
    from dfp.settings import LakeFSSettings, get_settings
    from dfp.toxic.reproduce import ReproduceError, reproduce

    try:
        with LakeFSClient(LakeFSSettings.from_settings(get_settings())) as client:
            result = reproduce(
                run_id,
                client=client,
                tracker=tracker,
                tolerance=tolerance,
                log=elapsed_log(click.echo),
            )
    except ReproduceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"lakeFS commit      {result.commit}")
    click.echo(
        f"embeddings         {result.embeddings_checksum} "
        f"(recorded {result.recorded_embeddings_checksum})"
    )
    _print_metrics(result)
    if not result.identical:
        raise SystemExit(1)
    click.echo("reproduced: same commit, same embeddings, same metrics")


def _print_metrics(result) -> None:
    for key in sorted(result.metrics):
        recorded = result.recorded_metrics.get(key)
        mark = "DIFFERS" if key in result.differences else "ok"
        click.echo(f"{key:<22} {result.metrics[key]:.8f}  recorded {recorded}  {mark}")


def _reproduce_kronodroid(run_id: str, tracker, tolerance: float) -> None:
    from dfp.kronodroid.reproduce import ReproduceError, reproduce
    from dfp.lake.lakefs_client import LakeFSClient
    from dfp.progress import elapsed_log
    from dfp.settings import LakeFSSettings, get_settings

    config = get_settings()
    catalog_uri = config.iceberg_catalog_uri()
    if not catalog_uri:
        raise click.ClickException("DFP_ICEBERG_CATALOG_URI is not set (the Iceberg SQL catalog)")
    try:
        with LakeFSClient(LakeFSSettings.from_settings(config)) as client:
            result = reproduce(
                run_id,
                client=client,
                catalog_uri=catalog_uri,
                tracker=tracker,
                tolerance=tolerance,
                log=elapsed_log(click.echo),
            )
    except ReproduceError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"lakeFS commit      {result.commit} (recorded {result.recorded_commit})")
    click.echo(
        f"training set       {result.training_set_digest} "
        f"(recorded {result.recorded_training_set_digest})"
    )
    _print_metrics(result)
    if not result.identical:
        raise SystemExit(1)
    click.echo("reproduced: same commit, same training set, same metrics")


# -- serving -------------------------------------------------------------------------------
@main.command("classify")
@click.argument("texts", nargs=-1, required=True)
@click.option("--branch", default="main", show_default=True, help="lakeFS branch whose model")
def classify_command(texts: tuple[str, ...], branch: str) -> None:
    """Score TEXTS with the toxicity model BRANCH published: probability and class per text
    (toxic when the probability reaches the model's threshold)."""
    from dfp.toxic.serving import ServingError, classify, load_published

    try:
        with _client() as client:
            published = load_published(client, branch)
    except ServingError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"toxicity_model of {branch} @ {published.commit[:12]} (threshold {published.threshold})"
    )
    for result in classify(published, list(texts)):
        label = "toxic" if result.toxic else "not toxic"
        click.echo(f"{result.probability:.4f}  {label:<9}  {result.text}")


# -- device farm -------------------------------------------------------------------------
@main.group()
def devicefarm() -> None:
    """Benchmark a branch's mobile exports on a device and upload the results."""


@devicefarm.command("run")
@click.option(
    "--device",
    "profile",
    type=click.Choice(["host", "android"]),
    required=True,
    help="device profile: this machine, or a phone over adb",
)
@click.option("--branch", required=True, help="lakeFS branch whose exports to benchmark")
@click.option(
    "--model",
    "model_name",
    type=click.Choice(["malware_model", "toxicity_model"]),
    default="malware_model",
    show_default=True,
    help="whose exports: Kronodroid's malware_model or the toxic-comment toxicity_model",
)
@click.option("--serial", default=None, help="adb serial (android profile)")
@click.option("--adb", "adb_path", default="adb", show_default=True, help="adb executable")
@click.option("--iterations", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--warmup", default=50, show_default=True, type=click.IntRange(0, 1_000_000))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--upload",
    type=click.Choice(["rest", "lakefs", "none"]),
    default="lakefs",
    show_default=True,
    help="rest: via the gateway; lakefs: JSON committed to the branch",
)
@click.option(
    "--gateway",
    "gateway_url",
    default="http://127.0.0.1:3100",
    show_default=True,
    help="device-farm gateway URL (rest upload; token from DFP_DEVICEFARM_TOKEN)",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="also write the upload JSON here",
)
def devicefarm_run(
    profile: str,
    branch: str,
    model_name: str,
    serial: str | None,
    adb_path: str,
    iterations: int,
    warmup: int,
    threads: int,
    upload: str,
    gateway_url: str,
    output: Path | None,
) -> None:
    """Run the benchmark harness for each export of BRANCH on a device profile."""
    from dfp.devicefarm import farm
    from dfp.progress import elapsed_log
    from mobile.records import UploadRejected

    if profile == "host":
        device: farm.DeviceProfile = farm.HostProfile(num_threads=threads)
    else:
        from mobile.android import AdbProfile

        device = farm.AndroidProfile(AdbProfile(serial=serial, adb=adb_path, num_threads=threads))
    say = elapsed_log(click.echo)
    try:
        with _client() as client:
            result = farm.run(
                client,
                branch,
                device,
                iterations=iterations,
                warmup=warmup,
                log=say,
                model=farm.MODELS[model_name],
            )
            for record in result.records:
                lat = record.latency
                click.echo(
                    f"{record.device.name:<20} {record.runtime.name:<12} {record.model.format:<10} "
                    f"p50 {lat.p50_us or lat.mean_us:9.1f} µs  p99 "
                    f"{(f'{lat.p99_us:9.1f}' if lat.p99_us is not None else '        -')} µs  "
                    f"load {record.load_ms or 0:8.1f} ms"
                )
            if output is not None:
                output.write_bytes(farm.upload_json(result))
            if upload == "lakefs":
                path, commit = farm.upload_lakefs(client, result)
                say(f"uploaded: committed {path} to {branch} @ {commit[:12]}")
            elif upload == "rest":
                reply = farm.upload_rest(gateway_url, os.environ.get(farm.TOKEN_ENV, ""), result)
                say(
                    f"uploaded: gateway recorded {reply['recorded']} record(s) for "
                    f"{reply['asset']} partition {reply['partition']}"
                )
            else:
                say("not uploaded (--upload none)")
    except (farm.DeviceFarmError, UploadRejected, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@devicefarm.command("gateway")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3100, show_default=True)
@click.option(
    "--dagster-url",
    default=None,
    help="Dagster webserver (default: DFP_DAGSTER_URL or http://127.0.0.1:3000)",
)
def devicefarm_gateway(host: str, port: int, dagster_url: str | None) -> None:
    """Serve the authenticating gateway in front of Dagster's report_asset_materialization
    (token from DFP_DEVICEFARM_TOKEN)."""
    from dfp.devicefarm.farm import TOKEN_ENV
    from dfp.devicefarm.gateway import serve

    token = os.environ.get(TOKEN_ENV, "")
    if len(token) < 16:
        raise click.ClickException(f"set {TOKEN_ENV} to a secret of at least 16 characters")
    url = dagster_url or os.environ.get("DFP_DAGSTER_URL", "http://127.0.0.1:3000")
    client = _client()
    serve(url, token, client.branch_exists, host, port)


# -- monitoring ----------------------------------------------------------------------------
@main.group()
def monitor() -> None:
    """Prometheus metrics of the platform (runs, checks, sensors, models per branch)."""


@monitor.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    default=None,
    type=int,
    help="default: DFP_MONITOR_PORT or 9470 (what deploy/monitoring/prometheus.yml scrapes)",
)
@click.option("--no-lakefs", is_flag=True, help="Dagster metrics only (no commit latency)")
def monitor_serve(host: str, port: int | None, no_lakefs: bool) -> None:
    """Serve /metrics: reads the Dagster instance (DAGSTER_HOME) and lakeFS on each scrape."""
    from dagster import DagsterInstance

    from dfp.monitoring.exporter import SnapshotCollector, make_registry, server
    from dfp.stack.dagster_home import prepare_dagster_home
    from dfp_assets.platform.monitoring import InstanceReader

    if not os.environ.get("DAGSTER_HOME"):
        prepare_dagster_home()  # an instance chosen by DAGSTER_HOME is read as it is
    lakefs = None if no_lakefs else _client
    reader = InstanceReader(DagsterInstance.get(), lakefs)
    port = port or int(os.environ.get("DFP_MONITOR_PORT", "9470"))
    httpd = server(make_registry(SnapshotCollector(reader.snapshot, reader.sources())), host, port)
    click.echo(f"dfp monitor: http://{host}:{port}/metrics", err=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


# -- benchmarks ----------------------------------------------------------------------------
@main.group()
def bench() -> None:
    """Benchmarks: print their figures (performance targets live here, not in tests)."""


@bench.command("ingest")
@click.option("--scale", default=1.0, show_default=True, help="1.0 = 142,128 rows")
@click.option("--seed", default=0, show_default=True)
@click.option("--branch-samples", default=20, show_default=True)
@click.option(
    "--staging",
    default="",
    metavar="ENGINES",
    help="also build dbt staging + mart with these engines (duckdb,spark)",
)
def bench_ingest(scale: float, seed: int, branch_samples: int, staging: str) -> None:
    """Full-size synthetic ingestion into a branch; branch creation, tiny vs full main."""
    import runpy

    from dfp.settings import PROJECT_ROOT

    sys.argv = [
        "benchmarks/ingest.py",
        f"--scale={scale}",
        f"--seed={seed}",
        f"--branch-samples={branch_samples}",
        f"--staging={staging}",
    ]
    runpy.run_path(str(PROJECT_ROOT / "benchmarks" / "ingest.py"), run_name="__main__")


# -- cross-branch evaluation ---------------------------------------------------------------
@main.command("evaluate")
@click.option(
    "--model-from", "model_from", default="main", show_default=True, help="branch of the model"
)
@click.option("--on", "on", required=True, help="branch whose training set it is scored on")
def evaluate_command(model_from: str, on: str) -> None:
    """Score MODEL_FROM's published malware_model on ON's training set, beside ON's own model
    (the asset cross_branch_evaluation does the same in a run)."""
    from dfp.kronodroid.evaluation import EvaluationError, evaluate_across

    with _client() as client:
        try:
            result = evaluate_across(client, model_from=model_from, on=on)
        except EvaluationError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(result.summary())
    click.echo(result.text())


# -- branch comparison ---------------------------------------------------------------------
@main.command("diff")
@click.argument("a")
@click.argument("b")
def diff_command(a: str, b: str) -> None:
    """Compare branch B with branch A: rows added/removed/changed (raw, mart), objects per
    area, the published models' MLflow metrics (both splits), export sizes and latencies."""
    from dfp.kronodroid.comparison import compare_branches
    from dfp.lake.diff import DiffError
    from dfp.lake.lakefs_client import LakeFSClient
    from dfp.settings import LakeFSSettings, get_settings
    from dfp.tracking import Tracker

    config = get_settings()
    catalog_uri = config.iceberg_catalog_uri()
    if not catalog_uri:
        raise click.ClickException("DFP_ICEBERG_CATALOG_URI is not set (the Iceberg SQL catalog)")
    tracker = Tracker(config.tracking_uri())
    try:
        with LakeFSClient(LakeFSSettings.from_settings(config)) as client:
            result = compare_branches(
                client,
                a,
                b,
                catalog_uri=catalog_uri,
                metrics_of=lambda run_id: tracker.read(run_id).metrics,
            )
    except DiffError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.markdown())


if __name__ == "__main__":
    main()

"""`dfp stack`: build, start, stop and report the local services dfp runs on.

Each service is a process started here with its state under DFP_HOME and a pid file, so `down`
stops only what `up` started. Later services (MLflow, ...) plug in as more `ManagedService`s.

Optional services, enabled by `DFP_STACK_SERVICES` (comma-separated, lakeFS always runs):

* `postgres`: Debian's Postgres for the Dagster instance (`DAGSTER_PG_*` in stack.env) and dfp's
  data (database `dfp`, `DFP_POSTGRES_URL`: per-branch staging schemas).
* `redis`: Debian's `redis-server` as Feast's online store, on 127.0.0.1:`DFP_REDIS_PORT`
  (default 6380) with `protected-mode yes` and a generated password; its config file (mode
  0600, so the password is never on a command line) and log live in `$DFP_HOME/state/redis`.
  No persistence (`save ""`, `appendonly no`): the online store is derived data that
  `materialize` rebuilds from the offline store. stack.env gets `DFP_REDIS_PASSWORD` and, while
  redis is part of the stack, `DFP_REDIS_URL` (`redis://:<password>@127.0.0.1:<port>/0`).
* `mlflow`: an MLflow tracking server (the venv's `mlflow server`) on 127.0.0.1:
  `DFP_MLFLOW_PORT` (default 5500), SQLite backend and artifacts under
  `$DFP_HOME/state/mlflow`; stack.env gets `MLFLOW_TRACKING_URI` while it is enabled.
* `prometheus`, `alertmanager`, `pushgateway`, `node-exporter`: Debian's Prometheus packages on
  127.0.0.1 (`DFP_PROMETHEUS_PORT` 9090, `DFP_ALERTMANAGER_PORT` 9093, `DFP_PUSHGATEWAY_PORT`
  9091, `DFP_NODE_EXPORTER_PORT` 9100), data under `$DFP_HOME/state/<name>`; Prometheus
  scrapes the enabled ones and evaluates deploy/monitoring/rules/.
* `monitor`: `dfp monitor serve`, dfp's exporter (`DFP_MONITOR_PORT` 9470), reading the
  Dagster instance and lakeFS.
* `spark`: a Spark standalone cluster from the pyspark distribution (`bin/spark-class`): a
  master on 127.0.0.1:`DFP_SPARK_MASTER_PORT` (default 7077, web UI and JSON status on
  `DFP_SPARK_WEBUI_PORT`, default 8080) and two workers of 1 core and 1 GiB each (one
  executor of Spark's default 1 GiB each), state and executor work dirs under
  `$DFP_HOME/state/spark`. stack.env gets `DFP_SPARK_MASTER` (`spark://127.0.0.1:<port>`)
  while it is enabled, so dfp's Spark sessions (dbt's Spark engine included) run there.
* `kafka`: a single-node Kafka broker (KRaft combined broker+controller, the pinned
  `kafka-broker` jar set of deploy/cdc-jars) on 127.0.0.1:`DFP_KAFKA_PORT` (default 9092;
  controller `DFP_KAFKA_CONTROLLER_PORT`, default 9094), log dirs under
  `$DFP_HOME/state/kafka`; stack.env gets `DFP_KAFKA_BOOTSTRAP_SERVERS` while it is enabled.
* `connect`: Kafka Connect 4.3 standalone with Debezium's Postgres connector (pgoutput, slot
  `dfp`, publication `dfp_comments` of `app.comments` in database `DFP_CDC_DATABASE`, default
  `dfp_app`, topic `dfp.app.comments`) against the stack's Postgres (needs `postgres` and
  `kafka`); REST API on 127.0.0.1:`DFP_CONNECT_PORT` (default 8083), offsets file and configs
  (mode 0600: the database password) under `$DFP_HOME/state/connect`.
  With `postgres` enabled, `up` creates that database, `app.comments` and the publication,
  and stack.env gets `DFP_CDC_DSN` (the embedded logical replication reader needs no Kafka).
Postgres always runs with `wal_level=logical` (logical decoding for the CDC services).
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from dfp import settings
from dfp.lake.lakefs_client import LakeFSClient
from dfp.stack import lakefs_ui

LAKEFS_BUILD_DIR = settings.PROJECT_ROOT / "deploy" / "lakefs-build"


class StackError(RuntimeError):
    pass


def _say(msg: str) -> None:
    print(f"[dfp stack] {msg}", flush=True)


# -- lakeFS binary --------------------------------------------------------------------------
def lakefs_binary_path() -> Path:
    """The cached build: with lakeFS's web UI embedded unless DFP_LAKEFS_UI=off."""
    return settings.cache_dir() / lakefs_ui.binary_dir_name() / "lakefs"


def ensure_lakefs_binary(log: Callable[[str], None] = _say) -> Path:
    """Return a lakeFS binary: $LAKEFS_BIN, the cached build, or a fresh build from source."""
    explicit = os.environ.get("LAKEFS_BIN")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise StackError(f"LAKEFS_BIN={explicit} does not exist")
        return path
    binary = lakefs_binary_path()
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise StackError(
            "lakeFS binary not found and no Go toolchain to build it. Either install Go >= 1.26 "
            f"(dfp then builds lakeFS {settings.LAKEFS_VERSION} from the Go module proxy), or "
            "point LAKEFS_BIN at a lakeFS binary (a treeverse/lakefs release archive, or "
            "`/app/lakefs` copied out of the treeverse/lakefs container image)."
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(".partial")
    log(f"building lakeFS {settings.LAKEFS_VERSION} from the Go module proxy (first time: minutes)")
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        # go.sum pins every module; treeverse's forks are absent from the public sum DB.
        "GONOSUMDB": "github.com/treeverse",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
    }
    version_var = "github.com/treeverse/lakefs/pkg/version.Version"
    version = settings.LAKEFS_VERSION.lstrip("v")
    argv = [
        go,
        "build",
        "-v",  # one line per package compiled (cached packages print nothing)
        "-trimpath",
        f"-ldflags=-s -w -X {version_var}={version}",
        "-o",
        str(tmp),
        ".",
    ]
    progress = GoBuildProgress(log)
    build_dir = LAKEFS_BUILD_DIR
    work = binary.parent / "ui-build"
    try:
        if lakefs_ui.ui_enabled():
            build_dir = lakefs_ui.prepare_build_dir(go, LAKEFS_BUILD_DIR, work, env, log)
        returncode = _stream_lines(argv, build_dir, env, progress.feed, progress.quiet)
    except lakefs_ui.UIBuildError as exc:
        raise StackError(str(exc)) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if returncode != 0:
        raise StackError(
            f"building lakeFS failed (go build exited {returncode} after "
            f"{progress.elapsed():.0f}s); last output lines:\n{progress.tail_text()}"
        )
    tmp.rename(binary)
    log(f"built {binary} in {progress.elapsed():.0f}s ({progress.summary()})")
    return binary


# A `go build -v` package line is a bare import path; anything with spaces, a colon or a
# leading '#' is a message (errors come as "# pkg" then "file.go:1:2: ...").
_GO_PACKAGE = re.compile(r"[A-Za-z0-9_.~+-]+(/[A-Za-z0-9_.~+-]+)*")
_GO_DOWNLOADING = re.compile(r"go: downloading (\S+) (\S+)$")


class GoBuildProgress:
    """`go build -v` output (stdout and stderr merged) to progress lines: one per module
    downloaded and per package compiled, each with its counter and the seconds since the
    build started, and a "still building" line when the toolchain is quiet (linking lakeFS
    prints nothing for a minute). Keeps the last lines for the error message."""

    def __init__(
        self,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        tail_lines: int = 40,
    ):
        self.log = log
        self.clock = clock
        self.started = clock()
        self.modules = 0
        self.packages = 0
        self.tail: deque[str] = deque(maxlen=tail_lines)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def _say(self, what: str) -> None:
        self.log(f"[{self.elapsed():5.0f}s] {what}")

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line.strip():
            return
        self.tail.append(line)
        if match := _GO_DOWNLOADING.match(line):
            self.modules += 1
            self._say(f"module {self.modules:4d} downloaded {match[1]} {match[2]}")
        elif _GO_PACKAGE.fullmatch(line):
            self.packages += 1
            self._say(f"package {self.packages:4d} compiled {line}")
        else:
            self._say(line)  # warnings and errors, as the toolchain wrote them

    def quiet(self) -> None:
        self._say(f"still building ({self.summary()} so far)")

    def summary(self) -> str:
        return f"{self.modules} modules downloaded, {self.packages} packages compiled"

    def tail_text(self) -> str:
        return "\n".join(self.tail) or "(no output)"


def _stream_lines(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    on_line: Callable[[str], None],
    on_quiet: Callable[[], None],
    quiet_s: float = 20.0,
) -> int:
    """Run `argv`, handing each output line (stderr merged into stdout) to `on_line` as it
    is written and calling `on_quiet` after every `quiet_s` without output; returns the exit
    code. A reader thread keeps the pipe drained while this one waits with a timeout."""
    lines: queue.Queue[str | None] = queue.Queue()
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None

        def read() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, name="go-build-output", daemon=True)
        reader.start()
        while True:
            try:
                line = lines.get(timeout=quiet_s)
            except queue.Empty:
                on_quiet()
                continue
            if line is None:
                break
            on_line(line)
        reader.join()
        return proc.wait()


# -- managed processes ----------------------------------------------------------------------
@dataclass
class ManagedService:
    name: str
    url: str
    state_dir: Path
    argv: Callable[[], list[str]]
    healthy: Callable[[], bool]
    prepare: Callable[[], None] = lambda: None
    after_start: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0
    run_as: str | None = None  # system user to run as when we are root

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid we started, if that process is still alive (not a recycled pid)."""
        if not self.pid_file.exists():
            return None
        try:
            pid_str, _, started_at = self.pid_file.read_text().strip().partition(" ")
            proc = psutil.Process(int(pid_str))
            if started_at and abs(proc.create_time() - float(started_at)) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc.pid
        except (ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def start(self) -> bool:
        """Start unless already running. Returns True when it started a process."""
        return start_together([self])[0]

    def launch(self) -> subprocess.Popen | None:
        """Start the process unless one of ours runs (None then); `await_started` waits."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.pid() is not None:
            return None
        self.prepare()
        argv = self.argv()
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            cwd=self.state_dir,
            start_new_session=True,  # survives the CLI that started it
            **_user_kwargs(self.run_as),
        )
        log.close()
        create_time = psutil.Process(proc.pid).create_time()
        self.pid_file.write_text(f"{proc.pid} {create_time}")
        return proc

    def await_started(self, proc: subprocess.Popen | None) -> None:
        """Wait until healthy (and run `after_start` for a process `launch` just started)."""
        if proc is None and self.healthy():
            return
        self._wait_healthy(proc)
        if proc is not None:
            self.after_start()

    def _wait_healthy(self, proc: subprocess.Popen | None) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if proc is not None and proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    f"{self.name} exited with code {proc.returncode} during start; "
                    f"last log lines:\n{_tail(self.log_file)}"
                )
            time.sleep(0.2)
        raise StackError(
            f"{self.name} not healthy at {self.url} after {self.start_timeout_s:.0f}s; "
            f"log: {self.log_file}\n{_tail(self.log_file)}"
        )

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the process we started. Returns True when one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)  # stale
            return False
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        # Whatever it started and left running (a Spark worker's executors, normally ended
        # by the worker itself): ours to stop too.
        _gone, alive = psutil.wait_procs(children, timeout=5)
        for child in alive:
            child.kill()
        self.pid_file.unlink(missing_ok=True)
        return True


def start_together(services: list[ManagedService]) -> list[bool]:
    """Start the services at once and wait for each (JVMs start in parallel); for each,
    whether it started a process (False: it was running already)."""
    procs = [service.launch() for service in services]
    for service, proc in zip(services, procs, strict=True):
        service.await_started(proc)
    return [proc is not None for proc in procs]


def _user_kwargs(user: str | None) -> dict[str, str]:
    return {"user": user, "group": user} if user and os.geteuid() == 0 else {}


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _require_free_port(port: int, env_var: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise StackError(
                f"port {port} on 127.0.0.1 is taken by another process; "
                f"set {env_var} to a free port"
            ) from None


# -- Postgres (Debian's packages) ------------------------------------------------------------
#: The database of dfp's data in the stack's Postgres (DFP_POSTGRES_URL), beside Dagster's.
DATA_DATABASE = "dfp"


def postgres_bin(name: str) -> Path:
    """A Postgres server binary: Debian keeps them under /usr/lib/postgresql/<version>/bin."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    found = shutil.which(name)
    if found:
        return Path(found)
    raise StackError(
        f"Postgres binary '{name}' not found: install Debian's postgresql package "
        "(apt-get install postgresql)"
    )


def _check_traversable_by_others(path: Path) -> None:
    """Postgres runs as the `postgres` user: every directory above its state must let it in."""
    for directory in [path, *path.parents]:
        if not directory.stat().st_mode & 0o001:
            raise StackError(
                f"Postgres runs as user 'postgres', which cannot enter {directory} "
                f"(mode {oct(directory.stat().st_mode & 0o777)}): set DFP_HOME to a directory "
                "whose parents are world-traversable, or chmod o+x that directory"
            )


def _pg_ready(port: int) -> bool:
    try:
        return (
            subprocess.run(
                [str(postgres_bin("pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(port)],
                timeout=5,
            ).returncode
            == 0
        )
    except (StackError, subprocess.TimeoutExpired):
        return False


# -- Redis (Debian's redis-server) ----------------------------------------------------------
REDIS_SERVER = Path("/usr/bin/redis-server")


def redis_server_bin() -> Path:
    """Debian's redis-server (package `redis-server`), or one on PATH."""
    if REDIS_SERVER.is_file():
        return REDIS_SERVER
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise StackError(
        "redis-server not found: install Debian's redis-server package "
        "(apt-get install redis-server)"
    )


def redis_config(port: int, password: str, state_dir: Path) -> str:
    """redis.conf for the local stack: loopback only, protected mode, a password, no
    persistence (Feast's online store is rebuilt by `materialize`), logs to stdout."""
    if not password or any(c.isspace() or c in "\"'" for c in password):
        raise StackError("the Redis password must be non-empty, without spaces or quotes")
    return "\n".join(
        [
            "# written by `dfp stack up`; holds the password: mode 0600",
            "bind 127.0.0.1",
            f"port {port}",
            "protected-mode yes",
            f"requirepass {password}",
            "daemonize no",
            'logfile ""',
            f"dir {state_dir}",
            'save ""',
            "appendonly no",
            "",
        ]
    )


def redis_url(port: int, password: str, db: int = 0) -> str:
    """The URL clients use (redis-py `Redis.from_url`; `dfp.kronodroid.features.RedisOnline`)."""
    return f"redis://:{password}@127.0.0.1:{port}/{db}"


def redis_password() -> str:
    """A password that is also a plain token in Feast's `host:port,password=...` string
    (letters and digits only; the prefix keeps it from ever parsing as JSON there)."""
    return "dfp" + secrets.token_hex(20)


def redis_env(creds: dict[str, str], *, enabled: bool, port: int) -> dict[str, str]:
    """stack.env with DFP_REDIS_URL exactly while Redis is part of the stack."""
    out = {k: v for k, v in creds.items() if k != "DFP_REDIS_URL"}
    if enabled:
        out["DFP_REDIS_URL"] = redis_url(port, creds["DFP_REDIS_PASSWORD"])
    return out


def _redis_ping(port: int, password: str | None) -> bool:
    import redis

    if not password:
        return False
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


# -- MLflow (tracking server from the venv) -------------------------------------------------
def mlflow_bin() -> Path:
    """The `mlflow` CLI installed beside this Python."""
    beside = Path(sys.executable).with_name("mlflow")
    found = beside if beside.exists() else shutil.which("mlflow")
    if not found:
        raise StackError("mlflow not found beside this Python: run `uv sync`")
    return Path(found)


def mlflow_server_argv(port: int, state_dir: Path) -> list[str]:
    return [
        str(mlflow_bin()),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{state_dir / 'mlflow.db'}",
        # Clients upload artifacts through the server (proxied), into this directory.
        "--artifacts-destination",
        str(state_dir / "artifacts"),
        "--workers",
        "1",
    ]


def mlflow_env(creds: dict[str, str], *, enabled: bool, port: int) -> dict[str, str]:
    """stack.env with MLFLOW_TRACKING_URI exactly while the server is part of the stack."""
    out = {k: v for k, v in creds.items() if k != "MLFLOW_TRACKING_URI"}
    if enabled:
        out["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
    return out


# -- Spark standalone (the pyspark distribution's master and workers) -----------------------
SPARK_WORKERS = 2
SPARK_WORKER_CORES = 1
# What one executor asks for by default (spark.executor.memory): a worker offering less
# would never run one, and jobs would wait for resources forever.
SPARK_WORKER_MEMORY = "1g"
# Heap of the master and worker daemons themselves (Spark's default is 1g each).
SPARK_DAEMON_MEMORY = "256m"


def spark_home() -> Path:
    """The pyspark package: a Spark distribution (bin/, jars/) without sbin's start scripts.
    Located, not imported (`dfp stack status` stays light)."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise StackError("pyspark is not installed: run `uv sync`")
    return Path(spec.origin).parent


def spark_class_bin() -> Path:
    script = spark_home() / "bin" / "spark-class"
    if not script.is_file():
        raise StackError(f"{script} not found: reinstall pyspark (uv sync)")
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        raise StackError("java not found: install a JDK (Debian: openjdk-17-jdk-headless)")
    return script


def spark_daemon_env() -> dict[str, str]:
    """Environment of the master and workers (inherited by the executors a worker starts):
    everything binds to loopback, daemons keep small heaps."""
    return {
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",  # RPC, block manager and web UIs: loopback only
        "SPARK_DAEMON_MEMORY": SPARK_DAEMON_MEMORY,
        # No REST submission server: it would take the fixed port 6066 (dfp submits nothing).
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        # Finished applications' executor dirs hold a copy of every shipped jar: drop them.
        "SPARK_WORKER_OPTS": (
            "-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval=600 "
            "-Dspark.worker.cleanup.appDataTtl=3600"
        ),
    }


def spark_master_argv(port: int, webui_port: int) -> list[str]:
    return [
        str(spark_class_bin()),
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--webui-port",
        str(webui_port),
    ]


def spark_worker_argv(master_url: str, port: int, work_dir: Path) -> list[str]:
    return [
        str(spark_class_bin()),
        "org.apache.spark.deploy.worker.Worker",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--webui-port",
        "0",  # any free port; the master's status names it
        "--cores",
        str(SPARK_WORKER_CORES),
        "--memory",
        SPARK_WORKER_MEMORY,
        "--work-dir",
        str(work_dir),
        master_url,
    ]


def spark_master_status(webui_port: int) -> dict | None:
    """The master's JSON status (`/json`: workers, applications), None while it is not up."""
    import json

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json", timeout=2.0) as resp:
            return json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def spark_worker_alive(webui_port: int, worker_port: int) -> bool:
    """Whether the master lists the worker on 127.0.0.1:`worker_port` as ALIVE (registered)."""
    status = spark_master_status(webui_port) or {}
    return any(
        w.get("host") == "127.0.0.1" and w.get("port") == worker_port and w.get("state") == "ALIVE"
        for w in status.get("workers", [])
    )


def spark_env(creds: dict[str, str], *, enabled: bool, port: int) -> dict[str, str]:
    """stack.env with DFP_SPARK_MASTER exactly while the cluster is part of the stack."""
    out = {k: v for k, v in creds.items() if k != "DFP_SPARK_MASTER"}
    if enabled:
        out["DFP_SPARK_MASTER"] = f"spark://127.0.0.1:{port}"
    return out


#: Ports handed out here are taken from below the kernel's ephemeral range, in a block per
#: process (by pid), each port once per process.
_PORT_FLOOR = 10_000
_PORT_BLOCK = 100
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a service about to start. Not from the ephemeral
    range (what binding port 0 gives): any outgoing connection may take such a port as its
    local end before the service binds it, which made starts fail under load ("port … is
    taken by another process"). Each process searches from a block of its own."""
    span = _ephemeral_low() - _PORT_FLOOR
    if span < _PORT_BLOCK:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    start = (os.getpid() % (span // _PORT_BLOCK)) * _PORT_BLOCK
    for i in range(span):
        port = _PORT_FLOOR + (start + i) % span
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise StackError(f"no free port on 127.0.0.1 between {_PORT_FLOOR} and {_PORT_FLOOR + span}")


def stop_session(proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Stop a process started with `start_new_session=True` (a Dagster daemon, webserver or
    `dagster dev`): SIGTERM, a bounded wait, SIGKILL if it hangs, then SIGKILL whatever of its
    session is left (code servers, run workers)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- Kafka (KRaft) and Kafka Connect with Debezium (jars from deploy/cdc-jars) ----------------
DEBEZIUM_CONNECTOR = "dfp-comments"
#: Options of each CDC JVM: a small heap (the machine is shared), and timestamps on
#: slf4j-simple's log lines.
CDC_JVM_OPTIONS = [
    "-Xms64m",
    "-Xmx512m",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
]


def java_argv(jar_set: str, main_class: str, args: list[str]) -> list[str]:
    """A JVM on the cached, verified jars of one set (fetched on first use)."""
    from dfp.stack.cdc_jars import cdc_jars
    from dfp.stack.jars import JarError

    java = (
        str(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
        if "JAVA_HOME" in os.environ
        else shutil.which("java")
    )
    if not java:
        raise StackError("java not found: install a JDK (Debian: openjdk-17-jdk-headless)")
    try:
        classpath = ":".join(str(p) for p in cdc_jars(jar_set, log=_say))
    except JarError as exc:
        raise StackError(str(exc)) from exc
    return [java, *CDC_JVM_OPTIONS, "-cp", classpath, main_class, *args]


def kafka_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, base64url without padding (Kafka's Uuid form),
    never starting with "-" (as Kafka's own Uuid.randomUuid): `kafka-storage format -t -x…`
    would read it as an option and fail."""
    import base64
    import uuid

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """A single KRaft node (broker and controller in one JVM) on loopback; replication
    factors of one (there is one broker)."""
    values = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "# written by `dfp stack up`\n" + "".join(f"{k}={v}\n" for k, v in values.items())


def connect_worker_properties(bootstrap: str, rest_port: int, offsets_file: Path) -> str:
    """Standalone worker: JSON without the schema wrapper (dfp.toxic.cdc parses the bare
    Debezium envelope), source offsets in a local file flushed every second."""
    values = {
        "bootstrap.servers": bootstrap,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "offset.storage.file.filename": str(offsets_file),
        "offset.flush.interval.ms": "1000",
        "listeners": f"http://127.0.0.1:{rest_port}",
        # Debezium is on the worker's classpath and ships ServiceLoader manifests: reading
        # them takes a moment, a reflective scan of the classpath ~19 s.
        "plugin.discovery": "service_load",
    }
    return "# written by `dfp stack up`\n" + "".join(f"{k}={v}\n" for k, v in values.items())


def debezium_connector_properties(pg_port: int, database: str, user: str, password: str) -> str:
    """Debezium's Postgres connector on `app.comments` (pgoutput; publication created by
    dfp, not by Debezium; snapshot of existing rows on first start)."""
    from dfp.toxic.cdc import DEBEZIUM_SLOT, PUBLICATION, QUALIFIED_TABLE

    if any(c in password for c in "\n\r\\"):
        raise StackError("the Postgres password must not contain newlines or backslashes")
    values = {
        "name": DEBEZIUM_CONNECTOR,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": "127.0.0.1",
        "database.port": str(pg_port),
        "database.user": user,
        "database.password": password,
        "database.dbname": database,
        "topic.prefix": "dfp",
        "slot.name": DEBEZIUM_SLOT,
        "publication.name": PUBLICATION,
        "publication.autocreate.mode": "disabled",
        "table.include.list": QUALIFIED_TABLE,
        "snapshot.mode": "initial",
        "tombstones.on.delete": "true",
        "decimal.handling.mode": "string",
    }
    return "# written by `dfp stack up`; holds a password: mode 0600\n" + "".join(
        f"{k}={v}\n" for k, v in values.items()
    )


def kafka_ready(bootstrap: str) -> bool:
    """The broker answers a metadata request (not only an open port)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    host, _, port = bootstrap.rpartition(":")
    try:  # a closed port answers at once; kafka-python would retry for its bootstrap timeout
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def connector_running(connect_url: str, name: str) -> bool:
    """The connector and its task are RUNNING (Connect's REST status)."""
    import json

    try:
        with urllib.request.urlopen(f"{connect_url}/connectors/{name}/status", timeout=2) as r:
            status = json.load(r)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    tasks = status.get("tasks") or []
    return (
        status.get("connector", {}).get("state") == "RUNNING"
        and bool(tasks)
        and all(t.get("state") == "RUNNING" for t in tasks)
    )


def kafka_env(creds: dict[str, str], *, enabled: bool, bootstrap: str) -> dict[str, str]:
    """stack.env with DFP_KAFKA_BOOTSTRAP_SERVERS exactly while Kafka is part of the stack."""
    out = {k: v for k, v in creds.items() if k != "DFP_KAFKA_BOOTSTRAP_SERVERS"}
    if enabled:
        out["DFP_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return out


# -- the stack ------------------------------------------------------------------------------
def _random_key(prefix: str, length: int) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length - len(prefix)))


class LocalStack:
    """The embedded services of DFP_ENV=local, with all state under DFP_HOME."""

    def __init__(self, home: Path | None = None):
        self.home = home or settings.dfp_home()
        self.lakefs_port = int(os.environ.get("DFP_LAKEFS_PORT", "8000"))
        self.lakefs_url = f"http://127.0.0.1:{self.lakefs_port}"
        self.lakefs_dir = self.home / "state" / "lakefs"
        self.repository = os.environ.get("LAKEFS_REPOSITORY", settings.DEFAULT_REPOSITORY)
        self.lakefs = ManagedService(
            name="lakefs",
            url=self.lakefs_url,
            state_dir=self.lakefs_dir,
            argv=lambda: [
                str(ensure_lakefs_binary()),
                "run",
                "--config",
                str(self.lakefs_dir / "config.yaml"),
            ],
            healthy=lambda: _http_ok(f"{self.lakefs_url}/_health"),
            prepare=self._prepare_lakefs,
            after_start=self._after_lakefs_start,
        )

        self.postgres_port = int(os.environ.get("DFP_POSTGRES_PORT", "5433"))
        self.postgres_dir = self.home / "state" / "postgres"
        self.postgres = ManagedService(
            name="postgres",
            url=f"postgresql://127.0.0.1:{self.postgres_port}/dagster",
            state_dir=self.postgres_dir,
            argv=lambda: [
                str(postgres_bin("postgres")),
                "-D",
                str(self.postgres_dir / "data"),
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                str(self.postgres_port),
                "-c",
                f"unix_socket_directories={self.postgres_dir}",
                # Logical decoding for change data capture (Debezium, the embedded reader).
                "-c",
                "wal_level=logical",
            ],
            healthy=lambda: _pg_ready(self.postgres_port),
            prepare=self._prepare_postgres,
            after_start=self._after_postgres_start,
            run_as="postgres",
        )

        self.redis_port = int(os.environ.get("DFP_REDIS_PORT", "6380"))
        self.redis_dir = self.home / "state" / "redis"
        self.redis = ManagedService(
            name="redis",
            url=f"redis://127.0.0.1:{self.redis_port}",
            state_dir=self.redis_dir,
            argv=lambda: [str(redis_server_bin()), str(self.redis_dir / "redis.conf")],
            healthy=lambda: _redis_ping(
                self.redis_port, settings.read_env_file(self.env_file).get("DFP_REDIS_PASSWORD")
            ),
            prepare=self._prepare_redis,
        )

        self.mlflow_port = int(os.environ.get("DFP_MLFLOW_PORT", "5500"))
        self.mlflow_dir = self.home / "state" / "mlflow"
        self.mlflow = ManagedService(
            name="mlflow",
            url=f"http://127.0.0.1:{self.mlflow_port}",
            state_dir=self.mlflow_dir,
            argv=lambda: mlflow_server_argv(self.mlflow_port, self.mlflow_dir),
            healthy=lambda: _http_ok(f"http://127.0.0.1:{self.mlflow_port}/health"),
            prepare=self._prepare_mlflow,
            # No usage telemetry (and no outside network on dfp's machines).
            env={"MLFLOW_DISABLE_TELEMETRY": "true"},
            start_timeout_s=120.0,
        )

        self.monitoring = MonitoringServices(self.home, lambda: self.enabled)

        self.spark_master_port = int(os.environ.get("DFP_SPARK_MASTER_PORT", "7077"))
        self.spark_webui_port = int(os.environ.get("DFP_SPARK_WEBUI_PORT", "8080"))
        self.spark_master_url = f"spark://127.0.0.1:{self.spark_master_port}"
        self.spark_dir = self.home / "state" / "spark"
        self.spark_master = ManagedService(
            name="spark-master",
            url=self.spark_master_url,
            state_dir=self.spark_dir,
            argv=lambda: spark_master_argv(self.spark_master_port, self.spark_webui_port),
            healthy=lambda: (
                (spark_master_status(self.spark_webui_port) or {}).get("status") == "ALIVE"
            ),
            prepare=self._prepare_spark_master,
            env=spark_daemon_env(),
            start_timeout_s=120.0,
        )
        self.spark_workers = [
            self._spark_worker(f"spark-worker-{i}") for i in range(1, SPARK_WORKERS + 1)
        ]

        self.kafka_port = int(os.environ.get("DFP_KAFKA_PORT", "9092"))
        self.kafka_controller_port = int(os.environ.get("DFP_KAFKA_CONTROLLER_PORT", "9094"))
        self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.kafka_dir = self.home / "state" / "kafka"
        self.kafka = ManagedService(
            name="kafka",
            url=f"kafka://{self.kafka_bootstrap}",
            state_dir=self.kafka_dir,
            argv=lambda: java_argv(
                "kafka-broker", "kafka.Kafka", [str(self.kafka_dir / "server.properties")]
            ),
            healthy=lambda: kafka_ready(self.kafka_bootstrap),
            prepare=self._prepare_kafka,
            start_timeout_s=120.0,
        )
        self.connect_port = int(os.environ.get("DFP_CONNECT_PORT", "8083"))
        self.connect_url = f"http://127.0.0.1:{self.connect_port}"
        self.connect_dir = self.home / "state" / "connect"
        self.cdc_database = os.environ.get("DFP_CDC_DATABASE", "dfp_app")
        self.connect = ManagedService(
            name="connect",
            url=self.connect_url,
            state_dir=self.connect_dir,
            argv=lambda: java_argv(
                "kafka-connect",
                "org.apache.kafka.connect.cli.ConnectStandalone",
                [
                    str(self.connect_dir / "worker.properties"),
                    str(self.connect_dir / "debezium-comments.properties"),
                ],
            ),
            healthy=lambda: connector_running(self.connect_url, DEBEZIUM_CONNECTOR),
            prepare=self._prepare_connect,
            start_timeout_s=180.0,
        )

    def _spark_worker(self, name: str) -> ManagedService:
        # The RPC port is picked when the worker starts and kept beside its pid: it is how
        # the master's status names the worker.
        port_file = self.spark_dir / f"{name}.port"

        def argv() -> list[str]:
            port_file.write_text(str(free_port()))
            return spark_worker_argv(
                self.spark_master_url, int(port_file.read_text()), self.spark_dir / "work"
            )

        def healthy() -> bool:
            return port_file.exists() and spark_worker_alive(
                self.spark_webui_port, int(port_file.read_text())
            )

        return ManagedService(
            name=name,
            url=self.spark_master_url,
            state_dir=self.spark_dir,
            argv=argv,
            healthy=healthy,
            env=spark_daemon_env(),
            start_timeout_s=120.0,
        )

    @property
    def enabled(self) -> set[str]:
        """lakeFS always; more via DFP_STACK_SERVICES (e.g. "lakefs,postgres,redis")."""
        names = os.environ.get("DFP_STACK_SERVICES", "lakefs")
        return {"lakefs"} | {n.strip() for n in names.split(",") if n.strip()}

    @property
    def services(self) -> list[ManagedService]:
        known = {
            "lakefs": [self.lakefs],
            "postgres": [self.postgres],
            "redis": [self.redis],
            "mlflow": [self.mlflow],
            "spark": [self.spark_master, *self.spark_workers],
            **{name: [svc] for name, svc in self.monitoring.services().items()},
            "kafka": [self.kafka],
            "connect": [self.connect],
        }
        unknown = self.enabled - set(known)
        if unknown:
            raise StackError(f"unknown services in DFP_STACK_SERVICES: {sorted(unknown)}")
        return [svc for name, group in known.items() if name in self.enabled for svc in group]

    @property
    def start_groups(self) -> list[list[ManagedService]]:
        """The enabled services in start order; a group's members start at once (the Spark
        workers, after their master is up: a worker started earlier waits seconds to retry)."""
        groups = [[svc] for svc in self.services if svc not in self.spark_workers]
        workers = [svc for svc in self.services if svc in self.spark_workers]
        return groups + [workers] if workers else groups

    def start_spark(self) -> None:
        """The standalone cluster alone: the master, then its workers together."""
        self.spark_master.start()
        start_together(self.spark_workers)

    def stop_spark(self) -> None:
        for service in (*reversed(self.spark_workers), self.spark_master):
            service.stop()

    @property
    def env_file(self) -> Path:
        return self.home / "stack.env"

    def credentials(self) -> dict[str, str]:
        """Stable local credentials: generated once, kept as long as the state directory."""
        existing = settings.read_env_file(self.env_file)
        if existing.get("LAKEFS_ACCESS_KEY_ID"):
            existing["LAKEFS_ENDPOINT"] = self.lakefs_url
            return existing
        return {
            "LAKEFS_ENDPOINT": self.lakefs_url,
            "LAKEFS_ACCESS_KEY_ID": _random_key("AKIAJDFP", 20),
            "LAKEFS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "LAKEFS_REPOSITORY": self.repository,
            "DFP_LAKEFS_AUTH_SECRET": secrets.token_hex(32),
        }

    def _write_env(self, values: dict[str, str]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        body = "# written by `dfp stack up`: local-only credentials, git-ignored\n"
        body += "".join(f"{k}={v}\n" for k, v in values.items())
        self.env_file.write_text(body)
        self.env_file.chmod(0o600)

    def _prepare_lakefs(self) -> None:
        _require_free_port(self.lakefs_port, "DFP_LAKEFS_PORT")
        creds = self.credentials()
        self._write_env(creds)
        config = {
            "listen_address": f"127.0.0.1:{self.lakefs_port}",
            "logging": {"format": "text", "level": "WARN", "output": "-"},
            "database": {"type": "local", "local": {"path": str(self.lakefs_dir / "metadata")}},
            "blockstore": {"type": "local", "local": {"path": str(self.lakefs_dir / "data")}},
            "auth": {"encrypt": {"secret_key": creds["DFP_LAKEFS_AUTH_SECRET"]}},
            # No outside network here, and nothing should phone home anyway.
            "stats": {"enabled": False},
            "email_subscription": {"enabled": False},
            "security": {"check_latest_version": False},
            "installation": {
                "user_name": "dfp-admin",
                "access_key_id": creds["LAKEFS_ACCESS_KEY_ID"],
                "secret_access_key": creds["LAKEFS_SECRET_ACCESS_KEY"],
            },
            "gateways": {"s3": {"region": "us-east-1"}},
        }
        (self.lakefs_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _prepare_postgres(self) -> None:
        _require_free_port(self.postgres_port, "DFP_POSTGRES_PORT")
        creds = self.credentials()
        creds.setdefault("DFP_POSTGRES_PASSWORD", secrets.token_urlsafe(18))
        self._write_env(creds)
        data = self.postgres_dir / "data"
        if (data / "PG_VERSION").exists():
            return
        self.postgres_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _check_traversable_by_others(self.postgres_dir.parent)
        pwfile = self.postgres_dir / "pwfile"
        pwfile.write_text(creds["DFP_POSTGRES_PASSWORD"] + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.postgres_dir, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        pwfile.chmod(0o600)
        proc = subprocess.run(
            [
                str(postgres_bin("initdb")),
                "-D",
                str(data),
                "-U",
                "dfp",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
            ],
            capture_output=True,
            text=True,
            **_user_kwargs("postgres"),
        )
        pwfile.unlink()
        if proc.returncode != 0:
            raise StackError(f"initdb failed:\n{proc.stderr[-2000:]}")

    def _after_postgres_start(self) -> None:
        import psycopg2

        creds = settings.read_env_file(self.env_file)
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.postgres_port,
            user="dfp",
            password=creds["DFP_POSTGRES_PASSWORD"],
            dbname="postgres",
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            # dagster: the Dagster instance; dfp: data (per-branch staging schemas, ...).
            for database in ("dagster", DATA_DATABASE):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()

    def _prepare_redis(self) -> None:
        _require_free_port(self.redis_port, "DFP_REDIS_PORT")
        redis_server_bin()
        creds = self.credentials()
        creds.setdefault("DFP_REDIS_PASSWORD", redis_password())
        self._write_env(creds)
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        conf = self.redis_dir / "redis.conf"
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        conf.write_text(redis_config(self.redis_port, creds["DFP_REDIS_PASSWORD"], self.redis_dir))

    def _prepare_mlflow(self) -> None:
        _require_free_port(self.mlflow_port, "DFP_MLFLOW_PORT")
        mlflow_bin()
        (self.mlflow_dir / "artifacts").mkdir(parents=True, exist_ok=True)

    def _prepare_spark_master(self) -> None:
        _require_free_port(self.spark_master_port, "DFP_SPARK_MASTER_PORT")
        _require_free_port(self.spark_webui_port, "DFP_SPARK_WEBUI_PORT")
        (self.spark_dir / "work").mkdir(parents=True, exist_ok=True)

    def _prepare_kafka(self) -> None:
        _require_free_port(self.kafka_port, "DFP_KAFKA_PORT")
        _require_free_port(self.kafka_controller_port, "DFP_KAFKA_CONTROLLER_PORT")
        data = self.kafka_dir / "data"
        properties = self.kafka_dir / "server.properties"
        properties.write_text(
            kafka_server_properties(self.kafka_port, self.kafka_controller_port, data)
        )
        if not (data / "meta.properties").exists():
            # KRaft: the log directory is formatted once with a cluster id.
            proc = subprocess.run(
                java_argv(
                    "kafka-broker",
                    "kafka.tools.StorageTool",
                    ["format", "-t", kafka_cluster_id(), "-c", str(properties)],
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode != 0:
                raise StackError(f"formatting Kafka's log dir failed:\n{proc.stderr[-2000:]}")

    def _prepare_connect(self) -> None:
        if not {"postgres", "kafka"} <= self.enabled:
            raise StackError("connect needs postgres and kafka in DFP_STACK_SERVICES")
        _require_free_port(self.connect_port, "DFP_CONNECT_PORT")
        password = settings.read_env_file(self.env_file)["DFP_POSTGRES_PASSWORD"]
        self.prepare_cdc_database()
        self.connect_dir.mkdir(parents=True, exist_ok=True)
        worker = connect_worker_properties(
            self.kafka_bootstrap, self.connect_port, self.connect_dir / "offsets.dat"
        )
        (self.connect_dir / "worker.properties").write_text(worker)
        connector = self.connect_dir / "debezium-comments.properties"
        connector.touch(mode=0o600)
        connector.chmod(0o600)
        connector.write_text(
            debezium_connector_properties(self.postgres_port, self.cdc_database, "dfp", password)
        )

    @property
    def cdc_dsn(self) -> str:
        """libpq DSN of the CDC database (the application table `app.comments`)."""
        password = settings.read_env_file(self.env_file)["DFP_POSTGRES_PASSWORD"]
        return (
            f"host=127.0.0.1 port={self.postgres_port} dbname={self.cdc_database} "
            f"user=dfp password={password}"
        )

    def prepare_cdc_database(self) -> None:
        """The CDC database, `app.comments` and its publication (idempotent)."""
        import psycopg2

        from dfp.toxic.cdc import DDL, publication_sql

        creds = settings.read_env_file(self.env_file)
        admin = psycopg2.connect(
            host="127.0.0.1",
            port=self.postgres_port,
            user="dfp",
            password=creds["DFP_POSTGRES_PASSWORD"],
            dbname="postgres",
        )
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.cdc_database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{self.cdc_database}"')
        admin.close()
        conn = psycopg2.connect(self.cdc_dsn)
        with conn, conn.cursor() as cur:
            cur.execute(DDL)
            cur.execute(publication_sql())
        conn.close()

    def _after_lakefs_start(self) -> None:
        self.ensure_repository()

    def ensure_repository(self) -> bool:
        creds = settings.read_env_file(self.env_file)
        client = LakeFSClient(
            settings.LakeFSSettings(
                endpoint=self.lakefs_url,
                access_key_id=creds["LAKEFS_ACCESS_KEY_ID"],
                secret_access_key=creds["LAKEFS_SECRET_ACCESS_KEY"],
                repository=self.repository,
            )
        )
        try:
            # lakeFS may answer /_health before the installation user exists.
            deadline = time.monotonic() + 30
            while True:
                try:
                    return client.ensure_repository(
                        storage_namespace=f"local://{self.repository}",
                        default_branch=settings.DEFAULT_BRANCH,
                    )
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        finally:
            client.close()

    def up(self, log: Callable[[str], None] = _say) -> None:
        ensure_lakefs_binary(log)
        for group in self.start_groups:
            for service, started in zip(group, start_together(group), strict=True):
                state = "started" if started else "already running"
                log(f"{service.name}: {state} at {service.url}")
        self.ensure_repository()
        self._export_dagster_postgres()
        self._export_redis()
        self._write_env(
            mlflow_env(
                settings.read_env_file(self.env_file),
                enabled="mlflow" in self.enabled,
                port=self.mlflow_port,
            )
        )
        self._write_env(
            spark_env(
                settings.read_env_file(self.env_file),
                enabled="spark" in self.enabled,
                port=self.spark_master_port,
            )
        )
        self._write_env(
            kafka_env(
                settings.read_env_file(self.env_file),
                enabled="kafka" in self.enabled,
                bootstrap=self.kafka_bootstrap,
            )
        )
        self._export_cdc()
        log(f"repository '{self.repository}' ready; credentials in {self.env_file}")

    def _export_dagster_postgres(self) -> None:
        """DAGSTER_PG_* in stack.env exactly while Postgres is part of the stack, so the
        Dagster instance (dfp.stack.dagster_home) uses it then and SQLite otherwise."""
        creds = settings.read_env_file(self.env_file)
        for key in ("HOST", "PORT", "USERNAME", "PASSWORD", "DB"):
            creds.pop(f"DAGSTER_PG_{key}", None)
        creds.pop("DFP_POSTGRES_URL", None)
        if "postgres" in self.enabled:
            password = urllib.parse.quote(creds["DFP_POSTGRES_PASSWORD"], safe="")
            creds["DFP_POSTGRES_URL"] = (
                f"postgresql://dfp:{password}@127.0.0.1:{self.postgres_port}/{DATA_DATABASE}"
            )
            creds.update(
                DAGSTER_PG_HOST="127.0.0.1",
                DAGSTER_PG_PORT=str(self.postgres_port),
                DAGSTER_PG_USERNAME="dfp",
                DAGSTER_PG_PASSWORD=creds["DFP_POSTGRES_PASSWORD"],
                DAGSTER_PG_DB="dagster",
            )
        self._write_env(creds)

    def _export_cdc(self) -> None:
        """DFP_CDC_DSN in stack.env while Postgres is part of the stack: the database of
        `app.comments` (created here, so the embedded reader works without Kafka too)."""
        creds = settings.read_env_file(self.env_file)
        creds.pop("DFP_CDC_DSN", None)
        if "postgres" in self.enabled:
            self.prepare_cdc_database()
            creds["DFP_CDC_DSN"] = self.cdc_dsn
        self._write_env(creds)

    def _export_redis(self) -> None:
        """DFP_REDIS_URL in stack.env exactly while Redis is part of the stack."""
        creds = settings.read_env_file(self.env_file)
        enabled = "redis" in self.enabled
        if enabled and "DFP_REDIS_PASSWORD" not in creds:
            raise StackError("redis is enabled but stack.env has no DFP_REDIS_PASSWORD")
        self._write_env(redis_env(creds, enabled=enabled, port=self.redis_port))

    def down(self, log: Callable[[str], None] = _say) -> None:
        for service in reversed(self.services):
            stopped = service.stop()
            log(f"{service.name}: {'stopped' if stopped else 'not running'}")

    def status(self) -> list[dict[str, str]]:
        rows = []
        for service in self.services:
            pid = service.pid()
            state = "running" if pid and service.healthy() else ("unhealthy" if pid else "stopped")
            rows.append(
                {
                    "service": service.name,
                    "state": state,
                    "pid": str(pid or "-"),
                    "url": service.url,
                }
            )
        return rows


# -- monitoring (Debian's Prometheus packages, dfp's exporter) -----------------------------
MONITORING_DIR = settings.PROJECT_ROOT / "deploy" / "monitoring"
#: DFP_STACK_SERVICES names of the monitoring services, in start order: Prometheus last, so
#: its first scrape finds the others up.
MONITORING_SERVICES = ("monitor", "node-exporter", "pushgateway", "alertmanager", "prometheus")
#: Debian package and binary of each Prometheus component (`.ci/run` installs them).
PROMETHEUS_BINARIES = {
    "prometheus": "/usr/bin/prometheus",
    "promtool": "/usr/bin/promtool",
    "pushgateway": "/usr/bin/prometheus-pushgateway",
    "alertmanager": "/usr/bin/prometheus-alertmanager",
    "node-exporter": "/usr/bin/prometheus-node-exporter",
}
PROMETHEUS_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "pushgateway": "prometheus-pushgateway",
    "alertmanager": "prometheus-alertmanager",
    "node-exporter": "prometheus-node-exporter",
}


def prometheus_bin(component: str) -> Path:
    """A Prometheus component from Debian's packages, or one on PATH."""
    path = Path(PROMETHEUS_BINARIES[component])
    if path.is_file():
        return path
    found = shutil.which(path.name)
    if found:
        return Path(found)
    package = PROMETHEUS_PACKAGES[component]
    raise StackError(
        f"{path.name} not found: install Debian's {package} package (apt-get install {package})"
    )


@dataclass(frozen=True)
class MonitoringPorts:
    prometheus: int = 9090
    pushgateway: int = 9091
    alertmanager: int = 9093
    node_exporter: int = 9100
    monitor: int = 9470

    @classmethod
    def from_env(cls) -> MonitoringPorts:
        default = cls()
        return cls(
            prometheus=int(os.environ.get("DFP_PROMETHEUS_PORT", default.prometheus)),
            pushgateway=int(os.environ.get("DFP_PUSHGATEWAY_PORT", default.pushgateway)),
            alertmanager=int(os.environ.get("DFP_ALERTMANAGER_PORT", default.alertmanager)),
            node_exporter=int(os.environ.get("DFP_NODE_EXPORTER_PORT", default.node_exporter)),
            monitor=int(os.environ.get("DFP_MONITOR_PORT", default.monitor)),
        )


def prometheus_config(
    ports: MonitoringPorts, enabled: set[str], scrape_interval: str = "15s"
) -> dict:
    """prometheus.yml for the local stack: the same jobs as deploy/monitoring/prometheus.yml
    (compose, Kubernetes), on 127.0.0.1, only for the services that are part of the stack;
    the rules are the repository's files."""
    targets = {
        "prometheus": ("prometheus", ports.prometheus),
        "dfp": ("monitor", ports.monitor),
        "node": ("node-exporter", ports.node_exporter),
        "pushgateway": ("pushgateway", ports.pushgateway),
        "alertmanager": ("alertmanager", ports.alertmanager),
    }
    scrape_configs = []
    for job, (service, port) in targets.items():
        if service != "prometheus" and service not in enabled:
            continue
        scrape = {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        if job == "pushgateway":
            scrape["honor_labels"] = True  # pushed series keep their own job/instance
        scrape_configs.append(scrape)
    config: dict = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(p) for p in sorted((MONITORING_DIR / "rules").glob("*.rules.yml"))],
        "scrape_configs": scrape_configs,
    }
    if "alertmanager" in enabled:
        target = f"127.0.0.1:{ports.alertmanager}"
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
    return config


class MonitoringServices:
    """Prometheus, Pushgateway, Alertmanager and node-exporter (Debian's packages) and
    `dfp monitor serve`, each on 127.0.0.1 with its state under DFP_HOME/state/<name>."""

    def __init__(self, home: Path, enabled: Callable[[], set[str]]):
        self.ports = MonitoringPorts.from_env()
        self.scrape_interval = os.environ.get("DFP_PROMETHEUS_SCRAPE_INTERVAL", "15s")
        self._enabled = enabled
        state = home / "state"
        ports = self.ports
        self.prometheus_url = f"http://127.0.0.1:{ports.prometheus}"
        self.alertmanager_url = f"http://127.0.0.1:{ports.alertmanager}"
        self.prometheus_dir = state / "prometheus"
        self.alertmanager_dir = state / "alertmanager"
        self.pushgateway_dir = state / "pushgateway"
        self.prometheus = ManagedService(
            name="prometheus",
            url=self.prometheus_url,
            state_dir=self.prometheus_dir,
            argv=lambda: [
                str(prometheus_bin("prometheus")),
                f"--config.file={self.prometheus_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.prometheus_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{ports.prometheus}",
                "--storage.tsdb.retention.time=30d",
            ],
            healthy=lambda: _http_ok(f"{self.prometheus_url}/-/ready"),
            prepare=self._prepare_prometheus,
        )
        self.alertmanager = ManagedService(
            name="alertmanager",
            url=self.alertmanager_url,
            state_dir=self.alertmanager_dir,
            argv=lambda: [
                str(prometheus_bin("alertmanager")),
                f"--config.file={MONITORING_DIR / 'alertmanager.yml'}",
                f"--storage.path={self.alertmanager_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{ports.alertmanager}",
                "--cluster.listen-address=",  # one instance: no gossip port
            ],
            healthy=lambda: _http_ok(f"{self.alertmanager_url}/-/ready"),
            prepare=lambda: _require_free_port(ports.alertmanager, "DFP_ALERTMANAGER_PORT"),
        )
        self.pushgateway = ManagedService(
            name="pushgateway",
            url=f"http://127.0.0.1:{ports.pushgateway}",
            state_dir=self.pushgateway_dir,
            argv=lambda: [
                str(prometheus_bin("pushgateway")),
                f"--web.listen-address=127.0.0.1:{ports.pushgateway}",
                f"--persistence.file={self.pushgateway_dir / 'pushgateway.data'}",
            ],
            healthy=lambda: _http_ok(f"http://127.0.0.1:{ports.pushgateway}/-/ready"),
            prepare=lambda: _require_free_port(ports.pushgateway, "DFP_PUSHGATEWAY_PORT"),
        )
        self.node_exporter = ManagedService(
            name="node-exporter",
            url=f"http://127.0.0.1:{ports.node_exporter}",
            state_dir=state / "node-exporter",
            argv=lambda: [
                str(prometheus_bin("node-exporter")),
                f"--web.listen-address=127.0.0.1:{ports.node_exporter}",
            ],
            healthy=lambda: _http_ok(f"http://127.0.0.1:{ports.node_exporter}/metrics"),
            prepare=lambda: _require_free_port(ports.node_exporter, "DFP_NODE_EXPORTER_PORT"),
        )
        self.monitor = ManagedService(
            name="monitor",
            url=f"http://127.0.0.1:{ports.monitor}/metrics",
            state_dir=state / "monitor",
            argv=lambda: [
                str(Path(sys.executable).with_name("dfp")),
                "monitor",
                "serve",
                "--port",
                str(ports.monitor),
            ],
            healthy=lambda: _http_ok(f"http://127.0.0.1:{ports.monitor}/metrics"),
            prepare=lambda: _require_free_port(ports.monitor, "DFP_MONITOR_PORT"),
            start_timeout_s=120.0,  # imports Dagster
        )

    def services(self) -> dict[str, ManagedService]:
        """DFP_STACK_SERVICES name -> service, in start order."""
        by_name = {
            "monitor": self.monitor,
            "node-exporter": self.node_exporter,
            "pushgateway": self.pushgateway,
            "alertmanager": self.alertmanager,
            "prometheus": self.prometheus,
        }
        return {name: by_name[name] for name in MONITORING_SERVICES}

    def _prepare_prometheus(self) -> None:
        _require_free_port(self.ports.prometheus, "DFP_PROMETHEUS_PORT")
        prometheus_bin("prometheus")
        self.prometheus_dir.mkdir(parents=True, exist_ok=True)
        config = prometheus_config(self.ports, self._enabled(), self.scrape_interval)
        (self.prometheus_dir / "prometheus.yml").write_text(
            "# written by `dfp stack up` from dfp.stack.services.prometheus_config\n"
            + yaml.safe_dump(config, sort_keys=False)
        )

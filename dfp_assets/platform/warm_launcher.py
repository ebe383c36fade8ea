"""Local runs forked from a warm process instead of started in a fresh interpreter.

Dagster's default launcher asks the code server to start each run in a spawned interpreter,
which imports Dagster, the definitions and then, in its steps, lakefs-sdk, Great Expectations,
dbt...: about 7 s before a small run's first step on 2 cores, and more CPU in its steps. This
launcher (the local instance's, dagster.yaml) keeps one server process per code location that
has imported all of that once, and forks a run worker from it per run: the worker starts with
everything imported and runs exactly what `dagster api execute_run` runs.

- The server starts at the first launch, which waits for it to be ready (`ready_wait_s`):
  a run through the code server meanwhile would import everything a second time on the same
  cores. Runs go through the code server as before when it does not get ready in time or
  exits, and for a code location it does not serve (another interpreter).
- It imports the code location, `preload` (config) and every op's `dfp/warm_imports` group,
  so forked runs need no warm workers. Once ready it imports `preload_after_ready` (config:
  the libraries of a run's later steps, e.g. torch and Feast), one module at a time once
  no launch came for `preload_quiet_s`: the first runs need not wait for them, and the runs
  forked after have them.
  It reloads itself (the launch that finds it stale waits for its replacement) when a
  source file it imported, or a file of its `watch` globs (dbt manifests), changed, and
  exits with the process that started it.
- Workers are reaped by the server (SIGCHLD ignored); their pid and start time are a run tag,
  so run monitoring marks a killed worker's run failed, and termination from any process of
  this host interrupts the worker as the code server would (SIGINT).
- DFP_WARM_LAUNCHER=0 turns it off (every run through the code server).
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from dfp_assets.platform.dagster_private import (
    CheckRunHealthResult,
    InstanceRef,
    LaunchRunContext,
    WorkerStatus,
    execute_run_worker,
    load_repository_definition,
)

#: The run tag naming the forked worker: {"host", "pid", "started"} (started: the process's
#: start time in clock ticks after boot, which tells a reused pid from the worker).
RUN_WORKER_TAG = "dfp/run_worker"
DISABLE_ENV = "DFP_WARM_LAUNCHER"
#: How long a launch waits for the server's reply before it falls back to the code server.
REPLY_TIMEOUT_S = 30.0
#: How long a launch waits for a starting (or reloading) server to be ready: its imports take
#: 15-20 s of one core on an idle 2-core machine, several times that on a loaded one.
READY_WAIT_S = 180.0
#: The server's exit code when a module of `preload_after_ready` started a thread: forking
#: is unsafe from then on, and its replacement does not import them.
LATER_THREADS_EXIT = 3
#: The server starts (or goes on with) the `preload_after_ready` imports only once no launch
#: came for this long.
LATER_QUIET_S = 5.0


def process_start_ticks(pid: int) -> int | None:
    """The start time of process `pid` (field 22 of /proc/pid/stat); None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[19])


def origin_key(job_code_origin) -> str:
    """The code location a run belongs to: its interpreter and code pointer."""
    repository = job_code_origin.repository_origin
    return dg.serialize_value(repository._replace(container_image=None, container_context=None))


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _watched_files(watch: Iterable[str]) -> dict[str, tuple[int, int] | None]:
    """(mtime_ns, size) of each source file this process imported outside site-packages, and
    of the files the `watch` globs (absolute, or relative to the working directory) match: files the
    definitions read at import, such as dbt manifests."""
    paths = [
        path
        for module in list(sys.modules.values())
        if (path := getattr(module, "__file__", None))
        and "site-packages" not in path
        and not path.startswith(sys.base_prefix)
    ]
    paths += [path for pattern in watch for path in sorted(glob.glob(pattern))]
    return {path: _stamp(path) for path in paths}


def _changed(files: Mapping[str, tuple[int, int] | None]) -> str | None:
    return next((path for path, stamp in files.items() if _stamp(path) != stamp), None)


def _warm_groups(job_code_origin) -> list[str | None]:
    """Every op's `dfp/warm_imports` group in the run's code location."""
    from dfp.warm_imports import WARM_IMPORTS_TAG

    repository = load_repository_definition(job_code_origin)
    return [
        (op.tags or {}).get(WARM_IMPORTS_TAG)
        for job in repository.get_all_jobs()
        for op in job.graph.iterate_op_defs()
    ]


def _run_worker(request: Mapping[str, Any]) -> int:
    """In the forked child: the run, as `dagster api execute_run` runs it."""
    working_directory = request.get("working_directory")
    if working_directory:
        os.chdir(working_directory)
    instance_ref = dg.deserialize_value(request["instance_ref"], InstanceRef)
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        return execute_run_worker(request["run_id"], instance)


def _fork_worker(listener: socket.socket, conn: socket.socket, request: Mapping[str, Any]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        listener.close()
        conn.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the run waits for its own subprocesses
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # terminate() interrupts it
        code = _run_worker(request)
    except BaseException:  # noqa: BLE001 - the child must exit here, never return to the loop
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _import_later(name: str, files: dict[str, tuple[int, int] | None]) -> None:
    """Import one `preload_after_ready` module in the server; a failure is printed (a run
    that needs it imports it itself and raises the real error there)."""
    began = time.perf_counter()
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - reported, and raised again where it is used
        print(f"[warm launcher] {name} failed to import: {type(exc).__name__}: {exc}", flush=True)
    else:
        print(f"[warm launcher] imported {name} in {time.perf_counter() - began:.1f}s", flush=True)
    for path, stamp in _watched_files(()).items():  # source files it brought in
        files.setdefault(path, stamp)


def serve(socket_path: str, job_code_origin_json: str, options: Mapping[str, Any]) -> None:
    """The server: import the code location and its heavy modules (`options["preload"]`),
    then fork one worker per request until the process that started it exits (or a source
    file or `options["watch"]` file changes). Once no request came for `options["quiet_s"]`,
    it imports the `options["later"]` modules, one at a time while no request waits."""
    from dfp.warm_imports import preload_groups

    preload, watch = options.get("preload", []), options.get("watch", [])

    parent = os.getppid()
    began = time.perf_counter()
    job_code_origin = dg.deserialize_value(job_code_origin_json)
    groups = [*preload, *_warm_groups(job_code_origin)]
    report = preload_groups(groups)
    files = _watched_files(watch)
    if threading.active_count() > 1:
        # A fork copies only the calling thread: a Python thread holding a lock (or the
        # import lock) would leave it held in every worker. Native pools that the imports
        # start (jemalloc's, OpenMP's) re-create themselves after a fork, as they must for
        # Dagster's own forkserver start method, which forks after the same imports.
        print(f"[warm launcher] not serving: {threading.active_count()} threads", flush=True)
        return
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited workers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C of `dagster dev` reaches the whole process group: the runs stop on it, the
    # server leaves with its parent (checked every second) instead of printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path + ".tmp")
    listener.listen(16)
    os.rename(socket_path + ".tmp", socket_path)  # present only once it accepts
    print(
        f"[warm launcher] pid {os.getpid()} ready in {time.perf_counter() - began:.1f}s: "
        + ", ".join(f"{m} {s:.1f}s" for m, s in report["seconds"].items()),
        flush=True,
    )
    pending = list(options.get("later", []))
    # Runs dequeued together arrive a few milliseconds apart: an import (up to 5 s, more on a
    # loaded machine) must not come between them.
    quiet_s = float(options.get("quiet_s", LATER_QUIET_S))
    last_request = time.monotonic()
    try:
        while os.getppid() == parent:
            wait = max(0.0, last_request + quiet_s - time.monotonic()) if pending else 1.0
            readable, _, _ = select.select([listener], [], [], min(wait, 1.0))
            if not readable:
                if pending and time.monotonic() - last_request >= quiet_s:
                    _import_later(pending.pop(0), files)
                    if threading.active_count() > 1:  # see above: no fork after this
                        print(
                            f"[warm launcher] not serving: {threading.active_count()} threads "
                            "after the preload_after_ready imports",
                            flush=True,
                        )
                        listener.close()
                        Path(socket_path).unlink(missing_ok=True)
                        # Not sys.exit: it would wait for a non-daemon thread forever.
                        os._exit(LATER_THREADS_EXIT)
                continue
            conn, _ = listener.accept()
            last_request = time.monotonic()
            with conn:
                request = json.loads(conn.makefile("r").readline())
                changed = _changed(files)
                if changed:
                    conn.sendall((json.dumps({"stale": changed}) + "\n").encode())
                    return
                pid = _fork_worker(listener, conn, request)
                reply = {"pid": pid, "started": process_start_ticks(pid)}
                conn.sendall((json.dumps(reply) + "\n").encode())
    finally:
        listener.close()
        Path(socket_path).unlink(missing_ok=True)


class _Server:
    """The launching process's handle on one code location's server."""

    def __init__(self, job_code_origin, options: Mapping[str, Any]):
        self.directory = tempfile.mkdtemp(prefix="dfp-warm-launcher-")
        self.socket_path = str(Path(self.directory) / "server.sock")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                __name__,
                self.socket_path,
                dg.serialize_value(job_code_origin),
                json.dumps(options),
            ],
            stdin=subprocess.DEVNULL,
        )

    def ready(self) -> bool:
        return self.process.poll() is None and os.path.exists(self.socket_path)

    def await_ready(self, timeout_s: float) -> float:
        """Wait until the server accepts, exits or `timeout_s` passes; the seconds waited."""
        began = time.monotonic()
        while not self.ready() and self.process.poll() is None:
            if time.monotonic() - began >= timeout_s:
                break
            time.sleep(0.05)  # the socket appears once the imports are done
        return time.monotonic() - began

    def fork(self, request: Mapping[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(REPLY_TIMEOUT_S)
            conn.connect(self.socket_path)
            conn.sendall((json.dumps(request) + "\n").encode())
            return json.loads(conn.makefile("r").readline())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        Path(self.socket_path).unlink(missing_ok=True)


class WarmRunLauncher(dg.DefaultRunLauncher):
    """DefaultRunLauncher whose runs fork from a warm server of their code location."""

    def __init__(
        self,
        inst_data=None,
        preload: Iterable[str] = (),
        watch: Iterable[str] = (),
        ready_wait_s: float = READY_WAIT_S,
        preload_after_ready: Iterable[str] = (),
        preload_quiet_s: float = LATER_QUIET_S,
    ):
        super().__init__(inst_data=inst_data)
        self._preload = list(preload)
        self._later = list(preload_after_ready)
        self._later_quiet_s = preload_quiet_s
        self._watch = list(watch)
        self._ready_wait_s = ready_wait_s
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()

    @classmethod
    def config_type(cls):
        return {
            "preload": dg.Field([str], is_required=False, default_value=[]),
            "watch": dg.Field([str], is_required=False, default_value=[]),
            "ready_wait_s": dg.Field(float, is_required=False, default_value=READY_WAIT_S),
            "preload_after_ready": dg.Field([str], is_required=False, default_value=[]),
            "preload_quiet_s": dg.Field(float, is_required=False, default_value=LATER_QUIET_S),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(
            inst_data=inst_data,
            preload=config_value.get("preload", []),
            watch=config_value.get("watch", []),
            ready_wait_s=config_value.get("ready_wait_s", READY_WAIT_S),
            preload_after_ready=config_value.get("preload_after_ready", []),
            preload_quiet_s=config_value.get("preload_quiet_s", LATER_QUIET_S),
        )

    @staticmethod
    def enabled() -> bool:
        return os.environ.get(DISABLE_ENV, "1").lower() not in ("0", "false", "no", "off")

    def warm_up(self, job_code_origin) -> _Server | None:
        """The server of the run's code location, started if there is none (it is ready
        once it has imported everything); None for a location it cannot serve."""
        if job_code_origin is None or job_code_origin.repository_origin.executable_path != (
            sys.executable
        ):
            return None
        key = origin_key(job_code_origin)
        with self._lock:
            server = self._servers.get(key)
            if server is not None and server.process.poll() is not None:
                if server.process.returncode == LATER_THREADS_EXIT:
                    self._later = []  # they started a thread: a fresh server without them
                server.stop()  # exited (a source file changed): start a fresh one
                server = None
            if server is None:
                options = {
                    "preload": self._preload,
                    "watch": self._watch,
                    "later": self._later,
                    "quiet_s": self._later_quiet_s,
                }
                server = self._servers[key] = _Server(job_code_origin, options)
            return server

    def _drop(self, server: _Server) -> None:
        with self._lock:
            self._servers = {k: v for k, v in self._servers.items() if v is not server}
        server.stop()

    def _fork(self, server: _Server, run: dg.DagsterRun) -> dict[str, Any]:
        pointer = run.job_code_origin.repository_origin.code_pointer
        request = {
            "run_id": run.run_id,
            "instance_ref": dg.serialize_value(self._instance.get_ref()),
            "working_directory": getattr(pointer, "working_directory", None),
        }
        try:
            return server.fork(request)
        except (OSError, ValueError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        why = None
        waited = 0.0
        # A stale server (a source file changed) exits; its replacement serves this run.
        for _ in range(2):
            server = self.warm_up(run.job_code_origin) if self.enabled() else None
            if server is None:
                break
            waited += server.await_ready(self._ready_wait_s)
            if not server.ready():
                why = (
                    f"its server was not ready after {waited:.0f}s"
                    if server.process.poll() is None
                    else f"its server exited with code {server.process.returncode}"
                )
                break
            began = time.perf_counter()
            reply = self._fork(server, run)
            if "pid" in reply:
                worker = {"host": socket.gethostname(), **reply}
                self._instance.add_run_tags(run.run_id, {RUN_WORKER_TAG: json.dumps(worker)})
                loading = f" (after {waited:.1f}s waiting for it to load)" if waited >= 0.5 else ""
                self._instance.report_engine_event(
                    f"Forked the run worker (pid {reply['pid']}) from the warm launcher's "
                    f"server in {time.perf_counter() - began:.2f}s{loading}.",
                    run,
                    cls=self.__class__,
                )
                return
            if "stale" not in reply:
                why = reply.get("error")
                break
            why = f"{reply['stale']} changed"
            self._drop(server)
        if why:
            self._instance.report_engine_event(
                f"warm launcher: {why}: launching through the code server",
                run,
                cls=self.__class__,
            )
        super().launch_run(context)

    @staticmethod
    def _worker(run: dg.DagsterRun) -> dict[str, Any] | None:
        value = run.tags.get(RUN_WORKER_TAG)
        return json.loads(value) if value else None

    def _alive(self, worker: Mapping[str, Any]) -> bool:
        started = process_start_ticks(int(worker["pid"]))
        return started is not None and started == worker.get("started")

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        worker = self._worker(run) if run is not None else None
        if worker is None or worker.get("host") != socket.gethostname():
            return super().terminate(run_id)
        if run.is_finished or not self._alive(worker):
            return False
        self._instance.report_run_canceling(run)
        os.kill(int(worker["pid"]), signal.SIGINT)  # the code server's termination does this
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        worker = self._worker(run)
        if worker is None or worker.get("host") != socket.gethostname():
            # Started by the code server, which reports a dead run itself; nothing to check.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "not a forked run worker")
        if self._alive(worker):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the run worker (pid {worker['pid']}) is gone"
        )

    def dispose(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.stop()
            self._servers.clear()
        super().dispose()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))

"""A process that imports the heavy libraries of a run's later steps while its first steps run.

A run worker is a fresh interpreter: a step that needs Great Expectations (9–12 s to import
here) or dbt (about 5 s) pays that when it starts, on the critical path of the run. Importing
them in a thread of the run worker would not help much: imports are Python code and hold the
GIL the first steps need. So a run whose steps share one process starts, at its start, one
spawned worker process that imports the modules the run's steps name (op tag
`dfp/warm_imports`), on another core. A step then runs its pure, heavy function there
(`run_warm(fn, ...)`: module-level function, picklable arguments and result) and gets the
result back; where no worker runs (a step process of its own, a test, a CLI) or the worker
died, the function runs in the caller, the same function on the same inputs.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

#: The op tag a step names its heavy imports with (comma-separated module names).
WARM_IMPORTS_TAG = "dfp/warm_imports"

T = TypeVar("T")


def parse_modules(tag_values: Iterable[str | None]) -> list[str]:
    """The module names of several tag values, in order, each once."""
    seen: dict[str, None] = {}
    for value in tag_values:
        for name in (value or "").split(","):
            name = name.strip()
            if name:
                seen.setdefault(name, None)
    return list(seen)


def _import_all(modules: list[str]) -> dict[str, Any]:
    """In the worker: import each module (`module:function`: import it, then call the
    function, e.g. one that imports a library its own way); how long each took, and which
    failed (the step's function then imports it itself and raises the real error there)."""
    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in modules:
        began = time.perf_counter()
        try:
            module_name, _, function = name.partition(":")
            module = importlib.import_module(module_name)
            if function:
                getattr(module, function)()
        except Exception as exc:  # noqa: BLE001 - reported, and raised again where it is used
            failed[name] = f"{type(exc).__name__}: {exc}"
        seconds[name] = round(time.perf_counter() - began, 2)
    return {"seconds": seconds, "failed": failed, "pid": os.getpid(), "nice": os.nice(0)}


#: The workers' CPU niceness: below the run's own steps, which are on the critical path, and
#: each later-needed worker below the one before it (e.g. GE's before dbt's).
NICENESS_START, NICENESS_STEP = 5, 5


class WarmWorker:
    """One spawned process that has imported `modules` (or is importing them)."""

    def __init__(self, modules: list[str], niceness: int = NICENESS_START):
        self.modules = modules
        # spawn: a clean interpreter (a fork of a run worker would copy its threads and
        # connections); one worker, so steps run in it one after another, as in process.
        self._pool = ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=os.nice,
            initargs=(niceness,),
        )
        self.imported: Future = self._pool.submit(_import_all, modules)

    def report(self) -> dict[str, Any] | None:
        """What the worker imported and in how long; None while it is still importing."""
        if not self.imported.done():
            return None
        try:
            return self.imported.result()
        except Exception as exc:  # the worker died before it finished
            return {"seconds": {}, "failed": {"*": f"{type(exc).__name__}: {exc}"}}

    def also_import(self, modules: list[str]) -> None:
        """Import `modules` too, after what it imports already (a group sharing it)."""
        self._pool.submit(_import_all, modules)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


#: At most this many workers per run (a group beyond shares the last one's process): the
#: run's own steps need a core too.
MAX_WORKERS = 2

_workers: dict[str, WarmWorker] = {}

#: Groups this process imported before it ran anything (a run forked from the warm run
#: launcher's server): their steps need no worker.
_preloaded: set[str] = set()


def preload_groups(groups: Iterable[str | None]) -> dict[str, Any]:
    """Import each group here and now (the warm run launcher's server, before it forks runs);
    a group that imported without failure needs no worker in the runs forked from here."""
    wanted = [g for g in dict.fromkeys(groups) if g and parse_modules([g])]
    report = _import_all(parse_modules(wanted))
    for group in wanted:
        if not set(parse_modules([group])) & set(report["failed"]):
            _preloaded.add(group)
    return report


def start_warm_workers(groups: Iterable[str | None]) -> list[WarmWorker]:
    """Start this process's warm workers: one per group (a `dfp/warm_imports` tag value,
    the modules one step's heavy function needs), so the groups import in parallel."""
    stop_warm_workers()
    wanted = [g for g in dict.fromkeys(groups) if g and parse_modules([g]) and g not in _preloaded]
    started: list[WarmWorker] = []
    for i, group in enumerate(wanted):
        if i < MAX_WORKERS:
            niceness = NICENESS_START + NICENESS_STEP * i
            started.append(WarmWorker(parse_modules([group]), niceness))
        else:  # shares the last worker, which imports it after its own
            started[-1].also_import(parse_modules([group]))
        _workers[group] = started[min(i, MAX_WORKERS - 1)]
    return started


def stop_warm_workers() -> None:
    for worker in set(_workers.values()):
        worker.close()
    _workers.clear()


def run_warm(group: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in the warm worker of `group` (the step's `dfp/warm_imports`
    tag value) if this process has one, else here."""
    worker = _workers.get(group)
    if worker is None:
        return fn(*args, **kwargs)
    try:
        return worker.call(fn, *args, **kwargs)
    except BrokenProcessPool as exc:
        # The worker died (e.g. killed for memory): run it here; the step still succeeds.
        log.warning("the warm worker died (%s): running %s in this process", exc, fn.__name__)
        for key in [k for k, w in _workers.items() if w is worker]:
            del _workers[key]
        worker.close()
        return fn(*args, **kwargs)

"""Progress lines for long commands: a plain `log(str)` callback, so the pure logic that
reports stages stays free of click and Dagster (the CLI passes `click.echo`)."""

from __future__ import annotations

import time
from collections.abc import Callable

Log = Callable[[str], None]


def elapsed_log(log: Log, clock: Callable[[], float] = time.monotonic) -> Log:
    """`log` with the seconds since this call in front of every line (one line per stage, no
    carriage returns: the output is read in CI logs as much as on terminals)."""
    started = clock()

    def say(message: str) -> None:
        log(f"[{clock() - started:6.1f}s] {message}")

    return say

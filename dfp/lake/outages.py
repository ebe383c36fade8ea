"""Bounded retries for a service that is not there (yet, or any more), shared by the clients
of Postgres and Redis: a restart during a run is ridden out, a dead server fails bounded with
an error naming it and the operation. No Dagster imports."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Attempts after the first (backoff 0.5 s, doubling: about 30 s in all).
RETRIES = 6
BACKOFF_S = 0.5


class ServiceUnavailable(RuntimeError):
    """A service could not be reached or went away during an operation; the message names
    the server (never a password) and the operation."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def with_retries(
    call: Callable[[], T],
    *,
    unreachable: Callable[[BaseException], bool],
    error: type[ServiceUnavailable],
    server: str,
    operation: str,
    retries: int = RETRIES,
    backoff_s: float | None = None,
) -> T:
    """`call()`, tried `retries` more times with a doubling backoff (first wait `backoff_s`,
    default BACKOFF_S) while it fails with an error `unreachable` accepts; then `error` names
    `server` (e.g. "Redis at host:port", never a password) and `operation`. Any other error is
    raised at once (a wrong password does not get better by waiting)."""
    delay = BACKOFF_S if backoff_s is None else backoff_s
    for attempt in range(retries + 1):
        try:
            return call()
        except ServiceUnavailable:
            raise
        except Exception as exc:
            if not unreachable(exc):
                raise
            if attempt == retries:
                raise error(
                    f"{server} is unreachable: {operation} failed after {retries} connection "
                    f"retries: {first_line(exc)}"
                ) from exc
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # the loop returns or raises

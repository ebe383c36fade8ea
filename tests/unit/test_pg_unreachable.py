"""Postgres that is not there: connections retry for a bounded time, then fail with an error
naming the server and the operation (never the password); other errors pass at once."""

import time

import psycopg2
import pytest

from dfp.lake import pg_branches as pgb
from tests.stack_fixtures import free_port


def test_connect_to_a_dead_server_fails_bounded_naming_it_and_the_operation():
    port = free_port()
    url = f"postgresql+psycopg2://dfp:s3cret-pw@127.0.0.1:{port}/dagster"
    started = time.monotonic()
    with pytest.raises(pgb.PostgresUnavailable) as raised:
        pgb.connect(url, "publish of staging__main", retries=2)
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert message.startswith(
        f"Postgres at 127.0.0.1:{port}/dagster is unreachable: publish of staging__main "
        "failed after 2 connection retries: "
    ), message
    assert "s3cret-pw" not in message and "dfp:" not in message
    assert 1.4 <= elapsed < 30, elapsed  # backoff 0.5 s then 1 s; a refused port answers at once


def test_an_outage_during_an_operation_names_the_server():
    with pytest.raises(
        pgb.PostgresUnavailable,
        match=r"^Postgres at h:5432/db went away during "
        r"discard of x: server closed the connection unexpectedly$",
    ):
        with pgb.naming_outages("h:5432/db", "discard of x"):
            raise psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis")
    with pytest.raises(pgb.PostgresUnavailable, match="went away during commit"):
        with pgb.naming_outages("h:5432/db", "commit"):
            raise psycopg2.InterfaceError("connection already closed")


@pytest.mark.parametrize(
    "error",
    [
        'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication '
        'failed for user "dfp"',
        'FATAL:  database "nope" does not exist',
    ],
)
def test_errors_that_are_not_outages_pass_unchanged(error):
    with pytest.raises(psycopg2.OperationalError, match="FATAL"):
        with pgb.naming_outages("h:5432/db", "publish"):
            raise psycopg2.OperationalError(error)


def test_server_name_drops_user_and_password():
    assert pgb.server_name("postgresql+psycopg2://u:p@db.internal:6543/data") == (
        "db.internal:6543/data"
    )
    assert pgb.server_name("postgresql://u@localhost/x") == "localhost:5432/x"

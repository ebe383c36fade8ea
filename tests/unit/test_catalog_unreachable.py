"""An Iceberg catalog whose Postgres is not there: catalog operations retry for a bounded time,
then fail naming the catalog's server and the operation (never the password); a failing step
keeps its own error instead of waiting on the catalog again."""

import re
import time

import pytest

from dfp.lake.iceberg import BranchTables, CatalogUnavailable
from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import LakeFSSettings
from tests.stack_fixtures import free_port


@pytest.fixture
def dead_catalog():
    """Tables whose catalog is a Postgres port nothing listens on (lakeFS is never called:
    each operation opens the catalog first)."""
    settings = LakeFSSettings(
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key_id="AKIA",
        secret_access_key="s",
        repository="repo",
    )
    port = free_port()
    with LakeFSClient(settings) as client:
        uri = f"postgresql+psycopg2://dfp:s3cret-pw@127.0.0.1:{port}/dagster"
        yield BranchTables(client, uri, retries=2), port


def test_a_dead_catalog_fails_bounded_naming_it_and_the_operation(dead_catalog):
    tables, port = dead_catalog
    expected = (
        f"Iceberg catalog (Postgres at 127.0.0.1:{port}/dagster) is unreachable: load of "
        "marts.mart_app_features on dfp-run-1a2b failed after 2 connection retries: "
    )
    started = time.monotonic()
    with pytest.raises(CatalogUnavailable, match=f"^{re.escape(expected)}") as raised:
        tables.table("dfp-run-1a2b", "marts", "mart_app_features")
    # Backoff 0.5 s then 1 s; a refused port answers at once.
    assert 1.4 <= time.monotonic() - started < 30
    assert all(secret not in str(raised.value) for secret in ("s3cret-pw", "dfp:"))


def test_a_failing_step_keeps_its_error_when_the_catalog_is_down(dead_catalog):
    tables, _ = dead_catalog
    tables.retries = 6  # the default bound (about 30 s) is not waited out
    started = time.monotonic()
    with pytest.raises(ValueError, match="^the step's own error$"):
        with tables.run_index("dfp-run-1a2b"):
            raise ValueError("the step's own error")
    assert time.monotonic() - started < 5  # one attempt at dropping the index, no retries


def test_once_the_catalog_was_found_down_later_operations_try_once(dead_catalog):
    tables, _ = dead_catalog
    with pytest.raises(CatalogUnavailable, match="after 2 connection retries"):
        tables.forget("dfp-run-1a2b")
    started = time.monotonic()
    with pytest.raises(CatalogUnavailable, match="^.*: forget of .* after 0 connection retries"):
        tables.forget("dfp-run-1a2b")  # the next model of a build: no second retry window
    assert time.monotonic() - started < 1.4

"""A lakeFS that does not answer: calls retry their connection a bounded number of times,
then fail with a LakeFSError naming lakeFS, its endpoint, the operation and the ref."""

import pytest

from dfp.lake import lakefs_client
from dfp.lake.lakefs_client import LakeFSClient, LakeFSError
from dfp.settings import LakeFSSettings
from tests.stack_fixtures import free_port


def test_a_closed_port_fails_bounded_naming_lakefs_and_the_operation(monkeypatch):
    monkeypatch.setattr(lakefs_client, "CONNECT_RETRIES", 2)
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = LakeFSSettings(
        endpoint=endpoint, access_key_id="AKIA", secret_access_key="s", repository="repo"
    )
    with LakeFSClient(settings) as client:
        with pytest.raises(LakeFSError) as failure:
            client.commit("main", "m")
    message = str(failure.value)
    assert message.startswith(f"lakeFS at {endpoint} is unreachable: commit(repo main)")
    assert "after 2 connection retries" in message

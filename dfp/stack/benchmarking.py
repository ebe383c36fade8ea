"""Helpers the benchmark scripts share (no Dagster): throwaway repositories, figure output."""

from __future__ import annotations

from collections.abc import Mapping

from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import LakeFSSettings


def throwaway_client(repository: str) -> LakeFSClient:
    """A client on a new repository of the local stack's lakeFS (the caller deletes it)."""
    base = LakeFSSettings.from_env()
    client = LakeFSClient(
        LakeFSSettings(base.endpoint, base.access_key_id, base.secret_access_key, repository)
    )
    client.ensure_repository(storage_namespace=f"local://{repository}")
    return client


def print_figures(figures: Mapping[str, object]) -> None:
    """One aligned `name  value` line per figure (integers with thousands separators)."""
    width = max(map(len, figures))
    for key, value in figures.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"{key:<{width}}  {shown}")

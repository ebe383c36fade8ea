"""Feast: a feature store per lakeFS branch (registry file and online keys per branch)."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import SecretStr

from dfp.kronodroid.features import (
    RedisOnline,
    S3Gateway,
    SqliteOnline,
    apply_definitions,
    feature_store,
    offline_uri,
)
from dfp.lake.lakefs_client import LakeFSClient


class FeastResource(dg.ConfigurableResource):
    """Registries and SQLite online files under `home`; the online store is `online`:
    sqlite (default, embedded, one file per branch) or redis (`redis_url`, a secret given as
    dg.EnvVar("DFP_REDIS_URL"); keys carry the branch's Feast project). `offline_engine`
    (DFP_FEAST_OFFLINE) is the offline store of the point-in-time join: Feast's DuckDB store
    (default) or its file (Dask) store, kept for comparison."""

    home: str
    online: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str | None = None
    offline_engine: Literal["duckdb", "file"] = "duckdb"

    def online_settings(self) -> SqliteOnline | RedisOnline:
        if self.online == "sqlite":
            return SqliteOnline(directory=Path(self.home) / "online")
        if not self.redis_url:
            raise dg.Failure(
                "the Feast online store is redis but DFP_REDIS_URL is unset: run the local "
                "stack with DFP_STACK_SERVICES=lakefs,redis (`dfp stack up`) or set it"
            )
        return RedisOnline(url=SecretStr(self.redis_url))

    def store(
        self,
        client: LakeFSClient,
        branch: str,
        *,
        registry_dir: Path | None = None,
        offline_path: str | None = None,
    ) -> Any:
        """The branch's own store: its registry, its online keys, its offline table."""
        return feature_store(
            branch,
            repository=client.repository,
            online=self.online_settings(),
            registry_dir=registry_dir or Path(self.home) / "registry",
            offline_path=offline_path,
            s3=S3Gateway.from_lakefs(client.settings),
            offline_engine=self.offline_engine,
        )

    @contextmanager
    def run_store(self, client: LakeFSClient, branch: str, io_ref: str) -> Iterator[Any]:
        """A store that writes `branch`'s online keys but reads the offline table from
        `io_ref` (the write-audit-publish run branch), with a throwaway registry: the
        branch's own registry always names the branch's path, valid after the merge."""
        with tempfile.TemporaryDirectory(prefix="dfp-feast-run-") as scratch:
            store = self.store(
                client,
                branch,
                registry_dir=Path(scratch),
                offline_path=offline_uri(client.repository, io_ref),
            )
            apply_definitions(store)
            yield store

"""Feast: a feature store per lakeFS branch (registry per branch; the online project a branch
serves is published with its runs, see dfp.kronodroid.online_publish)."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import dagster as dg
from pydantic import SecretStr

from dfp.kronodroid import online_publish
from dfp.kronodroid.features import (
    RedisOnline,
    S3Gateway,
    SqliteOnline,
    apply_definitions,
    branch_project,
    feature_store,
    offline_uri,
)
from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import LakeFSSettings


class FeastResource(dg.ConfigurableResource):
    """Registries and SQLite online files under `home`; the online store is `online`:
    sqlite (default, embedded, one file per Feast project) or redis (`redis_url`, a secret
    given as dg.EnvVar("DFP_REDIS_URL"); keys carry the Feast project). A branch serves the
    project its published pointer names (`store`). `offline_engine`
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
        ref: str | None = None,
    ) -> Any:
        """The store serving `branch`'s online rows as of `ref` (default: the branch's head):
        the project its published pointer names (`dfp.kronodroid.online_publish`), or the
        branch's own project when there is none. Its registry holds the definitions on the
        branch's offline table (applied here the first time a published project is read)."""
        online = self.online_settings()
        pointer = online_publish.read_pointer(client, ref or branch)
        project = online_publish.served_project(pointer, client.repository, branch, online.kind)
        store = self._store(client, branch, project=project)
        if project != branch_project(client.repository, branch) and not store.list_feature_views():
            apply_definitions(store)
        return store

    def branch_store(self, client: LakeFSClient, branch: str) -> Any:
        """The branch's own store: its registry and offline table (the online rows a branch
        serves are `store`'s)."""
        return self._store(client, branch)

    def _store(
        self,
        client: LakeFSClient,
        branch: str,
        *,
        project: str | None = None,
        registry_dir: Path | None = None,
        offline_path: str | None = None,
    ) -> Any:
        return feature_store(
            branch,
            repository=client.repository,
            online=self.online_settings(),
            registry_dir=registry_dir or self.registry_dir(),
            offline_path=offline_path,
            s3=S3Gateway.from_lakefs(client.settings),
            offline_engine=self.offline_engine,
            project=project,
        )

    def registry_dir(self) -> Path:
        return Path(self.home) / "registry"

    @contextmanager
    def run_store(
        self, client: LakeFSClient, branch: str, io_ref: str, *, project: str | None = None
    ) -> Iterator[Any]:
        """A store that reads the offline table from `io_ref` (the write-audit-publish run
        branch) and writes online project `project` (default: the branch's own), with a
        throwaway registry: the branch's own registry always names the branch's path, valid
        after the merge."""
        with tempfile.TemporaryDirectory(prefix="dfp-feast-run-") as scratch:
            store = self._store(
                client,
                branch,
                project=project,
                registry_dir=Path(scratch),
                offline_path=offline_uri(client.repository, io_ref),
            )
            apply_definitions(store)
            yield store

    def publisher(self) -> online_publish.FeastOnlinePublisher:
        """Publishes runs' online projects with their merge (drops what they replaced). The
        executor holds the resource the code location was loaded with; the store is the one
        the settings give runs now (`resource_run_config`), as the lakeFS client is."""
        from dfp.settings import load_settings
        from dfp_resources.environment import build_resources

        current = build_resources(load_settings())["feast"].process_config_and_initialize()
        return online_publish.FeastOnlinePublisher(
            current.online_settings(),
            current.registry_dir(),
            lambda: LakeFSClient(LakeFSSettings.from_env()),
        )

    #: What `discard_orphans` drops, as the run-branch cleanup reports it.
    orphans_name: ClassVar[str] = "online projects"

    def discard_orphans(self, client: LakeFSClient, live_run_ids: set[str]) -> list[str]:
        """Drop the online projects of runs no longer in progress that no branch serves."""
        online = self.online_settings()
        return online_publish.with_online_retries(
            online,
            "cleanup of orphaned online projects",
            lambda: online_publish.sweep(client, online, self.registry_dir(), live_run_ids),
            retries=2,
        )

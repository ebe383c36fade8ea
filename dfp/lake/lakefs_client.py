"""A small, typed facade over lakefs-sdk: the lakeFS operations dfp needs, and nothing else.

No Dagster imports: the Dagster resource, the CLI and the stack manager all share this.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dfp.settings import LakeFSSettings

if TYPE_CHECKING:
    import lakefs_sdk
    from lakefs_sdk.exceptions import ApiException


def _sdk() -> ModuleType:
    # lakefs-sdk costs ~0.5 s to import (hundreds of generated models): the first client pays
    # it, not every process that loads the definitions.
    import lakefs_sdk

    return lakefs_sdk


def _not_found() -> type[Exception]:
    return _sdk().exceptions.NotFoundException


def _api_exception() -> type[Exception]:
    return _sdk().exceptions.ApiException


class LakeFSError(RuntimeError):
    """A lakeFS call failed; the message names the repository, ref and path involved."""


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    size_bytes: int
    checksum: str


@dataclass(frozen=True)
class DiffEntry:
    type: str  # added | removed | changed | conflict | prefix_changed
    path: str
    size_bytes: int | None


def s3fs_storage_options(endpoint: str, key: str | None, secret: str | None) -> dict[str, Any]:
    """fsspec/s3fs options for lakeFS's S3 gateway at `endpoint`."""
    return {
        "key": key,
        "secret": secret,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        # lakeFS's gateway resolves the repository from the path, not the host name.
        "config_kwargs": {"s3": {"addressing_style": "path"}},
    }


#: Connection attempts lakeFS gets before a call fails (urllib3 backoff 0.5 s, doubling: about
#: 30 s in all), so a lakeFS restart during a run is ridden out and a dead one fails bounded.
CONNECT_RETRIES = 6


class _Unreachable:
    """A generated lakeFS API object whose calls turn a connection failure (lakeFS down) into
    a LakeFSError naming lakeFS, its endpoint, the operation and the repository."""

    def __init__(self, api: Any, endpoint: str, repository: str):
        self._api, self._endpoint, self._repository = api, endpoint, repository

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            import urllib3

            try:
                return method(*args, **kwargs)
            except urllib3.exceptions.HTTPError as exc:
                where = " ".join(str(a) for a in args if isinstance(a, str))
                retried = isinstance(exc, urllib3.exceptions.MaxRetryError)
                raise LakeFSError(
                    f"lakeFS at {self._endpoint} is unreachable: {name}({where}) failed"
                    + (f" after {CONNECT_RETRIES} connection retries" if retried else "")
                    + f": {exc}"
                ) from exc

        return call


def _api_error(action: str, exc: ApiException) -> LakeFSError:
    body = (exc.body or b"").decode() if isinstance(exc.body, bytes) else (exc.body or "")
    return LakeFSError(f"lakeFS {action} failed ({exc.status}): {body.strip() or exc.reason}")


class LakeFSClient:
    """lakeFS operations on one repository."""

    def __init__(self, settings: LakeFSSettings):
        self.settings = settings
        self.repository = settings.repository
        configuration = _sdk().Configuration(
            host=settings.endpoint.rstrip("/") + "/api/v1",
            username=settings.access_key_id,
            password=settings.secret_access_key,
        )
        import urllib3

        # Only failed connections are retried: the request never reached lakeFS, so even a
        # commit or merge is safe to send again. Answers (4xx/5xx) are not retried.
        configuration.retries = urllib3.Retry(
            total=None,
            connect=CONNECT_RETRIES,
            read=0,
            status=0,
            other=0,
            backoff_factor=0.5,
            raise_on_status=False,
        )
        self._api = _sdk().ApiClient(configuration)

        def api(cls: Any) -> Any:
            return _Unreachable(cls(self._api), settings.endpoint, settings.repository)

        sdk = _sdk()
        self.branches = api(sdk.BranchesApi)
        self.commits = api(sdk.CommitsApi)
        self.refs = api(sdk.RefsApi)
        self.objects = api(sdk.ObjectsApi)
        self.repositories = api(sdk.RepositoriesApi)

    # -- repository -------------------------------------------------------------------------
    def ensure_repository(self, storage_namespace: str, default_branch: str = "main") -> bool:
        """Create the repository if missing. Returns True when it was created."""
        try:
            self.repositories.get_repository(self.repository)
            return False
        except _not_found():
            pass
        try:
            self.repositories.create_repository(
                _sdk().RepositoryCreation(
                    name=self.repository,
                    storage_namespace=storage_namespace,
                    default_branch=default_branch,
                )
            )
        except _api_exception() as exc:
            raise _api_error(f"create repository {self.repository}", exc) from exc
        return True

    # -- branches ---------------------------------------------------------------------------
    def list_branches(self, *, show_hidden: bool = False) -> dict[str, str]:
        """Branch name -> head commit id."""
        out: dict[str, str] = {}
        after = ""
        while True:
            page = self.branches.list_branches(
                self.repository, after=after, amount=1000, show_hidden=show_hidden
            )
            for ref in page.results:
                out[ref.id] = ref.commit_id
            if not page.pagination.has_more:
                return out
            after = page.pagination.next_offset

    def branch_exists(self, name: str) -> bool:
        try:
            self.branches.get_branch(self.repository, name)
            return True
        except _not_found():
            return False

    def head(self, branch: str) -> str:
        try:
            return self.branches.get_branch(self.repository, branch).commit_id
        except _api_exception() as exc:
            raise _api_error(f"get branch {self.repository}/{branch}", exc) from exc

    def create_branch(
        self, name: str, source: str, *, hidden: bool = False, exist_ok: bool = False
    ) -> str:
        """Create `name` from `source` (zero-copy). Returns the new branch's head commit."""
        try:
            return self.branches.create_branch(
                self.repository,
                _sdk().BranchCreation(name=name, source=source, hidden=hidden),
            )
        except _api_exception() as exc:
            if exist_ok and exc.status == 409:
                return self.head(name)
            raise _api_error(f"create branch {self.repository}/{name} from {source}", exc) from exc

    def delete_branch(self, name: str, *, missing_ok: bool = True) -> bool:
        try:
            self.branches.delete_branch(self.repository, name)
            return True
        except _not_found():
            if missing_ok:
                return False
            raise LakeFSError(f"branch {self.repository}/{name} does not exist") from None
        except _api_exception() as exc:
            raise _api_error(f"delete branch {self.repository}/{name}", exc) from exc

    # -- commits, diffs, merges ------------------------------------------------------------
    def commit(
        self,
        branch: str,
        message: str,
        metadata: dict[str, str] | None = None,
        *,
        allow_empty: bool = False,
    ) -> str:
        try:
            commit = self.commits.commit(
                self.repository,
                branch,
                _sdk().CommitCreation(
                    message=message,
                    metadata={k: str(v) for k, v in (metadata or {}).items()},
                    allow_empty=allow_empty,
                ),
            )
        except _api_exception() as exc:
            raise _api_error(f"commit on {self.repository}/{branch}", exc) from exc
        return commit.id

    def get_commit(self, ref: str) -> lakefs_sdk.Commit:
        try:
            return self.commits.get_commit(self.repository, ref)
        except _api_exception() as exc:
            raise _api_error(f"get commit {self.repository}@{ref}", exc) from exc

    def log(self, ref: str, amount: int = 100) -> list[lakefs_sdk.Commit]:
        return list(self.refs.log_commits(self.repository, ref, amount=amount).results)

    def has_uncommitted_changes(self, branch: str) -> bool:
        page = self.branches.diff_branch(self.repository, branch, amount=1)
        return bool(page.results)

    def diff(
        self, left_ref: str, right_ref: str, prefix: str = "", *, diff_type: str | None = None
    ) -> list[DiffEntry]:
        """Changes that `right_ref` has relative to `left_ref` (committed data only).
        `diff_type`: lakeFS's default `three_dot` (what `right_ref` changed since the merge
        base) or `two_dot` (the two trees as they are)."""
        out: list[DiffEntry] = []
        after = ""
        while True:
            page = self.refs.diff_refs(
                self.repository,
                left_ref,
                right_ref,
                after=after,
                amount=1000,
                prefix=prefix,
                type=diff_type,
            )
            out.extend(DiffEntry(d.type, d.path, d.size_bytes) for d in page.results)
            if not page.pagination.has_more:
                return out
            after = page.pagination.next_offset

    def merge(
        self, source_ref: str, destination_branch: str, message: str, metadata: dict[str, str]
    ) -> str:
        """Merge `source_ref` into `destination_branch`; returns the merge commit id."""
        try:
            result = self.refs.merge_into_branch(
                self.repository,
                source_ref,
                destination_branch,
                merge=_sdk().Merge(
                    message=message, metadata={k: str(v) for k, v in metadata.items()}
                ),
            )
        except _api_exception() as exc:
            raise _api_error(
                f"merge {self.repository}: {source_ref} -> {destination_branch}", exc
            ) from exc
        return result.reference

    # -- objects ----------------------------------------------------------------------------
    def upload(self, branch: str, path: str, content: bytes) -> ObjectInfo:
        # The generated client's `content` is a local file path that it opens and streams.
        with tempfile.NamedTemporaryFile(prefix="dfp-upload-") as fh:
            fh.write(content)
            fh.flush()
            try:
                stats = self.objects.upload_object(self.repository, branch, path, content=fh.name)
            except _api_exception() as exc:
                raise _api_error(f"upload {self.repository}/{branch}/{path}", exc) from exc
        return ObjectInfo(stats.path, stats.size_bytes or 0, stats.checksum)

    def read(self, ref: str, path: str) -> bytes:
        try:
            return bytes(self.objects.get_object(self.repository, ref, path))
        except _api_exception() as exc:
            raise _api_error(f"read {self.repository}/{ref}/{path}", exc) from exc

    def read_if_exists(self, ref: str, path: str) -> bytes | None:
        """`read`, or None when `path` is not on `ref` (any other failure raises)."""
        try:
            return bytes(self.objects.get_object(self.repository, ref, path))
        except _not_found():
            return None
        except _api_exception() as exc:
            raise _api_error(f"read {self.repository}/{ref}/{path}", exc) from exc

    def list_objects(self, ref: str, prefix: str = "") -> Iterator[ObjectInfo]:
        after = ""
        while True:
            page = self.objects.list_objects(
                self.repository, ref, prefix=prefix, after=after, amount=1000
            )
            for o in page.results:
                yield ObjectInfo(o.path, o.size_bytes or 0, o.checksum)
            if not page.pagination.has_more:
                return
            after = page.pagination.next_offset

    def delete_prefix(self, branch: str, prefix: str) -> int:
        paths = [o.path for o in self.list_objects(branch, prefix)]
        for start in range(0, len(paths), 1000):
            chunk = paths[start : start + 1000]
            errors = self.objects.delete_objects(
                self.repository, branch, _sdk().PathList(paths=chunk)
            )
            if errors.errors:
                raise LakeFSError(f"delete under {branch}/{prefix} failed: {errors.errors[:3]}")
        return len(paths)

    # -- S3 gateway settings for other libraries ---------------------------------------------
    def s3_uri(self, ref: str, path: str = "") -> str:
        """`s3://<repo>/<ref>/<path>`: how lakeFS's S3 gateway addresses an object."""
        return f"s3://{self.repository}/{ref}/{path.lstrip('/')}".rstrip("/")

    def s3fs_storage_options(self) -> dict[str, Any]:
        """For fsspec/s3fs (pandas, pyarrow via fsspec, dlt's filesystem destination)."""
        return s3fs_storage_options(
            self.settings.endpoint, self.settings.access_key_id, self.settings.secret_access_key
        )

    def pyiceberg_properties(self) -> dict[str, str]:
        """For pyiceberg's FileIO (used by the staging issue's catalogs)."""
        return {
            "s3.endpoint": self.settings.endpoint,
            "s3.access-key-id": self.settings.access_key_id,
            "s3.secret-access-key": self.settings.secret_access_key,
            "s3.region": "us-east-1",
            "s3.force-virtual-addressing": "false",
        }

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> LakeFSClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

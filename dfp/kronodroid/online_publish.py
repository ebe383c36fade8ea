"""Write-audit-publish for Feast's online store: which project a branch serves is published
with the run.

A run materializes (or copies) into a Feast project of its own (`run_project`), which nothing
serves. Which project a branch serves is a pointer object in lakeFS (`POINTER_OBJECT`) that
`feast_online` writes on the run branch: the run's merge publishes it with everything else,
so a failed or killed run changes no served row, and a lakeFS revert or reset moves the
pointer back too. A branch without a pointer (state from before pointers) serves its own
`branch_project`.

Projects no pointer names any more are dropped: a replaced one right after a publish
(`FeastOnlinePublisher`, the executor's publish participant for system `feast_online`), a
failed run's when the run does not publish, and any other leftover (a killed run's) by the
reachability sweep (`sweep`) of the orphan cleanup. "Names" counts the pointers of each
branch's last `RETAINED_COMMITS` commits, not only its head's: a revert or reset of a recent
publish moves the pointer back to rows that still exist. Redis calls get bounded retries
(`with_online_retries`) and fail with `RedisUnavailable` naming the server and the operation.
Pure logic, no Dagster.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from dfp.kronodroid.features import RedisOnline, SqliteOnline, branch_project
from dfp.kronodroid.online_reuse import STATE_KEY_PREFIX
from dfp.lake import outages

if TYPE_CHECKING:
    from redis import Redis

    from dfp.lake.lakefs_client import LakeFSClient
    from dfp.lake.wap import Staged

T = TypeVar("T")

POINTER_OBJECT = "_dfp/published/feast_online.json"
SYSTEM = "feast_online"
#: Redis set of every run project written there (Feast's keys end with their project's name,
#: so they cannot be listed by project without one).
PROJECTS_KEY = "dfp:online_projects"
#: Hex digits of the run id in a run project's name.
RUN_KEY_LENGTH = 12
_RUN_PROJECT = re.compile(rf"(dfp_[a-z0-9_]+)_r([0-9a-f]{{{RUN_KEY_LENGTH}}})")
#: A project a branch's pointer named at one of its last this-many commits is kept (a lakeFS
#: revert or reset of those publishes serves its rows again); older ones are dropped.
RETAINED_COMMITS = 10
#: Redis keys per SCAN page and per DEL pipeline when a project is dropped.
_REDIS_PAGE = 1_000


class OnlinePointer(BaseModel):
    """What a branch serves online: `project` of online store `kind`, written by `run_id`."""

    project: str
    run_id: str
    kind: Literal["sqlite", "redis"]


class RedisUnavailable(outages.ServiceUnavailable):
    """Redis could not be reached; the message names host:port and the operation."""


# -- names ----------------------------------------------------------------------------------
def run_key(run_id: str) -> str:
    key = run_id.replace("-", "").lower()[:RUN_KEY_LENGTH]
    if not re.fullmatch(rf"[0-9a-f]{{{RUN_KEY_LENGTH}}}", key):
        raise ValueError(f"run id {run_id!r} does not start with {RUN_KEY_LENGTH} hex digits")
    return key


def run_project(repository: str, branch: str, run_id: str) -> str:
    """The project run `run_id` writes for `branch`: the branch's project plus the run.
    `branch_project` ends in 10 hex digits, so no branch's project looks like a run's."""
    return f"{branch_project(repository, branch)}_r{run_key(run_id)}"


def run_key_of(project: str) -> str | None:
    """The run key of a run project's name, else None."""
    match = _RUN_PROJECT.fullmatch(project)
    return match.group(2) if match else None


def repository_prefix(repository: str) -> str:
    """What every project of `repository` starts with (see `branch_project`)."""
    return branch_project(repository, "x").rsplit("__", 1)[0] + "__"


# -- the pointer ----------------------------------------------------------------------------
def read_pointer(client: LakeFSClient, ref: str) -> OnlinePointer | None:
    """The pointer on `ref`; None when there is none (or it is unreadable)."""
    raw = client.read_if_exists(ref, POINTER_OBJECT)
    if raw is None:
        return None
    try:
        return OnlinePointer.model_validate_json(raw)
    except ValidationError:
        return None


def write_pointer(client: LakeFSClient, branch: str, pointer: OnlinePointer) -> None:
    client.upload(branch, POINTER_OBJECT, pointer.model_dump_json(indent=1).encode())


def served_project(pointer: OnlinePointer | None, repository: str, branch: str, kind: str) -> str:
    """The project a branch with `pointer` serves from an online store of `kind`: the
    pointer's, or the branch's own (no pointer, or one written for another kind of store)."""
    if pointer is not None and pointer.kind == kind:
        return pointer.project
    return branch_project(repository, branch)


def retained_projects(client: LakeFSClient, branch: str) -> set[str]:
    """The projects `branch`'s pointer named at its last RETAINED_COMMITS commits."""
    projects = set()
    for commit in client.log(branch, amount=RETAINED_COMMITS):
        pointer = read_pointer(client, commit.id)
        if pointer is not None:
            projects.add(pointer.project)
    return projects


def named_projects(client: LakeFSClient) -> set[str]:
    """Every project some branch serves or may serve again: its pointer's (hidden run branches
    included), its recent commits' pointers', and a pointerless branch's own project."""
    pointers = branch_pointers(client)
    named = {p.project for p in pointers.values()}
    for branch in client.list_branches():
        named |= retained_projects(client, branch)
        if branch not in pointers:
            named.add(branch_project(client.repository, branch))
    return named


def branch_pointers(client: LakeFSClient) -> dict[str, OnlinePointer]:
    """The pointer of every branch that has one, hidden run branches included."""
    found = {}
    for branch in client.list_branches(show_hidden=True):
        pointer = read_pointer(client, branch)
        if pointer is not None:
            found[branch] = pointer
    return found


def orphaned_projects(
    projects: Iterable[str], named: Iterable[str], live_run_ids: Iterable[str]
) -> list[str]:
    """The run projects among `projects` that no pointer names (`named`) and whose run is
    not in progress: a failed, killed or replaced run's rows, served by nobody."""
    named, live = set(named), {run_key(r) for r in live_run_ids}
    return sorted(
        p
        for p in set(projects)
        if p not in named and (key := run_key_of(p)) is not None and key not in live
    )


# -- Redis outages --------------------------------------------------------------------------
def _redis_unreachable(exc: BaseException) -> bool:
    from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

    return isinstance(exc, ConnectionError | TimeoutError) and not isinstance(
        exc, AuthenticationError
    )


def with_online_retries(
    online: SqliteOnline | RedisOnline,
    operation: str,
    call: Callable[[], T],
    retries: int | None = None,
) -> T:
    """`call()`; on Redis, a server that is down is tried again (`dfp.lake.outages`) before
    RedisUnavailable names it and `operation`. `call` must be safe to repeat."""
    if isinstance(online, SqliteOnline):
        return call()

    return outages.with_retries(
        call,
        unreachable=_redis_unreachable,
        error=RedisUnavailable,
        server=f"Redis at {online.server()}",
        operation=operation,
        retries=outages.RETRIES if retries is None else retries,
    )


# -- projects in an online store ------------------------------------------------------------
def _redis_client(online: RedisOnline) -> Redis:
    import redis

    return redis.Redis.from_url(online.url.get_secret_value())


def register_project(online: SqliteOnline | RedisOnline, project: str) -> None:
    """Note `project` before writing any of its rows, so the sweep can find it (a SQLite
    project is its file)."""
    if isinstance(online, RedisOnline):
        with _redis_client(online) as client:
            client.sadd(PROJECTS_KEY, project)


def list_projects(online: SqliteOnline | RedisOnline, repository: str) -> list[str]:
    """The run projects of `repository` in the online store."""
    prefix = repository_prefix(repository)
    if isinstance(online, SqliteOnline):
        names = (p.stem for p in online.directory.glob("dfp_*.db"))
    else:
        with _redis_client(online) as client:
            names = [m.decode() for m in client.smembers(PROJECTS_KEY)]
    return sorted(n for n in names if n.startswith(prefix) and run_key_of(n) is not None)


def drop_project(
    online: SqliteOnline | RedisOnline, project: str, registry_dir: Path | None = None
) -> bool:
    """Delete every online row of `project` (its SQLite file, or its Redis keys and marker)
    and its reader registry in `registry_dir`. True when there was something to delete."""
    existed = False
    if registry_dir is not None:
        registry = registry_dir / f"{project}.db"
        existed = registry.exists()
        registry.unlink(missing_ok=True)
    if isinstance(online, SqliteOnline):
        path = online.directory / f"{project}.db"
        existed |= path.exists()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return existed
    suffix = project.encode()
    with _redis_client(online) as client:
        # Feast's key is the serialized entity key followed by the project's name.
        keys = [k for k in client.scan_iter(match=b"*" + suffix, count=_REDIS_PAGE)]
        keys.append((STATE_KEY_PREFIX + project).encode())
        deleted = 0
        for start in range(0, len(keys), _REDIS_PAGE):
            deleted += client.delete(*keys[start : start + _REDIS_PAGE])
        client.srem(PROJECTS_KEY, project)
    return existed or deleted > 0


def sweep(
    client: LakeFSClient,
    online: SqliteOnline | RedisOnline,
    registry_dir: Path,
    live_run_ids: Iterable[str],
) -> list[str]:
    """Drop the run projects of `client`'s repository that no branch's pointer names (now or
    at its recent commits) and whose run is not in progress; returns their names."""
    live = list(live_run_ids)
    projects = list_projects(online, client.repository)
    orphans = orphaned_projects(projects, named_projects(client), live)
    for project in orphans:
        drop_project(online, project, registry_dir)
    return orphans


# -- the publish participant ----------------------------------------------------------------
class _AfterMerge:
    def __init__(self, publisher: FeastOnlinePublisher, staged: list[Staged]):
        self._publisher, self._staged = publisher, staged

    def commit(self) -> list[str]:
        """After the merge: drop the projects the run's pointers replaced, unless a branch
        still serves them or named them at a recent commit (a branch made from this one
        shares its pointer; a revert of this publish would serve the replaced one again)."""
        replaced = {s.target for s in self._staged} - {s.staged for s in self._staged}
        if not replaced:
            return []
        with self._publisher.lakefs() as client:
            named = named_projects(client)
        dropped = sorted(replaced - named)
        for project in dropped:
            drop_project(self._publisher.online, project, self._publisher.registry_dir)
        return dropped

    def rollback(self) -> None:
        """Nothing was changed before the merge: the run's project is discarded later."""


class FeastOnlinePublisher:
    """Write-audit-publish participant (`dfp.lake.wap.PublishParticipant`) for the online
    projects runs stage: `Staged(SYSTEM, run project, project it replaces)`."""

    system = SYSTEM

    def __init__(
        self,
        online: SqliteOnline | RedisOnline,
        registry_dir: Path,
        lakefs: Callable[[], LakeFSClient],
    ):
        self.online, self.registry_dir, self.lakefs = online, registry_dir, lakefs

    def prepare(self, staged: list[Staged]) -> _AfterMerge:
        return _AfterMerge(self, staged)

    def discard(self, staged: list[Staged]) -> None:
        # Best effort: a project left behind is an orphan for the sweep, served by nobody.
        for item in staged:
            with_online_retries(
                self.online,
                f"discard of {item.staged}",
                lambda item=item: drop_project(self.online, item.staged, self.registry_dir),
                retries=2,
            )

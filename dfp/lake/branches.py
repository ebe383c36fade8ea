"""Which lakeFS branches are Dagster partitions (pure logic, no Dagster)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from dfp.lake.lakefs_client import DiffEntry
from dfp.lake.wap import RUN_BRANCH_PREFIX, is_run_branch

# lakeFS's rule for branch ids (Go's \w is ASCII-only and its $ is end of text).
_BRANCH_ID = re.compile(r"[A-Za-z0-9_][-A-Za-z0-9_]*")


class BranchNameError(ValueError):
    pass


def validate_user_branch_name(name: str) -> str:
    if not _BRANCH_ID.fullmatch(name):
        raise BranchNameError(
            f"invalid branch name {name!r}: use letters, digits, '_' and '-', "
            "starting with a letter, digit or '_'"
        )
    if is_run_branch(name):
        raise BranchNameError(
            f"branch names starting with {RUN_BRANCH_PREFIX!r} are reserved for ephemeral runs"
        )
    return name


def partition_changes(
    lakefs_branches: Iterable[str], partitions: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(partitions to add, partitions to remove) so partitions mirror the user branches.

    Ephemeral run branches never become partitions, even if lakeFS lists them.
    """
    wanted = {b for b in lakefs_branches if not is_run_branch(b)}
    have = set(partitions)
    return sorted(wanted - have), sorted(have - wanted)


def landing_changed(diff: Iterable[DiffEntry], prefix: str) -> bool:
    """Whether a lakeFS diff adds, changes or removes files under a domain's landing
    `prefix` (where users push new raw files; dfp never writes there)."""
    return any(entry.path.startswith(prefix) and not entry.path.endswith("/") for entry in diff)


def moved_heads(
    heads: Mapping[str, str], partitions: Iterable[str], seen: Mapping[str, str]
) -> tuple[list[tuple[str, str, str | None]], dict[str, str]]:
    """For a sensor that keeps the last head it saw per branch: the partition branches whose
    head moved, as (branch, head, previous head or None), and the new cursor. Branches without
    a partition yet are left out of both, so they are looked at again once it exists."""
    wanted = set(partitions)
    cursor = {branch: head for branch, head in sorted(heads.items()) if branch in wanted}
    moved = [(b, h, seen.get(b)) for b, h in cursor.items() if seen.get(b) != h]
    return moved, cursor

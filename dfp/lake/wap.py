"""Write-audit-publish on lakeFS, independent of Dagster.

A run writes to a hidden ephemeral branch `dfp-run-<run id>` made from its target branch,
its checks audit that branch, and one merge publishes it. This module holds the decisions
(names, verdict, commit metadata) and the lakeFS steps; the Dagster executor calls them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import get_settings

RUN_BRANCH_PREFIX = "dfp-run-"
#: lakeFS renders commit metadata keys of this form as a link button in its UI.
LAKEFS_UI_LINK_KEY = "::lakefs::Dagster::url[url:ui]"
#: Event metadata key by which a run registers something it staged outside lakeFS.
STAGED_KEY = "dfp/staged"


def run_branch_name(run_id: str) -> str:
    return f"{RUN_BRANCH_PREFIX}{run_id}"


def is_run_branch(branch: str) -> bool:
    return branch.startswith(RUN_BRANCH_PREFIX)


def run_id_of(branch: str) -> str | None:
    return branch[len(RUN_BRANCH_PREFIX) :] if is_run_branch(branch) else None


def dagster_run_url(run_id: str) -> str:
    base = get_settings().dfp_dagster_url.rstrip("/")
    return f"{base}/runs/{run_id}"


@dataclass(frozen=True)
class Staged:
    """Something a run wrote outside lakeFS that publishes together with its lakeFS merge.

    `system` names the publish participant that handles it (e.g. "postgres"), `staged` is
    where the run wrote (a run schema), `target` what it replaces at publish (the branch's
    schema). A run registers each before writing it, so a failed run can discard it."""

    system: str
    staged: str
    target: str

    def encode(self) -> str:
        return json.dumps({"system": self.system, "staged": self.staged, "target": self.target})

    @classmethod
    def decode(cls, text: str) -> Staged:
        data = json.loads(text)
        return cls(system=data["system"], staged=data["staged"], target=data["target"])


class PreparedPublish(Protocol):
    """A participant's publish, done but not yet visible (e.g. an open transaction)."""

    def commit(self) -> object: ...

    def rollback(self) -> None: ...


class PublishParticipant(Protocol):
    """An external system publishing with lakeFS: prepare before the merge, commit after it,
    roll back if it fails; discard what a run staged when the run does not publish."""

    system: str

    def prepare(self, staged: list[Staged]) -> PreparedPublish: ...

    def discard(self, staged: list[Staged]) -> None: ...


class PublishError(RuntimeError):
    """Publishing could not complete; the message says what was and was not published."""


class PublishConflict(PublishError):
    """Another run published to the target branch after this run branched from it."""


def published_since(client: LakeFSClient, target: str, base: str, run_id: str) -> list[str]:
    """Run ids (other than `run_id`) whose publishes reached `target` after commit `base`.

    Commits made by hand or by uploads (no `dagster_run_id`) are not conflicts: lakeFS merges
    them with the run's changes. Another run's publish is: its outputs and this run's were
    computed from the same inputs, and merging both would mix two versions of one asset."""
    if client.head(target) == base:
        return []
    runs: list[str] = []
    for commit in client.log(target, amount=1000):
        if commit.id == base:
            break
        other = (commit.metadata or {}).get("dagster_run_id")
        if other and other != run_id and other not in runs:
            runs.append(other)
    return runs


def by_system(staged: Iterable[Staged]) -> dict[str, list[Staged]]:
    """Staged items grouped by system, each once (a retried step registers again)."""
    groups: dict[str, list[Staged]] = {}
    for item in staged:
        if item not in groups.setdefault(item.system, []):
            groups[item.system].append(item)
    return groups


@dataclass
class RunAudit:
    """What a finished run did, as read from Dagster's event log."""

    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    passed_checks: list[str] = field(default_factory=list)
    materialized: dict[str, int | None] = field(default_factory=dict)  # asset -> row count
    staged: list[Staged] = field(default_factory=list)  # written outside lakeFS

    @property
    def publishable(self) -> bool:
        return not self.failed_steps and not self.failed_checks

    def reason(self) -> str:
        parts = []
        if self.failed_steps:
            parts.append(f"failed steps: {', '.join(sorted(self.failed_steps))}")
        if self.failed_checks:
            parts.append(f"failed checks: {', '.join(sorted(self.failed_checks))}")
        return "; ".join(parts) or "all steps and checks passed"


def publish_metadata(run_id: str, target: str, audit: RunAudit) -> dict[str, str]:
    meta = {
        "dagster_run_id": run_id,
        "dagster_partition": target,
        "dagster_assets": ",".join(sorted(audit.materialized)),
        "dagster_checks_passed": str(len(audit.passed_checks)),
        LAKEFS_UI_LINK_KEY: dagster_run_url(run_id),
    }
    for asset, rows in sorted(audit.materialized.items()):
        if rows is not None:
            meta[f"rows.{asset}"] = str(rows)
    for system, items in sorted(by_system(audit.staged).items()):
        meta[f"published.{system}"] = ",".join(sorted(i.target for i in items))
    return meta


def start(client: LakeFSClient, run_id: str, target: str) -> str:
    """Create the hidden run branch from `target`'s head; idempotent. Returns its base commit."""
    if not client.branch_exists(target):
        raise ValueError(
            f"lakeFS branch '{target}' does not exist in repository '{client.repository}': "
            "create it first (`dfp branch create`) or pick an existing partition"
        )
    if client.has_uncommitted_changes(target):
        # lakeFS would refuse the publishing merge at the end: refuse before doing the work.
        raise ValueError(
            f"lakeFS branch '{target}' has uncommitted changes (written outside dfp's "
            "write-audit-publish): commit them or reset the branch, then rerun"
        )
    return client.create_branch(run_branch_name(run_id), target, hidden=True, exist_ok=True)


def publish(
    client: LakeFSClient, run_id: str, target: str, audit: RunAudit, base: str | None = None
) -> str | None:
    """Merge the run branch into `target` in one lakeFS merge. Returns the merge commit id,
    or None when the run changed nothing. With `base` (the target's head when the run
    started), refuse with PublishConflict if another run published to `target` since."""
    branch = run_branch_name(run_id)
    if base is not None:
        others = published_since(client, target, base, run_id)
        if others:
            raise PublishConflict(
                f"nothing published to lakeFS branch {target}: run(s) {', '.join(others)} "
                f"published to it after this run started from {base[:12]}; this run's outputs "
                f"were computed from the older state. Rerun on the new head of {target}."
            )
    if client.has_uncommitted_changes(branch):
        # Assets commit their own writes; anything left over still belongs to this run.
        client.commit(
            branch, f"dfp run {run_id}: uncommitted leftovers", {"dagster_run_id": run_id}
        )
    if not client.diff(target, branch):
        return None
    assets = ", ".join(sorted(audit.materialized)) or "no assets"
    return client.merge(
        branch,
        target,
        message=f"dfp: publish run {run_id} ({assets})",
        metadata=publish_metadata(run_id, target, audit),
    )


def publish_with(
    client: LakeFSClient,
    run_id: str,
    target: str,
    audit: RunAudit,
    participants: Mapping[str, PublishParticipant],
    base: str | None = None,
) -> str | None:
    """`publish`, with what the run staged outside lakeFS: every participant prepares (e.g.
    opens its transaction and swaps), then the one lakeFS merge, then every participant
    commits. A failed prepare or merge rolls every prepared participant back, so nothing is
    published anywhere. Only a participant's commit failing after the merge (its database
    lost between statement and COMMIT) can leave lakeFS ahead: PublishError says so."""
    groups = by_system(audit.staged)
    unknown = sorted(set(groups) - set(participants))
    if unknown:
        raise PublishError(
            f"run {run_id} staged data in {', '.join(unknown)}, which this deployment has no "
            "publish participant for: nothing published"
        )
    prepared: list[PreparedPublish] = []
    try:
        for system, items in sorted(groups.items()):
            prepared.append(participants[system].prepare(items))
        commit = publish(client, run_id, target, audit, base)
    except BaseException:
        for handle in reversed(prepared):
            handle.rollback()
        raise
    for system, handle in zip(sorted(groups), prepared, strict=True):
        try:
            handle.commit()
        except Exception as exc:
            raise PublishError(
                f"lakeFS branch {target} was merged (commit {commit}) but publishing to "
                f"{system} failed at commit: {exc}. {system} still holds the previous version; "
                "rerun to publish it there too."
            ) from exc
    return commit


def discard(client: LakeFSClient, run_id: str) -> bool:
    return client.delete_branch(run_branch_name(run_id), missing_ok=True)


def orphaned_runs(branches: Iterable[str], live_run_ids: Iterable[str]) -> list[str]:
    """The run branches among `branches` whose run is no longer in progress."""
    live = set(live_run_ids)
    return [b for b in branches if is_run_branch(b) and run_id_of(b) not in live]


def orphaned_run_branches(client: LakeFSClient, live_run_ids: Iterable[str]) -> list[str]:
    """Run branches whose run is no longer in progress (killed, crashed, or long finished)."""
    return orphaned_runs(client.list_branches(show_hidden=True), live_run_ids)

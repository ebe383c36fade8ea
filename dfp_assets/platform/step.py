"""One asset step on a lakeFS branch: where it writes, its memo, its lineage commit.

Every asset that writes to lakeFS does the same around its own work, so it is written once here:

    with branch_step(context, lakefs) as step:          # run branch, partition branch, client
        if step.lookup(version) is not None:            # memo of the same inputs, outputs intact
            step.commit("…")                            # allow-empty lineage commit
            return step.reported(step.reused.metadata)  # + reused_from_run
        … the domain's work, uploads to step.run_branch …
        step.record(outputs, reported)                  # memo beside the outputs
        step.commit("…", {…})                           # lineage commit (dagster_run_id, asset)
        return step.reported({…}, wrote="prefix/")      # + lakeFS UI links

Every materialization reported through `reported` links to lakeFS's UI (DFP_LAKEFS_UI_URL):
`lakefs_commit_url`, the step's lineage commit by id (the run branch is deleted after publish;
its commits stay in the merge's history), and `lakefs_objects_url`, what the step wrote, at
that commit (or on the partition branch when it reports before committing).

The run tag `dfp/reuse=off` turns every lookup into a miss, so a run can recompute everything it
selects (e.g. after a change no input version sees, such as a library upgrade).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg

from dfp import tracking
from dfp.lake import links, memo
from dfp.lake.iceberg import describe_tables
from dfp.lake.lakefs_client import LakeFSClient
from dfp.settings import get_settings
from dfp_resources.lakefs import LakeFSResource

REUSE_TAG = "dfp/reuse"


def reuse_allowed(context: dg.AssetExecutionContext) -> bool:
    value = context.run.tags.get(REUSE_TAG, "on")
    if value not in ("on", "off"):
        raise dg.Failure(f"run tag {REUSE_TAG}={value!r}: want 'on' or 'off'")
    return value == "on"


@dataclass
class BranchStep:
    """An asset's step inside a write-audit-publish run."""

    context: dg.AssetExecutionContext
    client: LakeFSClient
    run_branch: str  # the hidden branch this run writes (published by the executor's merge)
    branch: str  # the partition's branch
    asset: str
    version: str | None = None
    reused: memo.Memo | None = None
    commit_id: str | None = None  # this step's lineage commit, once made

    @property
    def run_id(self) -> str:
        return self.context.run.run_id

    def find(
        self, version: str | None, *, exact_prefix: str | None = None, name: str | None = None
    ) -> memo.Memo | None:
        """Remember `version` (None: this step cannot be memoized now) and find its memo on the
        run branch (None: no version, no match, or the run said dfp/reuse=off), without taking
        it as this step's result."""
        self.version = version
        if version is None:
            return None
        if not reuse_allowed(self.context):
            self.context.log.info(f"{REUSE_TAG}=off: {self.asset} is computed again")
            return None
        return memo.lookup(
            self.client, self.run_branch, name or self.asset, version, exact_prefix=exact_prefix
        )

    def lookup(
        self,
        version: str | None,
        *,
        exact_prefix: str | None = None,
        accept: Callable[[memo.Memo], bool] | None = None,
    ) -> memo.Memo | None:
        """`find`, taking the memo as this step's result when there is one (and `accept`
        agrees)."""
        found = self.find(version, exact_prefix=exact_prefix)
        if found is not None and (accept is None or accept(found)):
            self.reused = found
            self.context.log.info(f"{self.asset}: inputs unchanged since run {found.run_id}")
        return self.reused

    def record(
        self, outputs: Iterable[str] | Mapping[str, str], reported: Mapping[str, Any]
    ) -> memo.Memo | None:
        """The memo for outputs just uploaded to the run branch (the commit carries it);
        nothing when the step had no version to key it on."""
        if self.version is None:
            return None
        return memo.record(
            self.client, self.run_branch, self.asset, self.version, outputs, reported, self.run_id
        )

    def commit(
        self, message: str, metadata: Mapping[str, str] | None = None, *, allow_empty: bool = True
    ) -> str:
        """The lineage commit of this materialization on the run branch. Allow-empty by
        default: a reused or deterministic result writes the same bytes, and the commit is
        still the anchor its lineage points at."""
        values = {"dagster_run_id": self.run_id, "asset": self.asset, **(metadata or {})}
        if self.reused is not None:
            values["reused_from_run"] = self.reused.run_id
            message += f" (inputs unchanged since run {self.reused.run_id[:8]})"
        self.commit_id = self.client.commit(
            self.run_branch, message, values, allow_empty=allow_empty
        )
        return self.commit_id

    def table_snapshots(self) -> dict[str, int | None]:
        """Lineage: the current snapshot id of every Iceberg table on the run branch."""
        return {
            k: v["snapshot_id"] for k, v in describe_tables(self.client, self.run_branch).items()
        }

    def lineage_tags(self, commit: str) -> dict[str, str]:
        """The platform's MLflow lineage tags of a model trained on `commit` of this branch (a
        domain adds what else its run read)."""
        return {
            tracking.TAG_REPOSITORY: self.client.repository,
            tracking.TAG_BRANCH: self.branch,
            tracking.TAG_COMMIT: commit,
            tracking.TAG_DAGSTER_RUN: self.run_id,
        }

    def links(self, wrote: str | None = None) -> dict[str, dg.MetadataValue]:
        """lakeFS UI links: the lineage commit (once committed) and `wrote` (an object, or a
        prefix ending in "/") at that commit, or on the partition branch before it. Empty
        when no UI address is known (no DFP_LAKEFS_UI_URL and no endpoint)."""
        base = get_settings().lakefs_ui_url()
        if base is None:
            return {}
        repository = self.client.repository
        shown: dict[str, dg.MetadataValue] = {}
        if self.commit_id is not None:
            shown["lakefs_commit_url"] = dg.MetadataValue.url(
                links.commit_url(base, repository, self.commit_id)
            )
        if wrote is not None:
            ref = self.commit_id or self.branch
            shown["lakefs_objects_url"] = dg.MetadataValue.url(
                links.objects_url(base, repository, ref, wrote)
            )
        return shown

    def reported(self, metadata: Mapping[str, Any], *, wrote: str | None = None) -> dict[str, Any]:
        """What the materialization shows: `metadata`, the run it came from if reused, and
        the lakeFS UI links (`links`). The links are added here, never kept in a memo: they
        name this run's commit and this partition's branch."""
        shown = dict(metadata)
        if self.reused is not None:
            shown["reused_from_run"] = self.reused.run_id
        shown.update(self.links(wrote))
        return shown


@contextmanager
def branch_step(
    context: dg.AssetExecutionContext, lakefs: LakeFSResource, asset: str | None = None
) -> Iterator[BranchStep]:
    """The step of `asset` (default: the context's one asset) on its run branch."""
    run_branch = lakefs.run_branch(context)
    asset = asset or context.asset_key.to_user_string()
    # Also the mark benchmarks/step_startup.py times: the step's own work begins here.
    context.log.info(f"{asset}: writing run branch {run_branch} of {context.partition_key}")
    with lakefs.client() as client:
        yield BranchStep(
            context=context,
            client=client,
            run_branch=run_branch,
            branch=context.partition_key,
            asset=asset,
        )

"""Skip work whose inputs did not change: a memo next to an asset's outputs on the branch.

An asset that writes objects to lakeFS also writes `_dfp/memo/<asset>.json`: the version of
its inputs (a content hash: Iceberg snapshot ids, object checksums, the config, a code
version) and the checksums of the objects it wrote. Branches inherit memos with the data, so
rebuilding a branch made from main with no data change finds main's memo, checks that the
outputs are still the objects the memo names, and reuses them instead of recomputing.
No Dagster imports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from dfp.lakefs_client import LakeFSClient, LakeFSError

MEMO_PREFIX = "_dfp/memo/"


class Memo(BaseModel):
    asset: str
    input_version: str
    outputs: dict[str, str]  # lakeFS path -> checksum of the object the asset wrote
    metadata: dict[str, Any]  # what the asset reported, shown again when reused
    run_id: str


def input_version(*parts: Any) -> str:
    """A content hash of everything an asset's result depends on."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def memo_path(asset: str) -> str:
    return f"{MEMO_PREFIX}{asset}.json"


def checksum(client: LakeFSClient, ref: str, path: str) -> str | None:
    """The checksum of the object at exactly `path` on `ref`, or None."""
    for info in client.list_objects(ref, path):
        if info.path == path:
            return info.checksum
    return None


def lookup(client: LakeFSClient, ref: str, asset: str, version: str) -> Memo | None:
    """The memo on `ref` if it was made from the same inputs and its outputs are unchanged."""
    try:
        memo = Memo.model_validate_json(client.read(ref, memo_path(asset)))
    except (LakeFSError, ValueError):
        return None
    if memo.asset != asset or memo.input_version != version:
        return None
    for path, expected in memo.outputs.items():
        if checksum(client, ref, path) != expected:
            return None  # an output was rewritten since: recompute
    return memo


def record(
    client: LakeFSClient,
    branch: str,
    asset: str,
    version: str,
    outputs: Iterable[str],
    metadata: Mapping[str, Any],
    run_id: str,
) -> Memo:
    """Write the memo for outputs already uploaded to `branch` (commit it with them)."""
    sums = {}
    for path in outputs:
        found = checksum(client, branch, path)
        if found is None:
            raise LakeFSError(f"memo for {asset}: output {path} is not on {branch}")
        sums[path] = found
    memo = Memo(
        asset=asset, input_version=version, outputs=sums, metadata=dict(metadata), run_id=run_id
    )
    client.upload(branch, memo_path(asset), memo.model_dump_json(indent=2).encode())
    return memo

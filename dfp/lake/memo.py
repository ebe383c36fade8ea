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

from dfp.lake.lakefs_client import LakeFSClient, LakeFSError

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


def listing(client: LakeFSClient, ref: str, prefix: str) -> dict[str, str]:
    """Every object under `prefix` on `ref`: path -> checksum (an input's content version)."""
    return {info.path: info.checksum for info in client.list_objects(ref, prefix)}


def _read(client: LakeFSClient, ref: str, asset: str) -> Memo | None:
    try:
        return Memo.model_validate_json(client.read(ref, memo_path(asset)))
    except (LakeFSError, ValueError):
        return None  # no memo (or an unreadable one): nothing is known of the outputs


def describing(
    client: LakeFSClient, ref: str, asset: str, path: str, found: str | None = None
) -> Memo | None:
    """`asset`'s memo on `ref` when it records the object at `path` as it is there now (its
    checksum; `found` when the caller has it), so its metadata (e.g. an MLflow run) belongs to
    that object; None when the object or the memo is missing, or the memo is of another one."""
    found = found if found is not None else checksum(client, ref, path)
    if found is None:
        return None
    memo = _read(client, ref, asset)
    return memo if memo is not None and memo.outputs.get(path) == found else None


def lookup(
    client: LakeFSClient, ref: str, asset: str, version: str, *, exact_prefix: str | None = None
) -> Memo | None:
    """The memo on `ref` if it was made from the same inputs and its outputs are unchanged.

    With `exact_prefix`, the objects under that prefix must be exactly the memo's outputs
    there: an object added beside them (a dataset replaced as a whole) also means recompute.
    """
    memo = _read(client, ref, asset)
    if memo is None or memo.asset != asset or memo.input_version != version:
        return None
    if exact_prefix is not None:
        recorded = {p: c for p, c in memo.outputs.items() if p.startswith(exact_prefix)}
        if listing(client, ref, exact_prefix) != recorded:
            return None
    for path, expected in memo.outputs.items():
        if exact_prefix is not None and path.startswith(exact_prefix):
            continue  # compared above
        if checksum(client, ref, path) != expected:
            return None  # an output was rewritten since: recompute
    return memo


def record(
    client: LakeFSClient,
    branch: str,
    asset: str,
    version: str,
    outputs: Iterable[str] | Mapping[str, str],
    metadata: Mapping[str, Any],
    run_id: str,
) -> Memo:
    """Write the memo for outputs already uploaded to `branch` (commit it with them)."""
    if isinstance(outputs, Mapping):
        sums = dict(outputs)  # checksums the caller just listed (`listing`)
    else:
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

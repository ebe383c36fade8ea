"""One switch for every memo: the run tag `dfp/reuse=off` recomputes everything the run
selects (e.g. after a change no input version sees, such as a library upgrade)."""

import dagster as dg

from dfp.lake import memo
from dfp.lake.lakefs_client import LakeFSClient

REUSE_TAG = "dfp/reuse"


def reuse_allowed(context: dg.AssetExecutionContext) -> bool:
    value = context.run.tags.get(REUSE_TAG, "on")
    if value not in ("on", "off"):
        raise dg.Failure(f"run tag {REUSE_TAG}={value!r}: want 'on' or 'off'")
    return value == "on"


def lookup(
    context: dg.AssetExecutionContext,
    client: LakeFSClient,
    ref: str,
    asset: str,
    version: str,
    **options,
) -> memo.Memo | None:
    """`memo.lookup`, unless the run asked for no reuse."""
    if not reuse_allowed(context):
        context.log.info(f"{REUSE_TAG}=off: {asset} is computed again")
        return None
    return memo.lookup(client, ref, asset, version, **options)

"""The one partition dimension of every dfp asset: a lakeFS branch."""

from collections.abc import Callable
from typing import Any

import dagster as dg

lakefs_branch_partitions = dg.DynamicPartitionsDefinition(name="lakefs_branch")


def branch_asset(*, group: str, **asset_args: Any) -> Callable[..., dg.AssetsDefinition]:
    """`dg.asset`, partitioned by lakeFS branch like every dfp asset, in UI group `group`."""
    return dg.asset(partitions_def=lakefs_branch_partitions, group_name=group, **asset_args)


def blocking_check(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    """A check that gates write-audit-publish: when it fails, nothing of the run is published."""
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description)

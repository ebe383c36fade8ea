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


def floor_check(
    name: str, *, metric: str, value: float, floor_name: str, floor: float, label: str
) -> dg.AssetCheckResult:
    """The result of a blocking check that a model's `metric` reaches its floor (an ERROR
    when it does not, so nothing of the run is published)."""
    passed = value >= floor
    return dg.AssetCheckResult(
        check_name=name,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={metric: value, floor_name: floor},
        description=f"{label} {value:.4f} {'>=' if passed else '<'} floor {floor}",
    )

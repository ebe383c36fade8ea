"""Declarative automation shared by every domain: an asset follows its parents on the same
lakeFS branch partition once their blocking checks passed."""

import dagster as dg

FOLLOW_PARENTS = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
)


def following_parents(assets: list) -> list:
    """`assets` with FOLLOW_PARENTS as their automation condition (one place sets it)."""
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(automation_condition=FOLLOW_PARENTS), assets
    )

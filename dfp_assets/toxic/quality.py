"""The staging Great Expectations suite as blocking asset checks (glue over
dfp/toxic/expectations.py; `comments_tokenized_checks` in dfp_assets/toxic/staging.py declares
`staging_check_specs` and yields `staging_check_results`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from dfp.toxic.expectations import EXPECTATIONS, SuiteResult


def _check_name(expectation_name: str) -> str:
    return f"ge_{expectation_name}"


def staging_check_specs(asset: str | dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """One blocking check per expectation: any failing one keeps the run from publishing."""
    key = dg.AssetKey.from_coercible(asset)
    # blocking as dfp_assets.platform.partitions.blocking_check, for any (multi-part) key
    return [
        dg.AssetCheckSpec(
            _check_name(e.name),
            asset=key,
            blocking=True,
            description=f"Great Expectations: {e.description}",
        )
        for e in EXPECTATIONS
    ]


def staging_check_results(
    asset: str | dg.AssetKey, suite: SuiteResult, metadata: Mapping[str, Any] | None = None
) -> list[dg.AssetCheckResult]:
    """The suite's result as asset check results, with what failed shown in the UI (and
    `metadata` on each, e.g. the table it read)."""
    key = dg.AssetKey.from_coercible(asset)
    types = {e.name: e.expectation_type for e in EXPECTATIONS}
    results = []
    for r in suite.results:
        shown: dict[str, dg.RawMetadataValue] = {
            **(metadata or {}),
            "expectation": types.get(r.name, r.name),
            "success": r.success,
            "column": r.column,
            "rows": dg.MetadataValue.int(r.element_count),
            "unexpected_count": dg.MetadataValue.int(r.unexpected_count),
        }
        if r.unexpected_values:
            shown["unexpected_values"] = dg.MetadataValue.json(r.unexpected_values)
            shown["unexpected_ids"] = dg.MetadataValue.json(r.unexpected_ids)
        if r.error:
            shown["error"] = dg.MetadataValue.text(r.error)
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=_check_name(r.name),
                passed=r.success,
                severity=dg.AssetCheckSeverity.ERROR,
                description=r.description,
                metadata=shown,
            )
        )
    return results

"""The staging suite's result as blocking Dagster asset checks, one per expectation."""

import dagster as dg

from dfp.toxic.expectations import EXPECTATION_NAMES, ExpectationResult, SuiteResult
from dfp_assets.toxic.quality import staging_check_results, staging_check_specs


def _result(name: str, success: bool, **kw) -> ExpectationResult:
    defaults = dict(
        description=name,
        column="labels",
        element_count=10,
        unexpected_count=0,
        unexpected_values=[],
        unexpected_ids=[],
    )
    return ExpectationResult(name=name, success=success, **{**defaults, **kw})


def test_specs_are_blocking_and_match_the_results():
    specs = staging_check_specs("comments_tokenized")
    suite = SuiteResult(10, [_result(n, True) for n in EXPECTATION_NAMES])
    results = staging_check_results("comments_tokenized", suite)

    assert all(s.blocking for s in specs)
    assert [s.name for s in specs] == [r.check_name for r in results]
    assert len({s.name for s in specs}) == len(EXPECTATION_NAMES)
    assert all(r.passed and r.asset_key == dg.AssetKey("comments_tokenized") for r in results)


def test_a_failed_expectation_shows_its_rows():
    bad = _result(
        "labels_in_0_1",
        False,
        unexpected_count=2,
        unexpected_values=[2, 7],
        unexpected_ids=["a", "b"],
    )
    broken = _result("attention_mask_not_null", False, error='column "attention_mask" missing')
    (failed, errored) = staging_check_results(
        dg.AssetKey(["toxic", "staging"]), SuiteResult(10, [bad, broken])
    )

    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.check_name == "ge_labels_in_0_1"
    assert failed.metadata["unexpected_count"].value == 2
    assert failed.metadata["unexpected_values"].value == [2, 7]
    assert failed.metadata["unexpected_ids"].value == ["a", "b"]
    assert errored.metadata["error"].value == 'column "attention_mask" missing'

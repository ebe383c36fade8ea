"""The Kronodroid raw schema: known layouts, canonical order and the feature set."""

from __future__ import annotations

import random

import pytest

from dfp.kronodroid.schema import (
    DATE_COLUMNS,
    DERIVED_SUBSET_COLUMNS,
    LABEL_LEAKING_COLUMNS,
    Kind,
    Release,
    SchemaMismatch,
    feature_columns,
    kind_of,
    original_columns,
    resolve_columns,
)

REAL, EMU = Release.REAL_DEVICE, Release.EMULATOR
FILE = "some-file.csv"


def _shuffled(columns: tuple[str, ...] | list[str], seed: int = 0) -> list[str]:
    out = list(columns)
    random.Random(seed).shuffle(out)
    return out


def _enhanced_subset() -> list[str]:
    """The real-device "Enhanced Subset" header: dates dropped, four derived columns appended."""
    return [c for c in original_columns(REAL) if c not in DATE_COLUMNS[REAL]] + list(
        DERIVED_SUBSET_COLUMNS
    )


@pytest.mark.parametrize("release", list(Release))
def test_original_layout_passes_in_canonical_order(release):
    original = original_columns(release)
    assert resolve_columns(release, list(original), FILE) == original
    # Any column order in the file is returned in the canonical order.
    assert resolve_columns(release, _shuffled(original), FILE) == original


def test_emulator_without_files_inside_apk_passes():
    present = [c for c in original_columns(EMU) if c != "FilesInsideAPK"]
    resolved = resolve_columns(EMU, _shuffled(present, seed=1), FILE)
    assert "FilesInsideAPK" not in resolved
    assert resolved == tuple(present)


def test_real_device_without_files_inside_apk_fails():
    present = [c for c in original_columns(REAL) if c != "FilesInsideAPK"]
    with pytest.raises(SchemaMismatch, match="FilesInsideAPK"):
        resolve_columns(REAL, present, FILE)


def test_real_device_enhanced_subset_passes():
    present = _enhanced_subset()
    resolved = resolve_columns(REAL, _shuffled(present, seed=2), FILE)
    assert resolved == tuple(present)
    assert resolved[-4:] == DERIVED_SUBSET_COLUMNS
    assert not set(DATE_COLUMNS[REAL]) & set(resolved)
    assert len(resolved) == 486


def test_enhanced_subset_may_keep_the_original_dates():
    present = list(original_columns(REAL)) + list(DERIVED_SUBSET_COLUMNS)
    assert resolve_columns(REAL, present, FILE) == tuple(present)


@pytest.mark.parametrize("extra", [c for c in DERIVED_SUBSET_COLUMNS if c != "Highest-date"])
def test_derived_columns_need_highest_date(extra):
    present = list(original_columns(REAL)) + [extra]
    with pytest.raises(SchemaMismatch, match="unknown column") as exc:
        resolve_columns(REAL, present, FILE)
    assert extra in str(exc.value)


def test_enhanced_subset_without_highest_date_misses_the_dates():
    present = [c for c in _enhanced_subset() if c != "Highest-date"]
    with pytest.raises(SchemaMismatch) as exc:
        resolve_columns(REAL, present, FILE)
    assert "Categories" in str(exc.value)  # unknown without Highest-date


def test_derived_columns_are_not_accepted_on_the_emulator():
    present = list(original_columns(EMU)) + list(DERIVED_SUBSET_COLUMNS)
    with pytest.raises(SchemaMismatch, match="unknown column") as exc:
        resolve_columns(EMU, present, FILE)
    for column in DERIVED_SUBSET_COLUMNS:
        assert column in str(exc.value)


def test_dates_of_the_other_release_are_unknown():
    present = list(original_columns(EMU)) + list(DATE_COLUMNS[REAL])
    with pytest.raises(SchemaMismatch, match="EarliestModDate"):
        resolve_columns(EMU, present, FILE)


@pytest.mark.parametrize("release", list(Release))
def test_missing_label_is_named(release):
    present = [c for c in original_columns(release) if c != "Malware"]
    with pytest.raises(SchemaMismatch) as exc:
        resolve_columns(release, present, FILE)
    message = str(exc.value)
    assert message.startswith(f"{FILE}: ")
    assert "missing required column" in message
    assert "'Malware'" in message


def test_many_missing_columns_are_summarised():
    present = list(original_columns(REAL))[:100]
    with pytest.raises(SchemaMismatch) as exc:
        resolve_columns(REAL, present, FILE)
    missing = len(original_columns(REAL)) - 100
    assert f"(+{missing - 10} more)" in str(exc.value)


def test_unknown_column_is_named():
    present = list(original_columns(REAL)) + ["not_a_kronodroid_column"]
    with pytest.raises(SchemaMismatch) as exc:
        resolve_columns(REAL, present, FILE)
    assert "unknown column" in str(exc.value)
    assert "'not_a_kronodroid_column'" in str(exc.value)
    assert FILE in str(exc.value)


def test_duplicate_columns_fail():
    present = list(original_columns(EMU)) + ["execve"]
    with pytest.raises(SchemaMismatch, match="duplicate") as exc:
        resolve_columns(EMU, present, FILE)
    assert "'execve'" in str(exc.value)


@pytest.mark.parametrize("release", list(Release))
def test_original_columns(release):
    columns = original_columns(release)
    assert len(columns) == 484
    assert len(set(columns)) == 484
    assert columns[:3] == ("Package", "Malware", "execve")
    assert columns[-3:] == ("Scanners", "Detection_Ratio", "MalFamily")
    assert set(DATE_COLUMNS[release]) <= set(columns)
    for column in columns:
        kind_of(column)  # every original column has a kind


def test_feature_columns():
    features = feature_columns()
    assert len(features) == len(set(features))
    assert not set(features) & set(LABEL_LEAKING_COLUMNS)
    assert not {"sha256", "Package", "Malware"} & set(features)
    dates = {c for pair in DATE_COLUMNS.values() for c in pair} | set(DERIVED_SUBSET_COLUMNS)
    assert not dates & set(features)
    assert all(kind_of(c) in (Kind.COUNT, Kind.FLAG, Kind.METRIC) for c in features)
    # Every feature exists in both releases.
    for release in Release:
        assert set(features) <= set(original_columns(release))
    assert {"execve", "nr_syscalls", "nr_permissions", "FilesInsideAPK"} <= set(features)

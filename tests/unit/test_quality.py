"""Raw quality checks (`quality.audit`) on frames as read back from a run branch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from dfp.kronodroid.parse import read_release, read_release_file
from dfp.kronodroid.quality import RawQualityThresholds, audit, to_pandas
from dfp.kronodroid.schema import Release
from dfp.kronodroid.synthetic import generate_release

REAL, EMU = Release.REAL_DEVICE, Release.EMULATOR
N = 1_200
CHECKS = ["raw_schema", "sha256_label_conflicts", "row_count_floor", "label_balance"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    for release, stem in ((REAL, "kronodroid-2021-real-v1"), (EMU, "kronodroid-2021-emu-v1")):
        pq.write_table(generate_release(release, N, seed=11), out / f"{stem}.parquet")
    pq.write_table(generate_release(REAL, 200, seed=12), out / "second-real.parquet")
    return out


@pytest.fixture(scope="module")
def good(data_dir) -> dict[Release, pd.DataFrame]:
    return {
        REAL: to_pandas(read_release_file(data_dir / "kronodroid-2021-real-v1.parquet", REAL)),
        EMU: to_pandas(read_release_file(data_dir / "kronodroid-2021-emu-v1.parquet", EMU)),
    }


def _by_name(frames, limits=None):
    outcomes = audit(frames, limits or RawQualityThresholds())
    assert [o.name for o in outcomes] == CHECKS
    return {o.name: o for o in outcomes}


def _with_labels(df: pd.DataFrame, malware: int) -> pd.DataFrame:
    """A copy whose first `malware` rows are malware and the rest benign."""
    out = df.copy()
    out["Malware"] = pd.array([1] * malware + [0] * (len(df) - malware), dtype="Int64")
    return out


def test_good_synthetic_data_passes_every_check(good):
    result = _by_name(good)
    assert all(o.passed for o in result.values()), {n: o.metadata for n, o in result.items()}
    assert result["raw_schema"].metadata["failures"] == []
    assert result["raw_schema"].metadata["real_device_schema_errors"] == 0
    assert result["raw_schema"].metadata["emulator_schema_errors"] == 0
    assert result["row_count_floor"].metadata == {
        "real_device_rows": N,
        "emulator_rows": N,
        "floor": 1000,
    }
    assert good[EMU]["NrServices"].isna().any()  # the emulator "None" quirk is allowed
    assert str(good[EMU]["NrServices"].dtype) == "Int64"


def test_negative_count_names_file_row_column_and_value(data_dir):
    files = [data_dir / "kronodroid-2021-real-v1.parquet", data_dir / "second-real.parquet"]
    df = to_pandas(read_release(files, REAL))
    assert len(df) == N + 200
    df.loc[N + 4, "execve"] = -3  # row 5 of the second file
    result = _by_name({REAL: df})
    schema = result["raw_schema"]
    assert not schema.passed
    assert schema.metadata["real_device_schema_errors"] == 1
    (failure,) = schema.metadata["failures"]
    assert failure["release"] == "real_device"
    assert failure["file"] == "second-real.parquet"
    assert failure["row"] == 5
    assert failure["column"] == "execve"
    assert failure["value"] == "-3"
    assert "greater_than_or_equal_to(0)" in failure["check"]
    # The other checks are unaffected.
    assert result["row_count_floor"].passed and result["label_balance"].passed


def test_label_outside_0_1_fails(good):
    df = good[EMU].copy()
    df.loc[7, "Malware"] = 2
    result = _by_name({REAL: good[REAL], EMU: df})
    schema = result["raw_schema"]
    assert not schema.passed
    assert schema.metadata["real_device_schema_errors"] == 0
    (failure,) = schema.metadata["failures"]
    assert failure["release"] == "emulator"
    assert (failure["file"], failure["row"], failure["column"], failure["value"]) == (
        "kronodroid-2021-emu-v1.parquet",
        8,
        "Malware",
        "2",
    )
    assert "isin" in failure["check"]


def test_missing_required_column_fails_the_schema(good):
    result = _by_name({REAL: good[REAL].drop(columns=["nr_syscalls"])})
    assert not result["raw_schema"].passed
    failures = result["raw_schema"].metadata["failures"]
    assert any("nr_syscalls" in str(f["value"]) for f in failures)


def _with_conflicts(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Copy the sha256 of k malware rows onto k benign rows (k conflicting values)."""
    out = df.copy()
    malware = out.index[out["Malware"] == 1][:k]
    benign = out.index[out["Malware"] == 0][:k]
    out.loc[benign, "sha256"] = out.loc[malware, "sha256"].to_numpy()
    return out


def test_conflicting_sha256_share(good):
    limits = RawQualityThresholds(max_conflicting_sha256_share=0.01)
    # 9 conflicts among 1,191 distinct values: 0.76 % <= 1 %.
    below = _by_name({REAL: _with_conflicts(good[REAL], 9)}, limits)["sha256_label_conflicts"]
    assert below.passed
    assert below.metadata["real_device_conflicting_sha256"] == 9
    assert below.metadata["real_device_conflicting_share"] == round(9 / (N - 9), 6)
    assert below.metadata["max_share"] == 0.01
    assert len(below.metadata["real_device_examples"]) == 5
    # 13 conflicts among 1,187: 1.1 % > 1 %.
    above = _by_name({REAL: _with_conflicts(good[REAL], 13)}, limits)["sha256_label_conflicts"]
    assert not above.passed
    assert above.metadata["real_device_conflicting_sha256"] == 13


def test_duplicate_sha256_with_the_same_label_is_no_conflict(good):
    df = good[REAL].copy()
    malware = df.index[df["Malware"] == 1]
    df.loc[malware[1:30], "sha256"] = df.loc[malware[0], "sha256"]
    check = _by_name({REAL: df})["sha256_label_conflicts"]
    assert check.passed
    assert check.metadata["real_device_conflicting_sha256"] == 0


def test_default_limit_fails_a_few_conflicts(good):
    # 2 conflicts among 1,198 values = 0.17 % > the default 0.1 %.
    check = _by_name({EMU: _with_conflicts(good[EMU], 2)})["sha256_label_conflicts"]
    assert not check.passed


def test_row_count_floor_boundary(good):
    at_floor = RawQualityThresholds(min_rows_per_release=N)
    assert _by_name({REAL: good[REAL]}, at_floor)["row_count_floor"].passed
    above = RawQualityThresholds(min_rows_per_release=N + 1)
    check = _by_name({REAL: good[REAL]}, above)["row_count_floor"]
    assert not check.passed
    assert check.metadata == {"real_device_rows": N, "floor": N + 1}
    # One release below the floor is enough to fail.
    mixed = {REAL: good[REAL], EMU: good[EMU].iloc[: N - 1]}
    check = _by_name(mixed, at_floor)["row_count_floor"]
    assert not check.passed
    assert check.metadata["emulator_rows"] == N - 1


def test_label_balance_band(good):
    df = _with_labels(good[REAL], 120)  # exactly 10 % malware
    frames = {REAL: df}
    check = _by_name(frames, RawQualityThresholds(malware_share_min=0.1))["label_balance"]
    assert check.passed
    assert check.metadata["real_device_malware_share"] == 0.1
    assert _by_name(frames, RawQualityThresholds(malware_share_max=0.1))["label_balance"].passed
    low = _by_name(frames, RawQualityThresholds(malware_share_min=0.11))["label_balance"]
    assert not low.passed
    assert low.metadata["band"] == "[0.11, 0.98]"
    high = _by_name(frames, RawQualityThresholds(malware_share_max=0.09))["label_balance"]
    assert not high.passed


def test_all_benign_fails_label_balance(good):
    check = _by_name({EMU: _with_labels(good[EMU], 0)})["label_balance"]
    assert not check.passed
    assert check.metadata["emulator_malware_share"] == 0.0


def test_no_frames_fails_floor_and_balance():
    result = _by_name({})
    assert not result["row_count_floor"].passed
    assert not result["label_balance"].passed
    assert result["raw_schema"].passed  # nothing to validate
    assert result["sha256_label_conflicts"].passed


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        RawQualityThresholds(malware_share_min=1.5)
    with pytest.raises(ValueError):
        RawQualityThresholds(min_rows_per_release=-1)

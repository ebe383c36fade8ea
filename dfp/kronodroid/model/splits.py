"""Train/test splits over mart rows, returned as sorted positional index arrays (int64).

`temporal_split` holds out the newest apps, the honest setting for malware detection (a model
is always applied to apps newer than the ones it learnt from):

* the test side is every row dated on or after a cutoff date, the train side everything
  else, so every train date is strictly older than every test date;
* rows sharing a date are never separated: the cutoff is the distinct date for which the test
  side's size is closest to ``round(test_fraction * n_rows)``; on a tie the smaller test side
  wins. The test share therefore only approximates ``test_fraction`` when dates are coarse;
* rows with a null date (no usable timestamp) always go to train: they can't be placed in
  time, and a test set must be strictly newer than its training data. They still count in
  ``n_rows`` for the target size;
* a split that would leave a side empty, or (when labels are given) a side with a single
  class, raises ValueError with the row and class counts.

`random_split` is a label-stratified random split (sklearn's ``train_test_split``).

`summarize_split` reports a split's class counts and date ranges, and `share_warning` says
when the test side's malware share is far from the train side's (a test side that is mostly
one class makes F1/precision/recall say little about the other).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


def _class_counts(labels: np.ndarray) -> str:
    counts = class_counts(labels)
    return f"benign {counts.benign}, malware {counts.malware}"


def _as_datetimes(event_dates: Sequence[Any] | np.ndarray | pd.Series) -> pd.Series:
    import pandas as pd

    series = pd.Series(event_dates).reset_index(drop=True)
    try:
        dates = pd.to_datetime(series, errors="raise")
    except (TypeError, ValueError) as error:
        raise ValueError(f"event_dates could not be read as dates: {error}") from error
    if dates.dt.tz is not None:
        dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
    return dates


def temporal_split(
    event_dates: Sequence[Any] | np.ndarray | pd.Series,
    test_fraction: float = 0.2,
    *,
    labels: Sequence[int] | np.ndarray | pd.Series | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (train_idx, test_idx) with the newest dated rows in test.

    ``event_dates`` may hold ``datetime.date``/``datetime``/``pd.Timestamp``/``datetime64``
    values or ISO strings; ``None``/``NaT``/``NaN`` are null dates and go to train. Positions
    are 0-based, in input order (a Series' index is ignored). See the module docstring for
    how the cutoff is chosen and how ties and nulls are handled. Pass ``labels`` (0/1) to
    also reject a split with a single-class side.
    """
    import numpy as np
    import pandas as pd

    _check_fraction(test_fraction)
    dates = _as_datetimes(event_dates)
    n_rows = len(dates)
    null = dates.isna().to_numpy()
    n_null = int(null.sum())
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (n_rows,):
            raise ValueError(f"labels has shape {y.shape} but event_dates has {n_rows} rows")

    dated_values = dates[~null].to_numpy(dtype="datetime64[ns]")
    distinct, counts = np.unique(dated_values, return_counts=True)
    # test_sizes[j]: rows dated on or after distinct[j] (decreasing in j).
    test_sizes = np.cumsum(counts[::-1])[::-1]
    possible = test_sizes < n_rows  # the train side must keep at least one row
    if not possible.any():
        if n_rows == 0:
            reason = "there are no rows"
        elif distinct.size == 0:
            reason = f"all {n_rows} rows have a null date (null dates go to train)"
        else:
            reason = (
                f"all {n_rows} rows share the date {pd.Timestamp(distinct[0]).date()} and none "
                "has a null date, so ties keep them on one side"
            )
        raise ValueError(f"temporal split would leave a side empty: {reason}")

    target = max(1, round(test_fraction * n_rows))
    candidates = np.flatnonzero(possible)
    distance = np.abs(test_sizes[candidates] - target)
    # argmin returns the first minimum; scanning from the newest cutoff makes ties pick the
    # smaller test side.
    chosen = candidates[::-1][int(np.argmin(distance[::-1]))]
    cutoff = distinct[chosen]

    all_values = dates.to_numpy(dtype="datetime64[ns]")
    test_mask = ~null & (all_values >= cutoff)
    train_idx = np.flatnonzero(~test_mask).astype(np.int64)
    test_idx = np.flatnonzero(test_mask).astype(np.int64)

    if labels is not None:
        y_train, y_test = y[train_idx], y[test_idx]
        single = [
            name
            for name, side in (("train", y_train), ("test", y_test))
            if np.unique(side).size < 2
        ]
        if single:
            raise ValueError(
                f"temporal split (test = dates >= {pd.Timestamp(cutoff).date()}) leaves a "
                f"single class on the {' and '.join(single)} side: train {train_idx.size} rows "
                f"({_class_counts(y_train)}; {n_null} with a null date), test {test_idx.size} "
                f"rows ({_class_counts(y_test)})"
            )
    return train_idx, test_idx


def random_split(
    labels: Sequence[int] | np.ndarray | pd.Series,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Label-stratified random split of positions into sorted (train_idx, test_idx).

    Reproducible for a given ``seed``. Each class needs at least two rows (sklearn's rule for
    stratification); a single class raises ValueError.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split  # slow import: only when needed

    _check_fraction(test_fraction)
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(
            f"random split needs both classes, but all {y.shape[0]} labels are {classes[0]!r}"
        )
    train_idx, test_idx = train_test_split(
        np.arange(y.shape[0], dtype=np.int64),
        test_size=test_fraction,
        random_state=seed,
        shuffle=True,
        stratify=y,
    )
    return np.sort(train_idx), np.sort(test_idx)


#: Default for `share_warning`: the test side's malware share may be at most this many times
#: the train side's (or that divided by it) before a report warns.
DEFAULT_SHARE_FACTOR = 1.5


class ClassCounts(BaseModel):
    """Rows of each class on one side of a split."""

    model_config = ConfigDict(frozen=True)

    benign: int
    malware: int

    @property
    def n(self) -> int:
        return self.benign + self.malware

    @property
    def malware_share(self) -> float:
        return self.malware / self.n if self.n else math.nan


class SplitSummary(BaseModel):
    """What a report needs to say about a split: the class counts of both sides and the date
    range of each (ISO dates, None when a side has no dated row)."""

    model_config = ConfigDict(frozen=True)

    train: ClassCounts
    test: ClassCounts
    train_dates: tuple[str, str] | None
    test_dates: tuple[str, str] | None


def class_counts(labels: Sequence[int] | np.ndarray | pd.Series) -> ClassCounts:
    """Benign (0) and malware (1) counts; any other label is a ValueError naming it."""
    import numpy as np

    from dfp.kronodroid.model.metrics import check_labels

    flat = np.asarray(labels).reshape(-1)
    y = check_labels(flat, flat.shape[0])
    n_malware = int((y == 1).sum())
    return ClassCounts(benign=int(y.shape[0]) - n_malware, malware=n_malware)


def date_range(event_dates: Sequence[Any] | np.ndarray | pd.Series) -> tuple[str, str] | None:
    """(earliest, latest) calendar date as ISO strings, null dates ignored; None when no row
    has a date."""
    dates = _as_datetimes(event_dates).dropna()
    if dates.empty:
        return None
    return dates.min().date().isoformat(), dates.max().date().isoformat()


def summarize_split(
    labels: Sequence[int] | np.ndarray | pd.Series,
    event_dates: Sequence[Any] | np.ndarray | pd.Series,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
) -> SplitSummary:
    """Class counts and date ranges of both sides of a split given as positions."""
    import numpy as np

    y = np.asarray(labels).reshape(-1)
    dates = _as_datetimes(event_dates)
    if len(dates) != y.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} rows but event_dates has {len(dates)}")
    return SplitSummary(
        train=class_counts(y[train_idx]),
        test=class_counts(y[test_idx]),
        train_dates=date_range(dates.iloc[train_idx]),
        test_dates=date_range(dates.iloc[test_idx]),
    )


def share_ratio(train: ClassCounts, test: ClassCounts) -> float:
    """How many times larger one side's malware share is than the other's (>= 1; inf when
    exactly one side has no malware, NaN when a side is empty or neither has malware)."""
    a, b = train.malware_share, test.malware_share
    if math.isnan(a) or math.isnan(b) or a == b == 0:
        return math.nan
    if a == 0 or b == 0:
        return math.inf
    return max(a / b, b / a)


def share_warning(
    name: str, summary: SplitSummary, factor: float = DEFAULT_SHARE_FACTOR
) -> str | None:
    """A warning line when the test side's malware share differs from the train side's by more
    than ``factor`` (either way), else None. ``factor`` must be >= 1."""
    if not factor >= 1.0:
        raise ValueError(f"share factor must be >= 1, got {factor}")
    ratio = share_ratio(summary.train, summary.test)
    if math.isnan(ratio) or ratio <= factor:
        return None
    test, train = summary.test.malware_share, summary.train.malware_share
    more = "more" if test > train else "less"
    return (
        f"{name} split: the test side is {test:.1%} malware ({summary.test.malware} of "
        f"{summary.test.n}), the train side {train:.1%} ({summary.train.malware} of "
        f"{summary.train.n}), {ratio:.2f}x apart (more than {factor:g}x). The test side holds "
        f"{more} malware than training did, and F1, precision and recall shift with that "
        "balance; read PR-AUC, MCC and the class counts beside them."
    )

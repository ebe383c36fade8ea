"""The markdown report of a training run: metrics of each model on each split side by side,
each split's class counts and date ranges, and a warning line per split whose test side's
malware share is far from its train side's (`share_warning`). No Dagster."""

from __future__ import annotations

from collections.abc import Mapping

from dfp.kronodroid.model.metrics import Metrics
from dfp.kronodroid.model.splits import DEFAULT_SHARE_FACTOR, SplitSummary, share_warning

#: Rows of the metrics table, in order.
METRIC_ROWS = ("f1", "precision", "recall", "roc_auc", "pr_auc", "mcc", "accuracy")
COUNT_ROWS = ("tn", "fp", "fn", "tp")


def metrics_table(models: Mapping[str, Mapping[str, Metrics]]) -> str:
    """One column per (split, model), split-major: ``models`` maps a model's label to its
    metrics by split name; every model must have the same splits."""
    labels = list(models)
    splits = list(models[labels[0]]) if labels else []
    for label in labels:
        if list(models[label]) != splits:
            raise ValueError(f"model {label!r} has splits {list(models[label])}, expected {splits}")
    columns = [(split, label) for split in splits for label in labels]
    rows = [
        "| metric | " + " | ".join(f"{label} ({split})" for split, label in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for key in (*METRIC_ROWS, *COUNT_ROWS):
        cells = []
        for split, label in columns:
            value = models[label][split].as_dict()[key]
            cells.append(f"{int(value)}" if key in COUNT_ROWS else f"{value:.4f}")
        rows.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def split_table(splits: Mapping[str, SplitSummary]) -> str:
    """Class counts, malware share and date range of each side of each split."""
    rows = [
        "| split | side | rows | benign | malware | malware share | dates |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, summary in splits.items():
        for side in ("train", "test"):
            counts = getattr(summary, side)
            dates = getattr(summary, f"{side}_dates")
            shown = f"{dates[0]} to {dates[1]}" if dates else "none dated"
            rows.append(
                f"| {name} | {side} | {counts.n} | {counts.benign} | {counts.malware} | "
                f"{counts.malware_share:.1%} | {shown} |"
            )
    return "\n".join(rows)


def share_warnings(
    splits: Mapping[str, SplitSummary], factor: float = DEFAULT_SHARE_FACTOR
) -> list[str]:
    """The `share_warning` line of each split that has one, in split order."""
    found = (share_warning(name, summary, factor) for name, summary in splits.items())
    return [line for line in found if line is not None]


def report_markdown(
    models: Mapping[str, Mapping[str, Metrics]],
    splits: Mapping[str, SplitSummary],
    factor: float = DEFAULT_SHARE_FACTOR,
    note: str = "",
) -> str:
    """The metrics table, then the split table, then a **Warning** line per
    `share_warnings` entry; ``note`` (e.g. what the baseline is) goes under the tables."""
    parts = [metrics_table(models), split_table(splits)]
    if note:
        parts.append(note)
    parts.extend(f"**Warning:** {line}" for line in share_warnings(splits, factor))
    return "\n\n".join(parts)

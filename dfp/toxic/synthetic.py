"""Synthetic comments shaped like the shared sample, for scale tests (no real text needed).

Shape taken from ../shared/data/toxic_comments (10,000 comments): 9.7 % toxic; length in
characters roughly log-normal with median 206 (deciles 49 … 883), 14 to 5,000; 59 % contain
embedded newlines; the same CSV layout (`comment_text`, `labels`, no ids). Seeded and
deterministic: the same (rows, seed) gives the same bytes. Full size is 160,000 comments, the
order of magnitude of the Jigsaw training set. Pure logic (no Dagster).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FULL_ROWS = 160_000
TOXIC_SHARE = 0.097
NEWLINE_SHARE = 0.594
MEDIAN_CHARS = 206
#: log-normal sigma fitted to the sample's 10 % and 90 % length quantiles (49 and 883).
LENGTH_SIGMA = 1.13
MIN_CHARS, MAX_CHARS = 14, 5_000
_POOL_WORDS = 200_000

_WORDS = (
    "the article page edit talk section source please thanks would think that this with from "
    "have been about which there their should could also more some other because sources "
    "reference citation wikipedia editors revert vandalism discussion consensus policy image "
    "template link added removed deleted information notable notability user comment review "
    "history version content fact question answer agree disagree sorry hello regards help "
    "change changes article's you your here what when where why how not just like only very"
).split()
#: Mild stand-ins for the abusive words of real toxic comments: what makes a comment toxic here.
_TOXIC_WORDS = "idiot stupid moron loser pathetic dumb shut ignorant clown garbage".split()


def comment_count(scale: float) -> int:
    return max(1, round(FULL_ROWS * scale))


def generate(rows: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """`rows` distinct comments and their labels."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < TOXIC_SHARE).astype(np.int64)
    lengths = np.clip(
        np.round(rng.lognormal(np.log(MEDIAN_CHARS), LENGTH_SIGMA, rows)), MIN_CHARS, MAX_CHARS
    ).astype(int)
    newline = rng.random(rows) < NEWLINE_SHARE
    # A pool of random words, sliced at random offsets: vectorized draws, cheap slicing.
    pool = " ".join([_WORDS[j] for j in rng.integers(0, len(_WORDS), size=_POOL_WORDS)])
    offsets = rng.integers(0, len(pool) - MAX_CHARS, size=rows)
    toxic = np.array(_TOXIC_WORDS)[rng.integers(0, len(_TOXIC_WORDS), size=rows)]
    texts: list[str] = []
    for i in range(rows):
        # A talk-page signature makes every comment distinct (its id is a hash of its text).
        signature = f" (talk) user{i}"
        budget = max(int(lengths[i]) - len(signature) - (2 if newline[i] else 0), 2)
        if labels[i]:
            word = str(toxic[i])
            head = (word.upper() if i % 3 == 0 else word) + " "
        else:
            head = ""
        take = max(budget - len(head), 1)
        start = int(offsets[i])
        body = (head + pool[start : start + take]).strip() or "ok"
        if newline[i] and len(body) > 1:
            cut = len(body) // 2
            body = f"{body[:cut]}\n\n{body[cut:]}"
        texts.append(body + signature)
    return texts, labels.tolist()


def write_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """A CSV file like the sample's (quoted embedded newlines, header comment_text,labels)."""
    texts, labels = generate(rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["comment_text", "labels"])
        writer.writerows(zip(texts, labels, strict=True))
    return path

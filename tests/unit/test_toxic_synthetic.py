"""The synthetic comments: deterministic, shaped like the shared sample, readable as a source."""

import statistics

from dfp.toxic import synthetic
from dfp.toxic.quality import RawQualityThresholds, audit
from dfp.toxic.sources import read_source


def test_deterministic_per_seed(tmp_path):
    a = synthetic.write_csv(tmp_path / "a.csv", 2000, seed=3).read_bytes()
    b = synthetic.write_csv(tmp_path / "b.csv", 2000, seed=3).read_bytes()
    c = synthetic.write_csv(tmp_path / "c.csv", 2000, seed=4).read_bytes()
    assert a == b and a != c


def test_shape_follows_the_sample(tmp_path):
    path = synthetic.write_csv(tmp_path / "s.csv", 20_000, seed=0)
    comments = read_source(path, source="synthetic")
    assert len(comments.ids) == 20_000 and comments.duplicates_collapsed == 0
    lengths = [len(t) for t in comments.texts]
    assert 0.085 < sum(comments.labels) / len(lengths) < 0.11
    assert 185 < statistics.median(lengths) < 230
    assert max(lengths) <= synthetic.MAX_CHARS and min(lengths) >= synthetic.MIN_CHARS
    assert 0.56 < sum("\n" in t for t in comments.texts) / len(lengths) < 0.63
    deciles = statistics.quantiles(lengths, n=10)
    assert 35 < deciles[0] < 65 and 700 < deciles[-1] < 1100  # sample: 49 and 883
    assert all(o.passed for o in audit(comments.to_arrow(), RawQualityThresholds()))


def test_full_size():
    assert synthetic.comment_count(1.0) == 160_000
    assert synthetic.comment_count(0.01) == 1_600

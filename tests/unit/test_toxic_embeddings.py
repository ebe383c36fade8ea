"""comment_embeddings' cache: vectors are keyed by what they depend on (encoder, maximum length,
token ids), so only new or changed comments are encoded; the table round-trips."""

import numpy as np
import pytest

from dfp.toxic.embeddings import (
    CleanRows,
    compute_embeddings,
    content_key,
    read_cache,
    read_embeddings,
    to_parquet,
)
from dfp.toxic.encoder import EncoderSpec, embed, identity, load_encoder
from dfp.toxic.tokenize import encode

TEXTS = [
    "Please stop vandalising the page.",
    "what a stupid idiotic edit, you moron",
    "I've added two sources to the history section.",
    "Agreed, merge them.",
    "This is garbage and so are you",
    "Welcome to Wikipedia!",
]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def rows(texts: list[str]) -> CleanRows:
    ids = encode(texts, 512)[0]
    return CleanRows(
        ids=[f"c{i}" for i in range(len(texts))], labels=[0] * len(texts), token_ids=ids
    )


def run(clean: CleanRows, cache: dict, encoder, max_length: int = 128):
    calls = []

    def load():
        calls.append(1)
        return encoder

    result = compute_embeddings(
        clean,
        cache,
        encoder=load,
        identity=identity(EncoderSpec()),
        max_length=max_length,
        batch_size=4,
        threads=1,
    )
    return result, len(calls)


def test_only_comments_missing_from_the_cache_are_encoded(encoder):
    first, loads = run(rows(TEXTS[:4]), {}, encoder)
    assert (first.encoded, first.reused, loads) == (4, 0, 1)
    cache = read_cache(to_parquet(first.table))
    assert len(cache) == 4

    second, _ = run(rows(TEXTS), cache, encoder)
    assert (second.encoded, second.reused) == (2, 4)
    table = read_embeddings(to_parquet(second.table))
    assert table.matrix.shape == (6, 3 * 384) and table.max_length == 128
    assert table.encoder["digest"] == identity(EncoderSpec()).digest
    direct = embed(encoder, encode(TEXTS, 512)[0], threads=1)
    np.testing.assert_allclose(table.matrix, direct, atol=1e-5)

    # Nothing new: the encoder is not even loaded.
    third, loads = run(rows(TEXTS), read_cache(to_parquet(second.table)), encoder)
    assert (third.encoded, third.reused, loads) == (0, 6, 0)
    np.testing.assert_array_equal(read_embeddings(to_parquet(third.table)).matrix, table.matrix)


def test_a_changed_text_or_length_is_encoded_again(encoder):
    base, _ = run(rows(TEXTS), {}, encoder)
    cache = read_cache(to_parquet(base.table))
    edited = list(TEXTS)
    edited[1] = "what an edit"
    changed, _ = run(rows(edited), cache, encoder)
    assert changed.encoded == 1
    longer, _ = run(rows(TEXTS), cache, encoder, max_length=64)
    assert longer.encoded == 6


def test_content_key_depends_on_encoder_length_and_tokens():
    ids = [101, 7592, 102]
    key = content_key("sha256:a", 128, ids)
    assert key == content_key("sha256:a", 128, list(ids))
    assert key != content_key("sha256:b", 128, ids)
    assert key != content_key("sha256:a", 64, ids)
    assert key != content_key("sha256:a", 128, [101, 7593, 102])
    # Tokens beyond the maximum length do not change the key (nor the vector).
    long = [101] + [7592] * 200 + [102]
    assert content_key("sha256:a", 16, long) == content_key("sha256:a", 16, long[:15] + [102])


def test_clean_rows_digest_sees_every_value():
    a = CleanRows(ids=["x", "y"], labels=[0, 1], token_ids=[[101, 102], [101, 5, 102]])
    assert a.digest == CleanRows(a.ids, a.labels, a.token_ids).digest
    assert a.digest != CleanRows(a.ids, [1, 1], a.token_ids).digest
    assert a.digest != CleanRows(a.ids, a.labels, [[101, 102], [101, 6, 102]]).digest

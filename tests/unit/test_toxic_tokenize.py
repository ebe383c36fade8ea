"""The WordPiece tokenizer: bert-base-uncased ids, truncation, padding, clear errors."""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from dfp.toxic.records import comment_id
from dfp.toxic.tokenize import (
    TOKENIZED_SCHEMA,
    TokenizeError,
    encode,
    tokenize_batch,
    tokenize_record_batches,
    vocab_path,
)

SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "toxic_comments"
SAMPLE_CSV = SAMPLE / "text_comment_1.csv"

CRAFTED = [
    "Hello, world!",
    "Héllo wörld, naïve café — Ångström ÉCOLE",
    "日本語のコメント 中文 한국어",
    "emoji 🙂🔥 and zero\u200bwidth and control\x07chars",
    "   \n\t  ",  # empty after strip
    "",
    "x" * 300,  # one word longer than WordPiece's 100-character limit
    "don't!!! WHY??? e.g. U.S.A. 3.14 $100 #tag @user http://example.com/a?b=c",
    " ".join(["antidisestablishmentarianism"] * 400),  # far more than 512 tokens
]


def crafted_table() -> pa.Table:
    return pa.table(
        {
            "id": [comment_id(t) for t in CRAFTED],
            "comment_text": CRAFTED,
            "labels": [i % 2 for i in range(len(CRAFTED))],
        }
    )


def sample_table() -> pa.Table:
    if not SAMPLE_CSV.exists():
        pytest.skip(f"shared sample absent: {SAMPLE_CSV}")
    table = pacsv.read_csv(SAMPLE_CSV, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    ids = [comment_id(t) for t in table["comment_text"].to_pylist()]
    return table.append_column("id", pa.array(ids))


def reference_ids(texts: list[str], max_length: int = 512) -> list[list[int]]:
    """transformers' DistilBertTokenizer on the same vocab (argument `vocab` in v5)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import DistilBertTokenizer

    tok = DistilBertTokenizer(vocab=str(vocab_path()))
    return tok(texts, truncation=True, max_length=max_length)["input_ids"]


def legacy_ids(texts: list[str], max_length: int = 512) -> list[list[int]]:
    """transformers' pure-Python BERT tokenizer: an implementation independent of Rust's."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    tok = BertTokenizerLegacy(vocab_file=str(vocab_path()), do_lower_case=True)
    return [tok(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]


def test_hello_world_is_bert_base_uncased():
    ids, mask = encode(["Hello, world!"])
    assert ids == [[101, 7592, 1010, 2088, 999, 102]]
    assert mask == [[1] * 6]


def test_crafted_texts_match_transformers_and_the_python_tokenizer():
    out = tokenize_batch(crafted_table())
    ids = out["input_ids"].to_pylist()
    assert ids == reference_ids(CRAFTED)
    assert ids == legacy_ids(CRAFTED)
    assert ids[4] == [101, 102] and ids[5] == [101, 102]  # empty after strip: just the specials
    assert ids[6] == [101, 100, 102]  # over-long word → [UNK]
    assert len(ids[-1]) == 512 and ids[-1][-1] == 102  # truncated, [SEP] kept
    assert out.schema == TOKENIZED_SCHEMA


def test_sample_matches_transformers():
    table = sample_table()
    ours = tokenize_batch(table)["input_ids"].to_pylist()
    texts = table["comment_text"].to_pylist()
    assert ours == reference_ids(texts)
    assert ours[:300] == legacy_ids(texts[:300])
    assert max(map(len, ours)) == 512


def test_max_length_and_padding():
    table = crafted_table()
    short = tokenize_batch(table, max_length=8)
    assert all(len(r) <= 8 for r in short["input_ids"].to_pylist())
    assert short["input_ids"].to_pylist() == reference_ids(CRAFTED, max_length=8)
    padded = tokenize_batch(table, max_length=16, padding=True)
    first = padded.slice(0, 1).to_pylist()[0]
    assert first["input_ids"] == [101, 7592, 1010, 2088, 999, 102] + [0] * 10
    assert first["attention_mask"] == [1] * 6 + [0] * 10


def test_record_batches_give_the_same_rows_as_one_table():
    table = crafted_table()
    whole = tokenize_batch(table)
    streamed = pa.Table.from_batches(
        list(tokenize_record_batches(table.to_batches(max_chunksize=2), batch_rows=3))
    )
    assert streamed.equals(whole)


def test_bad_input_names_row_and_column():
    table = crafted_table()
    texts = table["comment_text"].to_pylist()
    texts[3] = None
    with pytest.raises(TokenizeError, match=r"row 3 \(id='.*'\): column comment_text is null"):
        tokenize_batch(table.set_column(1, "comment_text", pa.array(texts, pa.string())))
    with pytest.raises(TokenizeError, match="missing column.*labels"):
        tokenize_batch(table.drop_columns(["labels"]))
    with pytest.raises(TokenizeError, match="labels"):
        tokenize_batch(table.set_column(2, "labels", pa.array([1000] * table.num_rows)))

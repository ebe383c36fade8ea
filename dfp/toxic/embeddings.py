"""`comment_embeddings`: the encoder's pooled vector per comment of a branch's `table_clean`,
memoized by comment content (pure logic, no Dagster).

Each row's key is a hash of what its vector depends on: the encoder's identity digest, the
maximum length and the token ids after truncation. The branch's embeddings table (one parquet
object, inherited by branches with the data) is the cache: a new run keeps every vector whose
key it already has and encodes only the rest, so a branch that adds 100 comments encodes 100.
A comment whose text changed has other token ids, hence another key, and is encoded again.

Table: id, labels, content_key, embedding (fixed-size list of float32), sorted by id; the
schema metadata names the encoder and the maximum length.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dfp.toxic.encoder import EncoderIdentity, embed, truncate
from dfp.toxic.records import ID, LABEL

if TYPE_CHECKING:
    import numpy as np
    import torch

EMBEDDINGS_OBJECT = "embeddings/toxic_comments/embeddings.parquet"
CONTENT_KEY = "content_key"
EMBEDDING = "embedding"
META_ENCODER = b"dfp.encoder"
META_MAX_LENGTH = b"dfp.max_length"


def content_key(encoder_digest: str, max_length: int, token_ids: Sequence[int]) -> str:
    """What a comment's vector depends on, hashed."""
    digest = hashlib.sha256(f"{encoder_digest}\0{max_length}\0".encode())
    digest.update(",".join(map(str, truncate(token_ids, max_length))).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CleanRows:
    """table_clean as read: ids, labels, token ids (sorted by id), and a content digest."""

    ids: list[str]
    labels: list[int]
    token_ids: list[list[int]]

    @property
    def digest(self) -> str:
        digest = hashlib.sha256()
        for comment, label, ids in zip(self.ids, self.labels, self.token_ids, strict=True):
            digest.update(f"{comment}\0{label}\0{','.join(map(str, ids))}\n".encode())
        return "sha256:" + digest.hexdigest()


def read_clean(dsn: str, schema: str, table: str = "table_clean") -> CleanRows:
    """Every row of `schema.table` (id, labels, input_ids as jsonb), sorted by id."""
    from psycopg2 import sql

    from dfp.lake import pg_branches

    conn = pg_branches.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT id::text, labels, input_ids FROM {}.{} ORDER BY id::text").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    for comment, _label, ids in rows:
        if not isinstance(ids, list) or not all(isinstance(v, int) for v in ids):
            raise ValueError(f"{schema}.{table}: id {comment}: input_ids is not a list of ints")
    return CleanRows(
        ids=[r[0] for r in rows], labels=[int(r[1]) for r in rows], token_ids=[r[2] for r in rows]
    )


def read_cache(data: bytes | None) -> dict[str, np.ndarray]:
    """content_key → vector of an embeddings table (empty without one)."""
    import numpy as np
    import pyarrow.parquet as pq

    if data is None:
        return {}
    table = pq.read_table(io.BytesIO(data), columns=[CONTENT_KEY, EMBEDDING])
    if table.num_rows == 0:
        return {}
    keys = table.column(CONTENT_KEY).to_pylist()
    flat = table.column(EMBEDDING).combine_chunks()
    vectors = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(
        table.num_rows, -1
    )
    return dict(zip(keys, vectors, strict=True))


@dataclass(frozen=True)
class EmbeddingsResult:
    table: pa.Table
    encoded: int  # comments the encoder ran on in this call
    reused: int  # comments whose vector came from the cache
    encode_seconds: float

    @property
    def comments_per_second(self) -> float:
        return self.encoded / self.encode_seconds if self.encode_seconds > 0 else 0.0


def compute_embeddings(
    rows: CleanRows,
    cache: dict[str, np.ndarray],
    *,
    encoder: Callable[[], torch.nn.Module],
    identity: EncoderIdentity,
    max_length: int,
    batch_size: int,
    threads: int,
    log: Callable[[str], None] | None = None,
) -> EmbeddingsResult:
    """The embeddings table of `rows`, encoding only the keys `cache` lacks (`encoder` is
    called only when there is something to encode)."""
    import numpy as np

    keys = [content_key(identity.digest, max_length, ids) for ids in rows.token_ids]
    missing: dict[str, list[int]] = {}
    for key, ids in zip(keys, rows.token_ids, strict=True):
        if key not in cache and key not in missing:
            missing[key] = ids
    if log is not None:
        log(
            f"{len(rows.ids):,} comments: {len(rows.ids) - sum(k in missing for k in keys):,} "
            f"vectors from the branch's embeddings, {len(missing):,} distinct to encode"
        )
    started = time.monotonic()
    fresh: dict[str, np.ndarray] = {}
    if missing:
        vectors = embed(
            encoder(),
            list(missing.values()),
            max_length=max_length,
            batch_size=batch_size,
            threads=threads,
            log=log,
        )
        fresh = dict(zip(missing, vectors, strict=True))
    seconds = time.monotonic() - started
    dim = len(next(iter(fresh.values()))) if fresh else len(next(iter(cache.values()), []))
    if rows.ids and dim == 0:
        raise ValueError("no vectors: the cache is empty and nothing was encoded")
    matrix = np.zeros((len(keys), dim), dtype=np.float32)
    for row, key in enumerate(keys):
        matrix[row] = fresh[key] if key in fresh else cache[key]
    table = embeddings_table(rows.ids, rows.labels, keys, matrix, identity, max_length)
    return EmbeddingsResult(
        table=table,
        encoded=len(missing),
        reused=len(keys) - sum(k in fresh for k in keys),
        encode_seconds=seconds,
    )


def embeddings_table(
    ids: Sequence[str],
    labels: Sequence[int],
    keys: Sequence[str],
    matrix: np.ndarray,
    identity: EncoderIdentity,
    max_length: int,
) -> pa.Table:
    dim = int(matrix.shape[1]) if matrix.ndim == 2 else 0
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    schema = pa.schema(
        [
            pa.field(ID, pa.string(), nullable=False),
            pa.field(LABEL, pa.int8(), nullable=False),
            pa.field(CONTENT_KEY, pa.string(), nullable=False),
            pa.field(EMBEDDING, pa.list_(pa.float32(), dim), nullable=False),
        ],
        metadata={
            META_ENCODER: json.dumps(identity.as_dict(), sort_keys=True).encode(),
            META_MAX_LENGTH: str(max_length).encode(),
        },
    )
    return pa.Table.from_arrays(
        [
            pa.array(list(ids), pa.string()),
            pa.array(list(labels), pa.int8()),
            pa.array(list(keys), pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, dim),
        ],
        schema=schema,
    )


def to_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


@dataclass(frozen=True)
class EmbeddingsTable:
    ids: list[str]
    labels: np.ndarray
    matrix: np.ndarray
    encoder: dict[str, Any]
    max_length: int


def read_embeddings(data: bytes) -> EmbeddingsTable:
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    meta = table.schema.metadata or {}
    flat = table.column(EMBEDDING).combine_chunks()
    matrix = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32)
    return EmbeddingsTable(
        ids=table.column(ID).to_pylist(),
        labels=table.column(LABEL).to_numpy().astype(np.int64),
        matrix=matrix.reshape(table.num_rows, -1),
        encoder=json.loads(meta.get(META_ENCODER, b"{}")),
        max_length=int(meta.get(META_MAX_LENGTH, b"0")),
    )


@dataclass(frozen=True)
class TrainingInputs:
    """What the toxicity model trains on at a ref: the embeddings and each comment's text."""

    embeddings: EmbeddingsTable
    texts: list[str]
    checksum: str  # lakeFS checksum of the embeddings object read


def training_inputs(client: Any, ref: str) -> TrainingInputs:
    """The embeddings table on `ref` (a branch or commit) and the comments_raw text of each of
    its ids; a ValueError names what is missing."""
    from dfp.lake import memo
    from dfp.toxic.load import read_comments

    checksum = memo.checksum(client, ref, EMBEDDINGS_OBJECT)
    if checksum is None:
        raise ValueError(f"{EMBEDDINGS_OBJECT} is not on {ref}: materialize comment_embeddings")
    table = read_embeddings(client.read(ref, EMBEDDINGS_OBJECT))
    raw = read_comments(client, ref)
    texts_by_id = dict(
        zip(raw.column(ID).to_pylist(), raw.column("comment_text").to_pylist(), strict=True)
    )
    missing = [i for i in table.ids if i not in texts_by_id]
    if missing:
        raise ValueError(
            f"{len(missing)} embedded comments are not in comments_raw on {ref} (first id "
            f"{missing[0]}): rebuild comment_embeddings"
        )
    return TrainingInputs(table, [texts_by_id[i] for i in table.ids], checksum)

"""The shapes every part of the toxic-comment domain agrees on.

`comments_raw` is a Delta table on the lakeFS branch with `RAW_COLUMNS`; a comment's id is a UUID
derived from its text when the source has none, so the same text always lands under the same id
(the staging checks want UUID-shaped ids, as the original system's Great Expectations suite did).
Change data capture (Debezium over Kafka, or Postgres logical replication read directly) turns
each change of `app.comments` into a `CommentChange`; `comments_raw` applies a batch of them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ID = "id"
TEXT = "comment_text"
LABEL = "labels"
SOURCE = "source"
INGESTED_AT = "ingested_at"
RAW_COLUMNS = (ID, TEXT, LABEL, SOURCE, INGESTED_AT)

#: Fixed namespace of dfp's content-derived comment ids (never change it: ids would move).
COMMENT_ID_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-4f0e-9a57-2b7d5e0c9a11")


def comment_id(text: str) -> str:
    """The stable id of a comment that its source gave none: a UUID of its text."""
    return str(uuid.uuid5(COMMENT_ID_NAMESPACE, text))


@dataclass(frozen=True)
class CommentChange:
    """One captured change of a row of the application table `app.comments`.

    `position` orders changes within their stream and is what a publish records as consumed
    (Kafka: "topic:partition:offset"; logical replication: the LSN as text).
    """

    op: Literal["upsert", "delete"]
    id: str
    comment_text: str | None  # None for a delete
    labels: int | None  # None for a delete
    event_time: datetime  # the source's commit time of the change
    position: str

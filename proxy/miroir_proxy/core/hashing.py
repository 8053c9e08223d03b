"""Shard hashing: the one function every pod must compute identically.

A primary key is hashed as the UTF-8 bytes of its text form; integer keys hash their
decimal text, so the document ``{"id": 7}`` and ``{"id": "7"}`` land on the same shard
(Meilisearch treats them as the same document id).
"""

from __future__ import annotations

from collections.abc import Iterable

from xxhash import xxh3_64_intdigest

PkValue = str | int


def pk_text(pk: PkValue) -> str:
    if isinstance(pk, bool):
        raise TypeError("a boolean is not a document id")
    return pk if isinstance(pk, str) else str(pk)


def shard_of(pk: PkValue, shards: int) -> int:
    if isinstance(pk, str):
        return int(xxh3_64_intdigest(pk.encode())) % shards
    return int(xxh3_64_intdigest(pk_text(pk).encode())) % shards


def shards_of(pks: Iterable[PkValue], shards: int) -> list[int]:
    """Shard of every key, in order; the write path calls this once per batch."""
    digest = xxh3_64_intdigest
    out: list[int] = []
    append = out.append
    # Keys reaching this point were validated by ``pk.validate_document_id``, so a
    # non-string is an int and ``str`` gives its decimal text.
    for pk in pks:
        append(digest((pk if type(pk) is str else str(pk)).encode()) % shards)
    return out

"""Anti-entropy's comparison of a shard's replicas, and the version rule (no I/O).

Each replica's copy of a shard is summarized while it is paged: per document its primary
key text, a digest of its content, its `_miroir_updated_at` stamp and its
`_miroir_expires_at`. The content digest leaves out Miroir's bookkeeping fields
(`_miroir_shard`, `_miroir_updated_at`) but keeps `_miroir_expires_at`, which the client
set. Documents fall into pk-hash buckets whose order-independent sums are compared first;
only the documents of buckets that differ between replicas (plus those a tombstone, a
clear-all or an expiry concerns) are decided one by one.

The version rule, per primary key, over the replicas that answered:
1. The winning stamp is the highest `_miroir_updated_at` among the copies; a copy without
   one (written behind Miroir's back) counts as 0, so it loses to any stamped copy.
2. Among the copies with the winning stamp, the content held by the most replicas wins
   (a copy altered behind Miroir's back keeps its stamp but is outvoted); a tie goes to the
   smallest digest, so every pod decides the same way, and is counted as a conflict.
3. A tombstone (a delete through Miroir) at or after the winning stamp, or a clear-all of
   the index after it, means the document is deleted: every replica holding it deletes it
   and none gets it back.
4. A winning version that has expired (`_miroir_expires_at` <= now) is deleted everywhere,
   never copied.
5. Otherwise every replica lacking the document, or holding other content, gets the
   winning version (a source replica holding it is named).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import orjson
from xxhash import xxh3_64_intdigest

SHARD_FIELD = "_miroir_shard"
UPDATED_FIELD = "_miroir_updated_at"
EXPIRES_FIELD = "_miroir_expires_at"
BOOKKEEPING = frozenset({SHARD_FIELD, UPDATED_FIELD})
BUCKETS = 256
_MASK = (1 << 64) - 1


_SORTED = orjson.OPT_SORT_KEYS


def content_digest(document: Mapping[str, Any]) -> int:
    """The document's content, Miroir's bookkeeping fields excluded, key order ignored."""
    content = {k: v for k, v in document.items() if k not in BOOKKEEPING}
    return xxh3_64_intdigest(orjson.dumps(content, option=_SORTED))


class Copy(NamedTuple):
    """One replica's version of one document."""

    digest: int
    stamp: int = 0  # `_miroir_updated_at`; 0 when absent
    expires_at: int | None = None

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Copy:
        stamp, expires = document.get(UPDATED_FIELD), document.get(EXPIRES_FIELD)
        return cls(
            content_digest(document),
            stamp if type(stamp) is int else 0,
            expires if type(expires) is int else None,
        )

    @classmethod
    def taken(cls, document: dict[str, Any]) -> Copy:
        """`of` for a document nobody needs afterwards: the bookkeeping fields are popped
        instead of copying the rest (the pass's hot path)."""
        document.pop(SHARD_FIELD, None)
        stamp = document.pop(UPDATED_FIELD, 0)
        expires = document.get(EXPIRES_FIELD)
        return cls(
            xxh3_64_intdigest(orjson.dumps(document, option=_SORTED)),
            stamp if type(stamp) is int else 0,
            expires if type(expires) is int else None,
        )


def bucket_of(pk: str) -> int:
    """The pk's bucket. Python's string hash is salted per process, which is enough: the
    fingerprints compared are always built by one process, and it is the fastest hash."""
    return hash(pk) % BUCKETS


class Fingerprint:
    """One replica's summary of one shard: bucket sums and the copy of every document.
    A bucket sums the digests of its documents (the content includes the primary key)."""

    __slots__ = ("buckets", "copies")

    def __init__(self) -> None:
        self.buckets = [0] * BUCKETS
        self.copies: dict[str, Copy] = {}

    def add(self, pk: str, copy: Copy) -> None:
        buckets = self.buckets
        bucket = hash(pk) % BUCKETS
        previous = self.copies.get(pk)
        if previous is not None:  # a document seen twice while paging (a write moved it)
            buckets[bucket] -= previous.digest
        self.copies[pk] = copy
        buckets[bucket] = (buckets[bucket] + copy.digest) & _MASK


def differing_buckets(prints: Iterable[Fingerprint]) -> set[int]:
    """Buckets whose sums are not the same on every replica."""
    prints = list(prints)
    if len(prints) < 2:
        return set()
    first = prints[0].buckets
    return {b for b in range(BUCKETS) if any(p.buckets[b] != first[b] for p in prints[1:])}


Reason = Literal["restore", "deleted", "expired"]


@dataclasses.dataclass(frozen=True, slots=True)
class Fix:
    """What one document needs: `source is None` deletes it on `targets`; otherwise
    `targets` get `source`'s version."""

    pk: str
    reason: Reason
    targets: tuple[str, ...]
    source: str | None = None
    conflict: bool = False


def decide(
    pk: str,
    copies: Mapping[str, Copy | None],
    *,
    tombstone: int | None,
    cleared_at: int | None,
    now_ms: int,
) -> Fix | None:
    """The fix one document needs under the version rule (module docstring), or None.
    `copies` maps every compared replica to its copy (None: the replica lacks it)."""
    present = {r: c for r, c in copies.items() if c is not None}
    if not present:
        return None
    top = max(c.stamp for c in present.values())
    votes = Counter(c.digest for c in present.values() if c.stamp == top)
    most = max(votes.values())
    leaders = sorted(d for d, n in votes.items() if n == most)
    winning = leaders[0]
    holders = tuple(present)
    if (tombstone is not None and tombstone >= top) or (
        cleared_at is not None and cleared_at > top
    ):
        return Fix(pk, "deleted", holders)
    source = next(r for r, c in present.items() if c.stamp == top and c.digest == winning)
    expires = present[source].expires_at
    if expires is not None and expires <= now_ms:
        return Fix(pk, "expired", holders)
    targets = tuple(r for r, c in copies.items() if c is None or c.digest != winning)
    if not targets:
        return None
    return Fix(pk, "restore", targets, source, conflict=len(leaders) > 1)


def plan(
    prints: Mapping[str, Fingerprint],
    *,
    tombstones: Mapping[str, int],
    cleared_at: int | None,
    now_ms: int,
) -> list[Fix]:
    """Every fix the shard needs, given each replica's fingerprint (replicas that did not
    answer are left out: they are neither read nor repaired)."""
    replicas: Sequence[str] = list(prints)
    suspects: set[str] = set()
    differing = differing_buckets(prints.values())
    for fp in prints.values():
        for pk, copy in fp.copies.items():
            if (
                (differing and bucket_of(pk) in differing)
                or (copy.expires_at is not None and copy.expires_at <= now_ms)
                or (cleared_at is not None and copy.stamp < cleared_at)
            ):
                suspects.add(pk)
    suspects.update(pk for pk in tombstones if any(pk in fp.copies for fp in prints.values()))
    fixes = []
    for pk in sorted(suspects):
        fix = decide(
            pk,
            {r: prints[r].copies.get(pk) for r in replicas},
            tombstone=tombstones.get(pk),
            cleared_at=cleared_at,
            now_ms=now_ms,
        )
        if fix is not None:
            fixes.append(fix)
    return fixes

"""Mode A: each piece of background work belongs to one live pod, by rendezvous hashing.

The owner of `key` is the peer with the highest `xxh3_64(f"{key}:{pod_id}")` (ties go to
the smaller pod id), like shard placement in `core.placement`. Only keys whose winner
joined or left change hands, so a pod joining takes about 1/N of the keys and a pod
leaving hands over only its own.

Ownership is computed from each pod's cached view of the live peer set, so while a
membership change propagates two pods may briefly both think they own a key. Mode A is for
work that tolerates that (idempotent sweeps); work that must never overlap takes a lease.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from xxhash import xxh3_64_intdigest


def owner_score(key: str, pod_id: str) -> int:
    return int(xxh3_64_intdigest(f"{key}:{pod_id}".encode()))


def owner_of(key: str, peers: Iterable[str]) -> str | None:
    """The peer that owns `key`, or None when there are no peers."""
    best: str | None = None
    best_score = -1
    for peer in peers:
        score = owner_score(key, peer)
        if score > best_score or (score == best_score and best is not None and peer < best):
            best, best_score = peer, score
    return best


class Ownership:
    """`owns(key)` for one pod over a live peer set that changes under it.

    `peers` returns the current live set (the `PeerSet` cache); this pod always counts as
    live, since it is running, even before its first heartbeat was read back.
    """

    def __init__(self, pod_id: str, peers: Callable[[], Collection[str]]) -> None:
        self.pod_id = pod_id
        self._peers = peers

    def owner(self, key: str) -> str:
        live = self._peers()
        if self.pod_id in live:
            return owner_of(key, live) or self.pod_id
        return owner_of(key, (*live, self.pod_id)) or self.pod_id

    def owns(self, key: str) -> bool:
        return self.owner(key) == self.pod_id

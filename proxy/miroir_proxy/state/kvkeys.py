"""Names of the `kv_set`/`kv_get` entries the proxy pods share, all in one place.

Client-chosen identifiers (idempotency keys, session ids) are hashed together with the
credentials that sent them: two clients picking the same key never see each other's
entry, and a key of any length or alphabet makes a short, safe store key.
"""

from __future__ import annotations

import hashlib

IDEMPOTENCY = "idem:"
SESSION = "session:"
TOPOLOGY_EPOCH = "topology-epoch:"
DUMP = "dump:"


def _scoped(client_id: str, credentials: str) -> str:
    digest = hashlib.sha256()
    digest.update(credentials.encode())
    digest.update(b"\0")
    digest.update(client_id.encode())
    return digest.hexdigest()[:40]


def idempotency(key: str, credentials: str) -> str:
    return IDEMPOTENCY + _scoped(key, credentials)


def session(session_id: str, credentials: str) -> str:
    return SESSION + _scoped(session_id, credentials)


def topology_epoch(pod_id: str) -> str:
    """The topology epoch pod `pod_id` routes with (its acknowledgement of that epoch)."""
    return TOPOLOGY_EPOCH + pod_id


def dump(uid: str) -> str:
    """Where the dump `uid` is (the pod and path `POST /dumps` wrote it to)."""
    return DUMP + uid

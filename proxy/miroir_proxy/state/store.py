"""The `Store` protocol: everything proxy pods share, whatever the backend.

Values crossing this seam are plain dataclasses; backends serialize them. A backend that
cannot be reached raises `StoreUnavailable`, which the API renders as
`503 miroir_store_unavailable`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NotRequired, Protocol, TypedDict

import orjson

from .taskquery import TaskQuery

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
OPERATION_STATES = ("running", "succeeded", "failed", "canceled")


class StoreUnavailable(Exception):
    """The state backend did not answer; nothing was written."""


class NodeTaskRef(TypedDict):
    """One node task behind a Miroir task."""

    node: str
    group: str
    shards: list[int]
    uid: int | None
    status: str
    error: dict[str, Any] | None
    # The node task's own `details` once it finished (counts are aggregated from them).
    details: NotRequired[dict[str, Any] | None]
    # The node task's own times, as the node reported them (the Miroir task's come from them).
    startedAt: NotRequired[str | None]
    finishedAt: NotRequired[str | None]


@dataclass(slots=True)
class TaskRecord:
    """A Miroir task: Meilisearch's task fields plus the node tasks it aggregates."""

    uid: int
    index_uid: str | None
    type: str
    enqueued_at: str
    status: str = "enqueued"
    started_at: str | None = None
    finished_at: str | None = None
    details: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    canceled_by: int | None = None
    batch_uid: int | None = None
    node_tasks: list[NodeTaskRef] = field(default_factory=list)
    # Anything else to echo back verbatim (e.g. customMetadata).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class IndexMeta:
    """What the proxy must know about an index to route it; the nodes hold the rest.

    `shards` is fixed when the index is created (changing it is an online reshard);
    `primary_key` is None until the first document batch or an explicit update sets it.
    """

    uid: str
    shards: int
    primary_key: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class IndexFields:
    """The top-level fields an index's documents brought, in global first-seen order
    (never `_miroir_*`), and the client's `searchableAttributes` (None: `["*"]`). The
    nodes search `searchable`, or `fields` while it is None."""

    fields: tuple[str, ...] = ()
    searchable: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    results: list[TaskRecord]
    total: int
    next: int | None


@dataclass(frozen=True, slots=True)
class ClaimedChunk:
    """One chunk of a queued job, held by the claimer until its claim expires.

    `cursor` is what the previous holder persisted with its last heartbeat (None on a fresh
    chunk); `attempt` counts claims of this chunk, 1 on the first.
    """

    job_id: str
    kind: str
    index: int
    payload: dict[str, Any]
    chunk: dict[str, Any]
    cursor: dict[str, Any] | None
    attempt: int


@dataclass(frozen=True, slots=True)
class JobProgress:
    """`claimed` counts live claims; an expired claim is back to pending until retaken."""

    total: int
    done: int
    claimed: int

    @property
    def finished(self) -> bool:
        return self.done == self.total


@dataclass(slots=True)
class OperationRecord:
    """One long cluster change (ARCHITECTURE §6), as `GET /_miroir/operations` shows it.

    At most one operation per `scope` runs at a time; `id`, `kind`, `scope` and `started_at`
    never change after creation, and `cancel_requested` only ever goes from False to True.
    """

    id: str
    kind: str
    scope: str
    state: str = "running"
    phase: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True, slots=True)
class Hint:
    """One node batch a replica missed (hinted handoff): replayed to `node` as it was sent.

    `id` is given by the store when the hint is stored: per node, increasing, so listing a
    node's hints by id replays them in the order the writes were acknowledged. `body` is the
    JSON body (None for a call without one, e.g. clearing an index).
    """

    node: str
    index_uid: str
    method: str
    path: str
    params: dict[str, str]
    body: bytes | None
    group: str
    shards: tuple[int, ...]
    created_ms: int
    id: int = 0

    def to_blob(self) -> bytes:
        return orjson.dumps(
            {
                "node": self.node,
                "index_uid": self.index_uid,
                "method": self.method,
                "path": self.path,
                "params": self.params,
                # orjson wrote the body, so it is valid UTF-8.
                "body": None if self.body is None else self.body.decode(),
                "group": self.group,
                "shards": list(self.shards),
                "created_ms": self.created_ms,
            }
        )

    @classmethod
    def from_blob(cls, hint_id: int, blob: bytes) -> Hint:
        raw = orjson.loads(blob)
        body = raw.pop("body")
        return cls(
            **{**raw, "shards": tuple(raw["shards"])},
            body=None if body is None else body.encode(),
            id=hint_id,
        )


@dataclass(frozen=True, slots=True)
class HintBacklog:
    """A node's hints: `pending` stored, `dropped` since its overflow was last cleared, and
    `overflowed` once a hint did not fit under the bound: its hints were dropped and only
    anti-entropy can bring the node back in line (it clears the flag)."""

    pending: int
    dropped: int
    overflowed: bool

    @property
    def behind(self) -> bool:
        """The node lacks acknowledged writes: it must not be read as a source of truth."""
        return bool(self.pending) or self.overflowed


def check_operation_state(state: str, *, new: bool = False) -> None:
    """Backends refuse a state outside `OPERATION_STATES`, and a new operation that is not
    running (programming errors)."""
    if new and state != "running":
        raise ValueError(f"a new operation is running, not {state!r}")
    if state not in OPERATION_STATES:
        raise ValueError(f"operation state {state!r}: expected one of {OPERATION_STATES}")


class Store(Protocol):
    async def next_task_stamp(self) -> tuple[int, datetime]:
        """A cluster-unique task uid, strictly greater than every uid handed out before,
        with its `enqueuedAt` (UTC, microseconds) taken atomically with it from the
        backend's clock and never earlier than any stamp handed out before: ordering tasks
        by uid orders them by enqueue time, whichever pod created them."""
        ...

    async def create_task(self, task: TaskRecord) -> None: ...

    async def get_task(self, uid: int) -> TaskRecord | None: ...

    async def save_task(self, task: TaskRecord) -> None:
        """Overwrite a task; a finished task is never changed back (the call is ignored)."""
        ...

    async def list_tasks(self, query: TaskQuery) -> TaskPage: ...

    async def delete_tasks(self, query: TaskQuery) -> list[int]:
        """Delete the finished tasks matching `query`; returns their uids."""
        ...

    async def unfinished_tasks(self) -> list[TaskRecord]: ...

    async def put_index(self, meta: IndexMeta, *, only_new: bool = False) -> bool:
        """Store `meta`; with `only_new`, only if the uid is unknown. True if written."""
        ...

    async def get_index(self, uid: str) -> IndexMeta | None: ...

    async def list_indexes(self) -> list[IndexMeta]:
        """Every index, ordered by uid."""
        ...

    async def delete_index(self, uid: str) -> bool: ...

    async def add_fields(self, uid: str, names: Sequence[str]) -> IndexFields:
        """Append the `names` not known yet to `uid`'s fields, in order, atomically (pods
        adding at once all end up in the list); returns the record after the append."""
        ...

    async def set_searchable(self, uid: str, searchable: Sequence[str] | None) -> IndexFields:
        """Record the client's `searchableAttributes` (None: `["*"]`), fields unchanged."""
        ...

    async def put_fields(self, uid: str, record: IndexFields | None) -> None:
        """Overwrite `uid`'s record (None deletes it): index deletion, rename and swap."""
        ...

    async def get_topology(self) -> tuple[int, dict[str, Any]] | None:
        """The current (epoch, topology document), or None before the first seed."""
        ...

    async def put_topology(self, expected_epoch: int, topology: dict[str, Any]) -> int | None:
        """Compare-and-set: store `topology` as epoch `expected_epoch + 1` if the stored
        epoch is still `expected_epoch` (0 = nothing stored yet). Returns the new epoch, or
        None when another writer won."""
        ...

    async def kv_set(self, key: str, value: bytes, ttl_s: float, *, only_new: bool = False) -> bool:
        """Set `key` for `ttl_s` seconds; with `only_new`, only if absent (or expired)."""
        ...

    async def kv_get(self, key: str) -> bytes | None: ...

    # Coordination primitives. Times are milliseconds of the backend's clock (Redis: the
    # server's, so pods with skewed clocks still agree).

    async def lease_acquire(self, scope: str, owner: str, ttl_ms: int) -> bool:
        """Take lease `scope` for `ttl_ms` if free or expired; True also when `owner`
        already holds it (the TTL is then renewed)."""
        ...

    async def lease_renew(self, scope: str, owner: str, ttl_ms: int) -> bool:
        """Extend the lease only while `owner` still holds it (an expired lease is lost)."""
        ...

    async def lease_release(self, scope: str, owner: str) -> bool:
        """Drop the lease only if `owner` holds it."""
        ...

    async def lease_holder(self, scope: str) -> str | None: ...

    async def lease_ttl_ms(self, scope: str) -> int | None:
        """Milliseconds until lease `scope` expires unless renewed; None when nobody holds
        it (so a contender can try again the moment it frees up)."""
        ...

    async def peer_heartbeat(self, pod_id: str, info: dict[str, Any], ttl_ms: int) -> None: ...

    async def live_peers(self) -> dict[str, dict[str, Any]]:
        """Every pod whose last heartbeat has not expired, with the info it sent."""
        ...

    async def peer_leave(self, pod_id: str) -> None: ...

    async def get_phase(self, scope: str) -> dict[str, Any] | None:
        """The persisted phase state of the long operation behind lease `scope`."""
        ...

    async def put_phase(self, scope: str, state: dict[str, Any], *, owner: str) -> bool:
        """Persist `state` only while `owner` holds lease `scope` (fenced, atomic)."""
        ...

    async def enqueue_job(
        self, job_id: str, kind: str, payload: dict[str, Any], chunks: list[dict[str, Any]]
    ) -> bool:
        """Queue a job cut into `chunks`; idempotent by `job_id` (False if it existed)."""
        ...

    async def claim_chunk(
        self, owner: str, ttl_ms: int, kinds: Collection[str] | None = None
    ) -> ClaimedChunk | None:
        """Claim a pending chunk or one whose claim expired, from the job claimed least
        recently (so concurrent jobs interleave); None when nothing is claimable."""
        ...

    async def heartbeat_chunk(
        self,
        job_id: str,
        index: int,
        owner: str,
        ttl_ms: int,
        cursor: dict[str, Any] | None = None,
    ) -> bool:
        """Extend the claim and persist `cursor` (if given) atomically; False once another
        owner took the chunk over (or it is done)."""
        ...

    async def complete_chunk(self, job_id: str, index: int, owner: str) -> bool:
        """Mark the chunk done; False if the claim was lost."""
        ...

    async def queue_depth(self) -> int:
        """Chunks not done yet (pending + claimed) over all jobs, exact."""
        ...

    async def job_progress(self, job_id: str) -> JobProgress | None: ...

    # Operation records (the admin API's `/_miroir/operations`).

    async def create_operation(self, record: OperationRecord) -> str | None:
        """Store a new running operation unless another running operation holds the same
        scope. Returns None when created, else the id of the running operation that holds
        the scope (atomic: of concurrent creators on one scope exactly one wins). An existing
        id is never overwritten (its id is returned). `record.state` must be "running"."""
        ...

    async def get_operation(self, op_id: str) -> OperationRecord | None: ...

    async def list_operations(self, limit: int = 100) -> list[OperationRecord]:
        """The `limit` newest operations, newest (last created) first."""
        ...

    async def save_operation(self, record: OperationRecord) -> bool:
        """Overwrite state, phase, params, progress, finished_at and error of a running
        operation; True if written. A finished (or unknown) operation is never changed
        (False); finishing one frees its scope. `cancel_requested` is not written: only
        `request_cancel` sets it, so a save racing a cancel request keeps the request."""
        ...

    async def request_cancel(self, op_id: str) -> OperationRecord | None:
        """Set `cancel_requested` on a running operation and return the record (None if
        unknown). A finished operation is returned unchanged."""
        ...

    # Tombstones of deletes by id (anti-entropy: a replica that missed a delete must lose
    # the document, not give it back). Times are milliseconds of the proxy's clock, the
    # clock that stamps `_miroir_updated_at`.

    async def add_tombstones(
        self,
        index_uid: str,
        ids_by_shard: Mapping[int, Collection[str]],
        deleted_at_ms: int,
        keep_ms: int,
    ) -> None:
        """Record that these ids (primary key text) of these shards were deleted at
        `deleted_at_ms`; an id deleted again keeps the later time. Kept at least `keep_ms`
        (until `prune_tombstones`; Redis also expires a shard's set `keep_ms` after its last
        addition)."""
        ...

    async def tombstones(self, index_uid: str, shard: int, since_ms: int) -> dict[str, int]:
        """The shard's tombstones deleted at `since_ms` or later: id -> deleted_at_ms."""
        ...

    async def prune_tombstones(self, index_uid: str, shard: int, before_ms: int) -> int:
        """Forget the shard's tombstones deleted before `before_ms`; returns how many."""
        ...

    # Hinted handoff: node batches a replica missed, replayed when it is back.

    async def put_hint(self, hint: Hint, max_per_node: int) -> int | None:
        """Store `hint` after the node's others and return its id; None when it does not
        fit: the node already holds `max_per_node` hints (they are all dropped) or
        overflowed before. An overflowed node takes no hint (each counts as dropped) until
        `clear_hint_overflow`, so a replay never applies a partial history."""
        ...

    async def list_hints(self, node: str, limit: int) -> list[Hint]:
        """The node's `limit` oldest hints, oldest first."""
        ...

    async def delete_hints(self, node: str, ids: Collection[int]) -> int:
        """Delete these hints of `node`; returns how many existed."""
        ...

    async def hint_backlogs(self) -> dict[str, HintBacklog]:
        """Every node with stored hints or an overflow, by node id."""
        ...

    async def clear_hint_overflow(self, node: str) -> bool:
        """Anti-entropy repaired the node: it may take hints again (True if it was flagged)."""
        ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` when the backend cannot be reached."""
        ...

    async def close(self) -> None: ...

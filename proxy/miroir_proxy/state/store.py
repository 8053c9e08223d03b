"""The `Store` protocol: everything proxy pods share, whatever the backend.

Values crossing this seam are plain dataclasses; backends serialize them. A backend that
cannot be reached raises `StoreUnavailable`, which the API renders as
`503 miroir_store_unavailable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NotRequired, Protocol, TypedDict

from .taskquery import TaskQuery

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


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
class TaskPage:
    results: list[TaskRecord]
    total: int
    next: int | None


class Store(Protocol):
    async def next_task_uid(self) -> int:
        """A cluster-unique uid, strictly greater than every uid handed out before."""
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

    async def close(self) -> None: ...

"""Every Redis key the proxy uses, under one namespace prefix (default `miroir:`).

Several Miroir clusters (or test runs) can share one Redis by using different namespaces.
Lua scripts never invent a name: where a script must derive a key from data it reads (a
task's old status, a job id found in the active set) it gets the prefix from here and only
appends the value.
"""

from __future__ import annotations

DEFAULT_NAMESPACE = "miroir:"

# Task fields with a secondary index (a sorted set of uids per value), as stored in the task
# hash. `index` is the index uid, `batch` the batch uid, `canceled` the canceling task uid.
TASK_INDEXED = ("status", "type", "index", "batch", "canceled")
TASK_DATES = ("enqueuedAt", "startedAt", "finishedAt")


class Keys:
    # The slots set of job `j` is job_prefix + j + SLOTS_SUFFIX; the claim script derives it
    # from the job ids it finds in `active_jobs`.
    SLOTS_SUFFIX = ":slots"

    __slots__ = (
        "active_jobs",
        "indexes",
        "job_turn",
        "namespace",
        "operation_seq",
        "operations",
        "peer_expiry",
        "peers",
        "queue_depth",
        "scratch",
        "task_stamp",
        "task_uid",
        "tasks",
        "topology",
    )

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        ns = namespace
        self.namespace = ns
        # INCR counter; the uid handed out is the new value minus one (uids start at 0).
        self.task_uid = f"{ns}task-uid"
        # The last `enqueuedAt` handed out, in microseconds since the epoch.
        self.task_stamp = f"{ns}task-stamp"
        # Sorted set of every task uid (score = uid): the spine of every listing.
        self.tasks = f"{ns}tasks"
        # Prefix of temporary sorted sets a script creates and deletes before it returns.
        self.scratch = f"{ns}scratch:"
        self.indexes = f"{ns}indexes"
        self.topology = f"{ns}topology"
        # Hash pod id -> info, and sorted set pod id -> expiry (ms of the Redis clock).
        self.peers = f"{ns}peers"
        self.peer_expiry = f"{ns}peers:expiry"
        # Sorted set job id -> turn of its last claim (lowest = claimed least recently).
        self.active_jobs = f"{ns}jobs:active"
        self.job_turn = f"{ns}jobs:turn"
        # Chunks not done over all jobs, maintained by the enqueue and complete scripts.
        self.queue_depth = f"{ns}jobs:depth"
        # Sorted set operation id -> creation number (INCR of `operation_seq`): the order of
        # the operations listing.
        self.operations = f"{ns}operations"
        self.operation_seq = f"{ns}operations:seq"

    @property
    def task_prefix(self) -> str:
        return f"{self.namespace}task:"

    def task(self, uid: int) -> str:
        """Hash: `body` (the whole record) plus the indexed fields' current values."""
        return f"{self.task_prefix}{uid}"

    def task_by_prefix(self, field: str) -> str:
        """Prefix of the per-value uid sets of an indexed task field."""
        return f"{self.namespace}tasks:{field}="

    def task_by(self, field: str, value: object) -> str:
        return f"{self.task_by_prefix(field)}{value}"

    def task_dates(self, field: str) -> str:
        """Sorted set uid -> the date in microseconds since the epoch."""
        return f"{self.namespace}tasks:at:{field}"

    def kv(self, key: str) -> str:
        return f"{self.namespace}kv:{key}"

    def lease(self, scope: str) -> str:
        return f"{self.namespace}lease:{scope}"

    def phase(self, scope: str) -> str:
        return f"{self.namespace}phase:{scope}"

    @property
    def operation_prefix(self) -> str:
        return f"{self.namespace}operation:"

    def operation(self, op_id: str) -> str:
        """Hash: the `OperationRecord` fields, text as is, dicts and `finished_at` as JSON,
        `cancel_requested` as 0/1."""
        return f"{self.operation_prefix}{op_id}"

    @property
    def running_prefix(self) -> str:
        """Prefix of the per-scope keys; the save script derives one from a stored scope."""
        return f"{self.namespace}operations:running:"

    def running(self, scope: str) -> str:
        """String: the id of the running operation holding `scope`; absent when none."""
        return f"{self.running_prefix}{scope}"

    @property
    def job_prefix(self) -> str:
        return f"{self.namespace}job:"

    def job(self, job_id: str) -> str:
        """Hash: kind, payload, total, done, and per chunk `c:<i>` (chunk), `o:<i>` (owner),
        `u:<i>` (cursor), `a:<i>` (attempts)."""
        return f"{self.job_prefix}{job_id}"

    def job_slots(self, job_id: str) -> str:
        """Sorted set of the job's open chunks: score = index while pending, the claim's
        expiry (ms) while claimed. Scores <= now are claimable, pending ones first."""
        return f"{self.job_prefix}{job_id}{self.SLOTS_SUFFIX}"

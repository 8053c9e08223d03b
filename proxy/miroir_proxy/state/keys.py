"""Every Redis key the proxy uses, under one namespace prefix (default `miroir:`).

Several Miroir clusters (or test runs) can share one Redis by using different namespaces.

Redis Cluster runs a script only when every key it touches is declared and all of them hash
to one slot. So the keys that one script uses together carry the same hash tag (the text
between the first `{` and the next `}`: Redis hashes only that part): all the task keys
`{tasks}`, the job queue `{jobs}`, the operation records `{ops}`, the peer registry
`{peers}`, the tombstones of one index `{tombstones:<uid>}`, every hint of hinted handoff
`{hints}`, and the lease and phase of one scope `{scope:<scope>}`. Unrelated groups, single
keys (`kv:*`, `indexes`, `topology`) and scopes spread over the slots.

Keys no script groups with another keep their names from before the hash tags (`indexes`,
`topology`, `kv:*`, `task-uid`), so an upgraded standalone deployment still reads them; the
task stamp joins the `task-uid` slot by tagging itself with that key's full name (a key
without a tag hashes as a whole). README "Redis Cluster" says what an upgrade starts afresh.
"""

from __future__ import annotations

DEFAULT_NAMESPACE = "miroir:"

# Task fields with a secondary index (a sorted set of uids per value), as stored in the task
# hash. `index` is the index uid, `batch` the batch uid, `canceled` the canceling task uid.
TASK_INDEXED = ("status", "type", "index", "batch", "canceled")
TASK_DATES = ("enqueuedAt", "startedAt", "finishedAt")


def check_namespace(namespace: str) -> str:
    """A brace in the namespace would move the hash tags: refuse it."""
    if "{" in namespace or "}" in namespace:
        raise ValueError(f"namespace {namespace!r}: `{{` and `}}` are reserved for hash tags")
    return namespace


class Keys:
    __slots__ = (
        "active_jobs",
        "hint_flags",
        "hint_nodes",
        "hint_seq",
        "indexes",
        "job_turn",
        "namespace",
        "operation_seq",
        "operations",
        "peer_expiry",
        "peers",
        "queue_depth",
        "task_bodies",
        "task_stamp",
        "task_uid",
        "tasks",
        "topology",
    )

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        ns = check_namespace(namespace)
        self.namespace = ns
        # INCR counter; the uid handed out is the new value minus one (uids start at 0).
        self.task_uid = f"{ns}task-uid"
        # The last `enqueuedAt` handed out, in microseconds since the epoch.
        self.task_stamp = f"{ns}task-stamp{{{self.task_uid}}}"
        # Sorted set of every task uid (score = uid): the spine of every listing.
        self.tasks = f"{ns}{{tasks}}:all"
        # Hash uid -> the whole task record (JSON).
        self.task_bodies = f"{ns}{{tasks}}:bodies"
        self.indexes = f"{ns}indexes"
        self.topology = f"{ns}topology"
        # Hash pod id -> info, and sorted set pod id -> expiry (ms of the Redis clock).
        self.peers = f"{ns}{{peers}}:info"
        self.peer_expiry = f"{ns}{{peers}}:expiry"
        # Sorted set job id -> turn of its last claim (lowest = claimed least recently).
        self.active_jobs = f"{ns}{{jobs}}:active"
        self.job_turn = f"{ns}{{jobs}}:turn"
        # Chunks not done over all jobs, maintained by the enqueue and complete scripts.
        self.queue_depth = f"{ns}{{jobs}}:depth"
        # Sorted set operation id -> creation number (INCR of `operation_seq`): the order of
        # the operations listing.
        self.operations = f"{ns}{{ops}}:order"
        self.operation_seq = f"{ns}{{ops}}:seq"
        # Hinted handoff: one id counter for every node's hints, the set of nodes that have
        # hints or flags, and a hash of `overflowed:<node>` / `dropped:<node>` counters.
        self.hint_seq = f"{ns}{{hints}}:seq"
        self.hint_nodes = f"{ns}{{hints}}:nodes"
        self.hint_flags = f"{ns}{{hints}}:flags"

    def task(self, uid: int) -> str:
        """Hash: the indexed fields' current values (the body is in `task_bodies`)."""
        return f"{self.namespace}{{tasks}}:task:{uid}"

    def task_by(self, field: str, value: object) -> str:
        """Sorted set of the uids whose indexed `field` is `value` (score = uid)."""
        return f"{self.namespace}{{tasks}}:{field}={value}"

    def task_dates(self, field: str) -> str:
        """Sorted set uid -> the date in microseconds since the epoch."""
        return f"{self.namespace}{{tasks}}:at:{field}"

    def scratch(self, n: int) -> str:
        """Temporary sorted sets a task query creates and deletes before it returns."""
        return f"{self.namespace}{{tasks}}:scratch:{n}"

    def fields(self, uid: str) -> str:
        """Hash of one index's fields: `f:<name>` -> first-seen position (1, 2, ...), `n`
        -> the last position, `s` -> the client's searchableAttributes (JSON; absent: `*`)."""
        return f"{self.namespace}fields:{uid}"

    def kv(self, key: str) -> str:
        return f"{self.namespace}kv:{key}"

    def lease(self, scope: str) -> str:
        return f"{self.namespace}{{scope:{scope}}}:lease"

    def phase(self, scope: str) -> str:
        return f"{self.namespace}{{scope:{scope}}}:phase"

    def operation(self, op_id: str) -> str:
        """Hash: the `OperationRecord` fields, text as is, dicts and `finished_at` as JSON,
        `cancel_requested` as 0/1."""
        return f"{self.namespace}{{ops}}:operation:{op_id}"

    def running(self, scope: str) -> str:
        """String: the id of the running operation holding `scope`; absent when none."""
        return f"{self.namespace}{{ops}}:running:{scope}"

    def tombstones(self, index_uid: str, shard: int) -> str:
        """Sorted set: deleted id -> deletion time (ms) of one shard; the shards of an index
        share one slot, so one call may touch several of them."""
        return f"{self.namespace}{{tombstones:{index_uid}}}:{shard}"

    def job(self, job_id: str) -> str:
        """Hash: kind, payload, total, done, and per chunk `c:<i>` (chunk), `o:<i>` (owner),
        `u:<i>` (cursor), `a:<i>` (attempts)."""
        return f"{self.namespace}{{jobs}}:job:{job_id}"

    def job_slots(self, job_id: str) -> str:
        """Sorted set of the job's open chunks: score = index while pending, the claim's
        expiry (ms) while claimed. Scores <= now are claimable, pending ones first."""
        return f"{self.namespace}{{jobs}}:slots:{job_id}"

    def hint_queue(self, node: str) -> str:
        """Sorted set of the node's hint ids (score = id): the replay order."""
        return f"{self.namespace}{{hints}}:queue:{node}"

    def hint_bodies(self, node: str) -> str:
        """Hash hint id -> the hint (`Hint.to_blob`)."""
        return f"{self.namespace}{{hints}}:bodies:{node}"

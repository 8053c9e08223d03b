"""The MiroirCluster's status as a pure function of what its children report.

Conditions follow the Kubernetes convention: one entry per type, `lastTransitionTime`
changes only when `status` flips, so `kubectl wait --for=condition=Ready` and dashboards
see real transitions rather than every reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Condition = dict[str, Any]


@dataclass(frozen=True, slots=True)
class GroupReadiness:
    id: str
    nodes: int
    nodes_ready: int
    # The group's state in the proxies' topology (initializing, syncing, active, ...), or
    # `unknown` while the admin API cannot be asked, `unregistered` when it lacks the group.
    state: str = "unknown"
    # The sync of a group being added, as the admin API counts it: (index, shard) pairs.
    shards_total: int = 0
    shards_synced: int = 0


@dataclass(frozen=True, slots=True)
class OperationProgress:
    """The topology operation the proxies are running (adding or removing a group)."""

    id: str
    kind: str
    state: str
    phase: str
    done: int = 0
    total: int = 0
    unit: str = ""


# Group states that mean nothing is left to do for the operator.
SETTLED_STATES = frozenset({"active", "unknown"})
# The proxies' operations a replicaGroups change starts (count: groups; nodesPerGroup:
# nodes): a group is `active` during the add's last phase, so the cluster settles only once
# the operation itself finished.
GROUP_OPERATIONS = frozenset({"group-add", "group-remove", "node-add", "node-drain", "node-remove"})


@dataclass(frozen=True, slots=True)
class Observed:
    """What the children say: per group node readiness, and the proxies'."""

    groups: tuple[GroupReadiness, ...]
    proxies: int
    proxies_ready: int
    operation: OperationProgress | None = None
    # What nodesPerGroup still asks of the proxies (`group g0: adding node g0-1`), if any.
    nodes_pending: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        nodes_ok = all(g.nodes_ready >= g.nodes for g in self.groups)
        return nodes_ok and self.proxies_ready >= 1

    @property
    def group_operation(self) -> bool:
        return self.operation is not None and self.operation.kind in GROUP_OPERATIONS

    @property
    def scaling(self) -> bool:
        """The proxies serve (some group is active) while another group is not yet
        active (being registered, synced or removed) or a group operation still runs."""
        serving = any(g.state == "active" for g in self.groups) and self.proxies_ready >= 1
        changing = any(g.state not in SETTLED_STATES for g in self.groups)
        return serving and (changing or self.group_operation or bool(self.nodes_pending))

    @property
    def settled(self) -> bool:
        return self.ready and not self.scaling


def condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> Condition:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge_conditions(
    old: Sequence[Mapping[str, Any]] | None, new: Sequence[Condition], now: str
) -> list[Condition]:
    """`new` with `lastTransitionTime` kept from `old` where the status did not change;
    conditions of types not in `new` are kept as they were."""
    previous = {c.get("type"): c for c in old or ()}
    out: list[Condition] = []
    for cond in new:
        before = previous.pop(cond["type"], None)
        unchanged = before is not None and before.get("status") == cond["status"]
        since = before.get("lastTransitionTime") if unchanged and before else None
        out.append({**cond, "lastTransitionTime": since or now})
    out.extend(dict(c) for c in previous.values())
    return out


def waiting_for(observed: Observed) -> str:
    parts = [
        f"group {g.id}: {g.nodes_ready}/{g.nodes} nodes ready"
        for g in observed.groups
        if g.nodes_ready < g.nodes
    ]
    if observed.proxies_ready < 1:
        parts.append(f"proxies: {observed.proxies_ready}/{observed.proxies} ready")
    parts.extend(
        f"group {g.id}: {g.state}"
        + (f" ({g.shards_synced}/{g.shards_total} shards synced)" if g.shards_total else "")
        for g in observed.groups
        if g.state not in SETTLED_STATES
    )
    parts.extend(observed.nodes_pending)
    op = observed.operation
    if op is not None and observed.group_operation:
        parts.append(f"operation {op.id} ({op.kind}): {op.phase}")
    return "; ".join(parts)


def reconciled(
    observed: Observed, generation: int, old: Mapping[str, Any], now: str, established: bool
) -> dict[str, Any]:
    """The status after the children were applied: Provisioning until every node and a
    proxy are ready, then Ready; an `established` cluster (one whose reconcile finished, or
    whose status says this generation was once ready) that is not ready is Degraded."""
    ready = observed.ready
    was_ready = old.get("observedGeneration") == generation and old.get("phase") in (
        "Ready",
        "Degraded",
    )
    established = established or was_ready
    waiting = waiting_for(observed)
    if observed.scaling:
        phase, message = "Scaling", f"changing replica groups or their nodes: {waiting}"
        conditions = [
            condition("Ready", ready, "Scaling", message, generation),
            condition("Progressing", True, "Scaling", message, generation),
            condition("Degraded", False, "Scaling", message, generation),
        ]
    elif ready:
        phase, message = "Ready", "every node and a proxy are ready"
        conditions = [
            condition("Ready", True, "ClusterReady", message, generation),
            condition("Progressing", False, "Reconciled", message, generation),
            condition("Degraded", False, "AllReady", message, generation),
        ]
    elif established:
        phase, message = "Degraded", f"not ready: {waiting}"
        conditions = [
            condition("Ready", False, "NotReady", message, generation),
            condition("Progressing", False, "Degraded", message, generation),
            condition("Degraded", True, "NotReady", message, generation),
        ]
    else:
        phase, message = "Provisioning", f"waiting: {waiting}"
        conditions = [
            condition("Ready", False, "Provisioning", message, generation),
            condition("Progressing", True, "Provisioning", message, generation),
            condition("Degraded", False, "Provisioning", message, generation),
        ]
    nodes = sum(g.nodes for g in observed.groups)
    nodes_ready = sum(min(g.nodes_ready, g.nodes) for g in observed.groups)
    return {
        "phase": phase,
        "observedGeneration": generation,
        "nodes": f"{nodes_ready}/{nodes}",
        "groups": [_group(g) for g in observed.groups],
        # None removes a finished operation from the status (merge patch).
        "operation": _operation(observed.operation),
        "conditions": merge_conditions(_conditions(old), conditions, now),
    }


def _group(g: GroupReadiness) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": g.id,
        "state": g.state,
        "nodes": g.nodes,
        "nodesReady": g.nodes_ready,
    }
    if g.shards_total:
        out["shardsSynced"] = g.shards_synced
        out["shardsTotal"] = g.shards_total
    return out


def _operation(op: OperationProgress | None) -> dict[str, Any] | None:
    if op is None:
        return None
    return {
        "id": op.id,
        "kind": op.kind,
        "state": op.state,
        "phase": op.phase,
        "progress": {"done": op.done, "total": op.total, "unit": op.unit},
    }


def _conditions(old: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    found = old.get("conditions")
    return found if isinstance(found, list) else None


def invalid(message: str, generation: int, old: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The status for a spec the operator refuses: Failed, Degraded with the reason."""
    conditions = [
        condition("Ready", False, "InvalidSpec", message, generation),
        condition("Progressing", False, "InvalidSpec", message, generation),
        condition("Degraded", True, "InvalidSpec", message, generation),
    ]
    return {
        "phase": "Failed",
        "observedGeneration": generation,
        "conditions": merge_conditions(_conditions(old), conditions, now),
    }

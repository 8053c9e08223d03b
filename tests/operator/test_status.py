"""The status as a pure function of what the children report."""

from __future__ import annotations

from miroir_operator import status
from miroir_operator.status import GroupReadiness, Observed

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def _observed(*ready: int, per_group: int = 3, proxies_ready: int = 1) -> Observed:
    groups = tuple(GroupReadiness(f"g{i}", per_group, r) for i, r in enumerate(ready))
    return Observed(groups=groups, proxies=2, proxies_ready=proxies_ready)


def _conditions(st: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["type"]: c for c in st["conditions"]}  # type: ignore[attr-defined, index]


def test_provisioning_then_ready_with_kubernetes_style_conditions() -> None:
    waiting = status.reconciled(_observed(3, 1), 4, {}, T0, established=False)
    assert waiting["phase"] == "Provisioning"
    assert waiting["nodes"] == "4/6"
    assert waiting["observedGeneration"] == 4
    cond = _conditions(waiting)
    assert cond["Ready"]["status"] == "False" and cond["Progressing"]["status"] == "True"
    assert "group g1: 1/3 nodes ready" in str(cond["Ready"]["message"])
    assert all(
        c["lastTransitionTime"] == T0 and c["observedGeneration"] == 4 for c in cond.values()
    )

    ready = status.reconciled(_observed(3, 3), 4, waiting, T1, established=False)
    assert ready["phase"] == "Ready"
    cond = _conditions(ready)
    assert cond["Ready"]["status"] == "True" and cond["Ready"]["lastTransitionTime"] == T1
    # Degraded stayed False: its transition time is the first one.
    assert cond["Degraded"]["status"] == "False" and cond["Degraded"]["lastTransitionTime"] == T0


def test_no_proxy_ready_is_not_ready_even_with_every_node() -> None:
    st = status.reconciled(_observed(3, proxies_ready=0), 1, {}, T0, established=False)
    assert st["phase"] == "Provisioning"
    assert "proxies: 0/2 ready" in str(_conditions(st)["Ready"]["message"])


def test_an_established_cluster_that_loses_a_node_is_degraded() -> None:
    ready = status.reconciled(_observed(3), 1, {}, T0, established=True)
    lost = status.reconciled(_observed(2), 1, ready, T1, established=True)
    assert lost["phase"] == "Degraded"
    cond = _conditions(lost)
    assert cond["Degraded"]["status"] == "True" and cond["Degraded"]["lastTransitionTime"] == T1
    assert cond["Progressing"]["status"] == "False"
    assert cond["Progressing"]["lastTransitionTime"] == T0


def test_a_generation_once_ready_is_degraded_whichever_handler_looks() -> None:
    """An operator restarted while a node is down runs reconcile (not established) again:
    the status it finds says this generation was ready, so the cluster is Degraded; a new
    generation is being rolled out, so it is Provisioning."""
    ready = status.reconciled(_observed(3), 1, {}, T0, established=False)
    assert status.reconciled(_observed(2), 1, ready, T1, established=False)["phase"] == ("Degraded")
    degraded = status.reconciled(_observed(2), 1, ready, T1, established=True)
    assert status.reconciled(_observed(2), 1, degraded, T1, established=False)["phase"] == (
        "Degraded"
    )
    assert status.reconciled(_observed(2), 2, ready, T1, established=False)["phase"] == (
        "Provisioning"
    )


def test_an_invalid_spec_fails_with_the_reason_in_degraded() -> None:
    st = status.invalid("invalid spec: spec.shards: too many", 2, {}, T0)
    assert st["phase"] == "Failed"
    cond = _conditions(st)
    assert cond["Degraded"]["status"] == "True"
    assert cond["Degraded"]["reason"] == "InvalidSpec"
    assert cond["Degraded"]["message"] == "invalid spec: spec.shards: too many"


def test_conditions_of_other_types_are_kept() -> None:
    old = {"conditions": [{"type": "Custom", "status": "True", "lastTransitionTime": T0}]}
    st = status.reconciled(_observed(3), 1, old, T1, established=False)
    assert _conditions(st)["Custom"] == old["conditions"][0]


def _adding(state: str, synced: int, op: status.OperationProgress | None) -> Observed:
    groups = (
        GroupReadiness("g0", 3, 3, state="active"),
        GroupReadiness("g1", 3, 3, state=state, shards_total=8, shards_synced=synced),
    )
    return Observed(groups=groups, proxies=2, proxies_ready=1, operation=op)


def test_a_group_being_added_is_scaling_with_its_sync_and_operation() -> None:
    op = status.OperationProgress("op-1", "group-add", "running", "sync", 3, 8, "shards")
    st = status.reconciled(_adding("syncing", 3, op), 2, {}, T0, established=False)
    assert st["phase"] == "Scaling"
    cond = _conditions(st)
    assert cond["Progressing"]["status"] == "True" and cond["Progressing"]["reason"] == "Scaling"
    assert cond["Ready"]["status"] == "True", "the active group keeps serving"
    assert "group g1: syncing (3/8 shards synced)" in str(cond["Progressing"]["message"])
    assert st["groups"][1] == {
        "id": "g1",
        "state": "syncing",
        "nodes": 3,
        "nodesReady": 3,
        "shardsSynced": 3,
        "shardsTotal": 8,
    }
    assert st["operation"] == {
        "id": "op-1",
        "kind": "group-add",
        "state": "running",
        "phase": "sync",
        "progress": {"done": 3, "total": 8, "unit": "shards"},
    }
    assert not _adding("syncing", 3, op).settled

    done = status.reconciled(_adding("active", 8, None), 2, st, T1, established=False)
    assert done["phase"] == "Ready"
    assert done["operation"] is None, "a merge patch with null removes the finished operation"
    assert _conditions(done)["Progressing"]["status"] == "False"
    assert _adding("active", 8, None).settled


def test_a_group_active_before_its_operation_finished_is_still_scaling() -> None:
    """The proxies mark the group active during the add's last phase: Ready waits for
    the operation's end, so status never shows Ready beside a running operation."""
    op = status.OperationProgress("op-1", "group-add", "running", "activate", 8, 8, "shards")
    activating = _adding("active", 8, op)
    assert activating.scaling and not activating.settled
    st = status.reconciled(activating, 2, {}, T0, established=False)
    assert st["phase"] == "Scaling"
    assert "operation op-1 (group-add): activate" in str(_conditions(st)["Progressing"]["message"])
    other = status.OperationProgress("op-2", "reshard", "running", "copy", 1, 8, "shards")
    assert _adding("active", 8, other).settled, "only group operations hold Scaling"


def test_a_group_the_proxies_do_not_know_yet_is_scaling_not_ready() -> None:
    unregistered = _adding("unregistered", 0, None)
    assert unregistered.scaling and not unregistered.settled
    assert status.reconciled(unregistered, 2, {}, T0, established=True)["phase"] == "Scaling"


def test_unknown_group_states_do_not_hold_the_cluster_back() -> None:
    """Without an answer from the admin API nothing is invented: readiness decides."""
    st = status.reconciled(_observed(3, 3), 1, {}, T0, established=False)
    assert st["phase"] == "Ready" and st["operation"] is None
    assert _observed(3, 3).settled

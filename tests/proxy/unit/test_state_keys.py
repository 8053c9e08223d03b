"""Redis key names (`state/keys.py`): the keys one script touches share a hash slot, so every
script runs on Redis Cluster; the keys no script groups keep their pre-cluster names."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from miroir_proxy.state.keys import TASK_DATES, TASK_INDEXED, Keys

# Namespaces come from a URL: text without braces (refused) and without lone surrogates.
namespaces = st.text(
    st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=12
)
# Scopes, ids and values are data: braces included.
words = st.text(max_size=12)


def _slots(names: list[str]) -> set[int]:
    return {key_slot(name.encode()) for name in names}


@given(namespaces, st.integers(0, 2**53), words, st.integers(1, 40))
def test_every_task_key_shares_one_slot(namespace: str, uid: int, value: str, n: int) -> None:
    k = Keys(namespace)
    names = [k.task(uid), k.tasks, k.task_bodies, k.scratch(n)]
    names += [k.task_by(field, value) for field in TASK_INDEXED]
    names += [k.task_dates(field) for field in TASK_DATES]
    assert len(_slots(names)) == 1


@given(namespaces, words, words, words)
def test_each_scripts_keys_share_one_slot(
    namespace: str, scope: str, job_id: str, op_id: str
) -> None:
    k = Keys(namespace)
    groups = [
        [k.task_uid, k.task_stamp],
        [k.peers, k.peer_expiry],
        [k.lease(scope), k.phase(scope)],
        [k.job(job_id), k.job_slots(job_id), k.active_jobs, k.job_turn, k.queue_depth],
        [k.operation(op_id), k.running(scope), k.operations, k.operation_seq],
    ]
    for names in groups:
        assert len(_slots(names)) == 1, names


def test_unrelated_groups_spread_over_slots() -> None:
    k = Keys()
    anchors = [k.tasks, k.task_uid, k.peers, k.active_jobs, k.operations, k.indexes]
    anchors += [k.topology, k.lease("a"), k.lease("b"), k.kv("x"), k.kv("y")]
    assert len(_slots(anchors)) == len(anchors)


def test_keys_no_script_groups_keep_their_standalone_names() -> None:
    # An upgraded standalone deployment keeps its indexes, topology, kv entries and task
    # uid sequence (README "Redis Cluster").
    k = Keys("miroir:")
    assert (k.indexes, k.topology, k.kv("idem:x"), k.task_uid) == (
        "miroir:indexes",
        "miroir:topology",
        "miroir:kv:idem:x",
        "miroir:task-uid",
    )


@pytest.mark.parametrize("namespace", ["a{b}:", "x{:", "}:"])
def test_a_namespace_with_a_brace_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="reserved for hash tags"):
        Keys(namespace)

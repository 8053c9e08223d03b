"""Mode A ownership: rendezvous over the live peer set moves only the keys that must move."""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from miroir_proxy.coordination.ownership import Ownership, owner_of

pod_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
peer_sets = st.sets(pod_ids, min_size=1, max_size=8)
KEYS = [f"tasks:{n}" for n in range(200)]


@given(peer_sets, pod_ids)
def test_a_joining_peer_takes_keys_only_for_itself(peers: set[str], newcomer: str) -> None:
    joined = peers | {newcomer}
    for key in KEYS:
        before, after = owner_of(key, peers), owner_of(key, joined)
        assert after in (before, newcomer)


@given(peer_sets.filter(lambda p: len(p) >= 2), st.data())
def test_a_leaving_peer_hands_over_only_its_own_keys(peers: set[str], data: st.DataObject) -> None:
    leaving = data.draw(st.sampled_from(sorted(peers)))
    remaining = peers - {leaving}
    for key in KEYS:
        before, after = owner_of(key, peers), owner_of(key, remaining)
        if before == leaving:
            assert after in remaining
        else:
            assert after == before


@given(peer_sets)
def test_every_pod_computes_the_same_owner_whatever_the_order(peers: set[str]) -> None:
    ordered = sorted(peers)
    for key in KEYS[:50]:
        owner = owner_of(key, ordered)
        assert owner in peers
        assert owner_of(key, reversed(ordered)) == owner
        views = [Ownership(pod, lambda: frozenset(peers)) for pod in peers]
        assert [view.owns(key) for view in views].count(True) == 1


def test_no_peers_means_no_owner() -> None:
    assert owner_of("tasks:1", []) is None


def test_keys_spread_evenly_over_peers() -> None:
    peers = [f"pod-{n}" for n in range(4)]
    counts = Counter(owner_of(f"tasks:{n}", peers) for n in range(4000))
    assert set(counts) == set(peers)
    assert all(800 <= c <= 1200 for c in counts.values()), counts


def test_a_pod_counts_itself_live_before_its_heartbeat_is_seen() -> None:
    others = frozenset({"pod-a", "pod-b"})
    me = Ownership("pod-c", lambda: others)
    mine = [key for key in KEYS if me.owns(key)]
    assert mine == [key for key in KEYS if owner_of(key, others | {"pod-c"}) == "pod-c"]
    assert mine

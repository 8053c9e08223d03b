"""Leases, peers, fenced phases and the chunked job queue, on both store backends.

TTLs run out by moving SQLite's clock, and for real (short TTLs, polled with a deadline)
on Redis; see `storekit.Timeline`.
"""

import asyncio
from collections import Counter
from collections.abc import Callable

from miroir_proxy.state.store import ClaimedChunk, JobProgress, Store

from ..storekit import SHORT_TTL_MS, FakeClock, Timeline

LONG_MS = 60_000


async def test_a_lease_has_one_holder_and_only_it_renews_or_releases(store: Store) -> None:
    assert await store.lease_holder("rebalance:movies") is None
    assert await store.lease_acquire("rebalance:movies", "pod-a", LONG_MS)
    assert not await store.lease_acquire("rebalance:movies", "pod-b", LONG_MS)
    assert await store.lease_acquire("rebalance:movies", "pod-a", LONG_MS)  # re-entrant
    assert await store.lease_acquire("reshard:movies", "pod-b", LONG_MS)  # other scope
    assert await store.lease_holder("rebalance:movies") == "pod-a"
    assert not await store.lease_renew("rebalance:movies", "pod-b", LONG_MS)
    assert not await store.lease_release("rebalance:movies", "pod-b")
    assert await store.lease_renew("rebalance:movies", "pod-a", LONG_MS)
    assert await store.lease_release("rebalance:movies", "pod-a")
    assert not await store.lease_release("rebalance:movies", "pod-a")
    assert await store.lease_holder("rebalance:movies") is None
    assert await store.lease_acquire("rebalance:movies", "pod-b", LONG_MS)
    assert await store.lease_holder("reshard:movies") == "pod-b"


async def test_an_expired_lease_is_lost_to_the_next_taker(store: Store, timeline: Timeline) -> None:
    assert await store.lease_acquire("group-sync", "pod-a", SHORT_TTL_MS)

    async def taken_by_b() -> bool:
        return await store.lease_acquire("group-sync", "pod-b", LONG_MS)

    await timeline.until(taken_by_b, after_ms=SHORT_TTL_MS)
    assert await store.lease_holder("group-sync") == "pod-b"
    assert not await store.lease_renew("group-sync", "pod-a", LONG_MS)
    assert not await store.lease_release("group-sync", "pod-a")
    assert not await store.lease_acquire("group-sync", "pod-a", LONG_MS)


async def test_renewing_outlives_the_first_ttl(store: Store, timeline: Timeline) -> None:
    assert await store.lease_acquire("held", "pod-a", SHORT_TTL_MS)
    # A witness taken after `held` with the same TTL: once it expired, so would `held` have.
    assert await store.lease_acquire("witness", "pod-w", SHORT_TTL_MS)
    assert await store.lease_renew("held", "pod-a", LONG_MS)

    async def witness_expired() -> bool:
        return await store.lease_holder("witness") is None

    await timeline.until(witness_expired, after_ms=SHORT_TTL_MS)
    assert await store.lease_holder("held") == "pod-a"
    assert not await store.lease_renew("witness", "pod-w", LONG_MS)


async def test_lease_ttl_counts_down_to_the_expiry_and_follows_renewals(
    store: Store, timeline: Timeline, clock: FakeClock, backend: str
) -> None:
    assert await store.lease_ttl_ms("group-sync") is None
    assert await store.lease_acquire("group-sync", "pod-a", LONG_MS)
    remaining = await store.lease_ttl_ms("group-sync")
    assert remaining is not None and LONG_MS - 1_000 < remaining <= LONG_MS
    if backend == "sqlite":
        clock.now += 20.0
        assert await store.lease_ttl_ms("group-sync") == LONG_MS - 20_000
    assert await store.lease_renew("group-sync", "pod-a", 2 * LONG_MS)
    renewed = await store.lease_ttl_ms("group-sync")
    assert renewed is not None and 2 * LONG_MS - 1_000 < renewed <= 2 * LONG_MS
    assert await store.lease_release("group-sync", "pod-a")
    assert await store.lease_ttl_ms("group-sync") is None

    assert await store.lease_acquire("group-sync", "pod-b", SHORT_TTL_MS)
    short = await store.lease_ttl_ms("group-sync")
    assert short is not None and 0 < short <= SHORT_TTL_MS

    async def expired() -> bool:
        return await store.lease_ttl_ms("group-sync") is None

    await timeline.until(expired, after_ms=SHORT_TTL_MS)
    assert await store.lease_acquire("group-sync", "pod-c", LONG_MS)


async def test_phase_writes_are_fenced_by_the_lease(store: Store, timeline: Timeline) -> None:
    scope = "reshard:movies"
    assert not await store.put_phase(scope, {"phase": "copy"}, owner="pod-a")
    assert await store.get_phase(scope) is None
    assert await store.lease_acquire(scope, "pod-a", SHORT_TTL_MS)
    assert await store.put_phase(scope, {"phase": "dual-write", "epoch": 3}, owner="pod-a")
    assert not await store.put_phase(scope, {"phase": "bogus"}, owner="pod-b")

    async def taken_over() -> bool:
        return await store.lease_acquire(scope, "pod-b", LONG_MS)

    await timeline.until(taken_over, after_ms=SHORT_TTL_MS)
    # The new holder resumes where the old one stopped; the old one can't write any more.
    assert await store.get_phase(scope) == {"phase": "dual-write", "epoch": 3}
    assert not await store.put_phase(scope, {"phase": "late"}, owner="pod-a")
    assert await store.put_phase(scope, {"phase": "copy", "cursor": [1, "x"]}, owner="pod-b")
    assert await store.get_phase(scope) == {"phase": "copy", "cursor": [1, "x"]}
    assert await store.get_phase("other") is None


async def test_live_peers_follow_heartbeats_and_leaves(store: Store, timeline: Timeline) -> None:
    await store.peer_heartbeat("pod-a", {"addr": "10.0.0.1"}, SHORT_TTL_MS)
    await store.peer_heartbeat("pod-b", {"addr": "10.0.0.2"}, LONG_MS)
    await store.peer_heartbeat("pod-c", {"addr": "10.0.0.3"}, LONG_MS)
    await store.peer_heartbeat("pod-c", {"addr": "10.0.0.3", "epoch": 2}, LONG_MS)
    assert await store.live_peers() == {
        "pod-a": {"addr": "10.0.0.1"},
        "pod-b": {"addr": "10.0.0.2"},
        "pod-c": {"addr": "10.0.0.3", "epoch": 2},
    }
    await store.peer_leave("pod-b")
    await store.peer_leave("pod-b")

    async def only_c_left() -> bool:
        return list(await store.live_peers()) == ["pod-c"]

    await timeline.until(only_c_left, after_ms=SHORT_TTL_MS)
    await store.peer_heartbeat("pod-a", {"back": True}, LONG_MS)
    assert await store.live_peers() == {
        "pod-a": {"back": True},
        "pod-c": {"addr": "10.0.0.3", "epoch": 2},
    }


async def test_queue_enqueue_once_claim_complete_and_exact_depth(store: Store) -> None:
    assert await store.queue_depth() == 0
    assert await store.job_progress("sync-1") is None
    chunks = [{"shard": s} for s in range(3)]
    assert await store.enqueue_job("sync-1", "group-sync", {"group": "g2"}, chunks)
    assert not await store.enqueue_job("sync-1", "group-sync", {"other": 1}, chunks * 2)
    assert await store.enqueue_job("empty", "group-sync", {}, [])
    assert await store.job_progress("empty") == JobProgress(0, 0, 0)
    assert await store.queue_depth() == 3

    first = await store.claim_chunk("pod-a", LONG_MS)
    assert first == ClaimedChunk("sync-1", "group-sync", 0, {"group": "g2"}, {"shard": 0}, None, 1)
    assert await store.queue_depth() == 3
    assert await store.job_progress("sync-1") == JobProgress(3, 0, 1)
    assert await store.claim_chunk("pod-b", LONG_MS, kinds=["reshard"]) is None
    second = await store.claim_chunk("pod-b", LONG_MS, kinds={"reshard", "group-sync"})
    third = await store.claim_chunk("pod-a", LONG_MS)
    assert [c.index for c in (second, third) if c] == [1, 2]
    assert await store.claim_chunk("pod-c", LONG_MS) is None
    assert await store.job_progress("sync-1") == JobProgress(3, 0, 3)

    assert not await store.complete_chunk("sync-1", 0, "pod-b")  # not its claim
    assert await store.complete_chunk("sync-1", 0, "pod-a")
    assert not await store.complete_chunk("sync-1", 0, "pod-a")  # already done
    assert not await store.heartbeat_chunk("sync-1", 0, "pod-a", LONG_MS)
    assert await store.queue_depth() == 2
    assert await store.complete_chunk("sync-1", 2, "pod-a")
    assert await store.queue_depth() == 1
    assert await store.complete_chunk("sync-1", 1, "pod-b")
    assert await store.queue_depth() == 0
    assert await store.job_progress("sync-1") == JobProgress(3, 3, 0)
    assert await store.claim_chunk("pod-a", LONG_MS) is None
    assert not await store.enqueue_job("sync-1", "group-sync", {}, chunks)  # even when done
    assert await store.queue_depth() == 0


async def test_an_expired_claim_moves_with_its_cursor(store: Store, timeline: Timeline) -> None:
    await store.enqueue_job("move", "rebalance", {"index": "movies"}, [{"from": 0, "to": 100}])
    claim = await store.claim_chunk("pod-a", SHORT_TTL_MS)
    assert claim is not None and claim.attempt == 1
    assert await store.heartbeat_chunk("move", 0, "pod-a", SHORT_TTL_MS, {"done_to": 40})
    assert await store.heartbeat_chunk("move", 0, "pod-a", SHORT_TTL_MS)  # cursor kept
    retaken: list[ClaimedChunk] = []

    async def taken_over() -> bool:
        got = await store.claim_chunk("pod-b", LONG_MS)
        retaken.extend([got] if got else [])
        return got is not None

    await timeline.until(taken_over, after_ms=SHORT_TTL_MS)
    assert retaken[0].cursor == {"done_to": 40}
    assert (retaken[0].index, retaken[0].attempt, retaken[0].chunk) == (
        0,
        2,
        {"from": 0, "to": 100},
    )
    assert await store.queue_depth() == 1
    assert not await store.heartbeat_chunk("move", 0, "pod-a", LONG_MS, {"done_to": 99})
    assert not await store.complete_chunk("move", 0, "pod-a")
    assert await store.heartbeat_chunk("move", 0, "pod-b", LONG_MS, {"done_to": 70})
    assert await store.complete_chunk("move", 0, "pod-b")
    assert await store.queue_depth() == 0
    assert await store.job_progress("move") == JobProgress(1, 1, 0)


async def test_an_expired_claim_nobody_took_is_still_its_owners(
    store: Store, timeline: Timeline
) -> None:
    await store.enqueue_job("j", "k", {}, [{}])
    assert await store.claim_chunk("pod-a", SHORT_TTL_MS) is not None

    async def claim_lapsed() -> bool:
        progress = await store.job_progress("j")
        return progress == JobProgress(1, 0, 0)

    await timeline.until(claim_lapsed, after_ms=SHORT_TTL_MS)
    assert await store.heartbeat_chunk("j", 0, "pod-a", LONG_MS)
    assert await store.claim_chunk("pod-b", LONG_MS) is None
    assert await store.complete_chunk("j", 0, "pod-a")


async def test_two_jobs_interleave(store: Store) -> None:
    await store.enqueue_job("big-1", "copy", {}, [{"n": i} for i in range(6)])
    await store.enqueue_job("big-2", "copy", {}, [{"n": i} for i in range(6)])
    order = []
    for step in range(12):
        claim = await store.claim_chunk("pod-a", LONG_MS)
        assert claim is not None
        order.append((claim.job_id, claim.index))
        if step % 3:  # leave some claimed: the others must keep alternating around them
            assert await store.complete_chunk(claim.job_id, claim.index, "pod-a")
        assert await store.queue_depth() == 12 - sum(1 for s in range(step + 1) if s % 3)
    assert [job for job, _ in order] == ["big-1", "big-2"] * 6
    assert sorted(order) == [(job, i) for job in ("big-1", "big-2") for i in range(6)]


async def test_concurrent_pods_claim_each_chunk_once(make_store: Callable[[], Store]) -> None:
    pods = [make_store() for _ in range(4)]
    try:
        for j in range(3):
            await pods[0].enqueue_job(f"job-{j}", "copy", {"j": j}, [{"i": i} for i in range(20)])
        done: Counter[tuple[str, int]] = Counter()

        async def work(store: Store, owner: str) -> None:
            while (claim := await store.claim_chunk(owner, LONG_MS)) is not None:
                assert await store.heartbeat_chunk(claim.job_id, claim.index, owner, LONG_MS)
                assert await store.complete_chunk(claim.job_id, claim.index, owner)
                done[(claim.job_id, claim.index)] += 1

        await asyncio.gather(
            *(work(p, f"pod-{n}-{k}") for n, p in enumerate(pods) for k in range(3))
        )
        assert sorted(done) == [(f"job-{j}", i) for j in range(3) for i in range(20)]
        assert set(done.values()) == {1}
        assert await pods[1].queue_depth() == 0
        assert await pods[2].job_progress("job-1") == JobProgress(20, 20, 0)
    finally:
        await asyncio.gather(*(p.close() for p in pods))


async def test_coordination_state_survives_reopen(make_store: Callable[[], Store]) -> None:
    first = make_store()
    assert await first.lease_acquire("settings:movies", "pod-a", LONG_MS)
    assert await first.put_phase("settings:movies", {"phase": "prepare"}, owner="pod-a")
    await first.peer_heartbeat("pod-a", {"v": 1}, LONG_MS)
    await first.enqueue_job("dump", "import", {"path": "/d"}, [{"i": 0}, {"i": 1}])
    claim = await first.claim_chunk("pod-a", LONG_MS)
    assert claim is not None
    assert await first.heartbeat_chunk("dump", claim.index, "pod-a", LONG_MS, {"line": 12})
    await first.close()

    second = make_store()
    try:
        await second.ping()
        assert await second.lease_holder("settings:movies") == "pod-a"
        assert await second.get_phase("settings:movies") == {"phase": "prepare"}
        assert await second.live_peers() == {"pod-a": {"v": 1}}
        assert await second.queue_depth() == 2
        assert await second.job_progress("dump") == JobProgress(2, 0, 1)
        assert await second.complete_chunk("dump", claim.index, "pod-a")
        rest = await second.claim_chunk("pod-b", LONG_MS)
        assert rest is not None and rest.index == 1 - claim.index
        assert await second.queue_depth() == 1
    finally:
        await second.close()


async def test_concurrent_takers_get_one_lease(make_store: Callable[[], Store]) -> None:
    pods = [make_store() for _ in range(3)]
    try:
        owners = [f"pod-{n}-{k}" for n in range(3) for k in range(5)]
        granted = await asyncio.gather(
            *(
                pods[i // 5].lease_acquire("group-sync", owner, LONG_MS)
                for i, owner in enumerate(owners)
            )
        )
        assert sum(granted) == 1
        winner = owners[granted.index(True)]
        assert {await p.lease_holder("group-sync") for p in pods} == {winner}
    finally:
        await asyncio.gather(*(p.close() for p in pods))

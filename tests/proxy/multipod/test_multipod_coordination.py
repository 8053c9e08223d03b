"""Leases and the job queue across three proxy processes on one Redis, with kill -9.

Leases: every pod joins the demo scope (`/_miroir/scaffold/leases/{name}`, a route of the test
plugin `tests/proxy/scaffold/`), whose holder runs a persisted phase machine. "One holder at
any instant" is checked on two clocks at once: each pod reports the intervals during which its
own `LeaseKeeper.held` was true, sampled on the system-wide monotonic clock, and those
intervals must never overlap across pods; meanwhile a thread samples the lease key in Redis,
and whenever a sample falls entirely inside a pod's interval the key must name that pod's
token.

Queue: `sleep-chunks` jobs record, per chunk, which worker token committed each step; the
queue-depth counter and the job hashes are read from Redis in one transaction, so "depth
is exact" is checked against the jobs themselves at every sample, not eventually.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import redis

from miroir_proxy.cli.devcluster import DevCluster

from .conftest import (
    CLAIM_TTL_S,
    KEYS,
    LEASE_RENEW_S,
    LEASE_TTL_S,
    eventually,
    figure,
    http,
    ok,
    queue_depth_metric,
)

# Sampling and HTTP round trips on a loaded machine, on top of the protocol's own bound.
SLACK_S = 0.25


Interval = tuple[float, float, str]
Sample = tuple[float, float, str | None]


def _demo(url: str, name: str) -> str:
    return f"{url}/_miroir/scaffold/leases/{name}"


@contextmanager
def _sample_key(url: str, key: str) -> Iterator[list[tuple[float, float, str | None]]]:
    """(sent, answered, value) of `GET key` every ~2 ms while the block runs."""
    samples: list[tuple[float, float, str | None]] = []
    stop = threading.Event()
    client = redis.Redis.from_url(url, decode_responses=True)

    def sample() -> None:
        while not stop.wait(0.002):
            sent = time.monotonic()
            value: Any = client.get(key)
            samples.append((sent, time.monotonic(), value))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        client.close()


def _held_until(view: dict[str, Any], end: float) -> list[tuple[float, float, str]]:
    """A pod's held intervals, the open one (if it still holds) extended to `end`."""
    intervals = [(s, e, view["token"]) for s, e in view["heldIntervals"]]
    if view["held"] and intervals:
        intervals[-1] = (intervals[-1][0], end, view["token"])
    return intervals


def _holds_for(url: str, name: str, seconds: float) -> bool:
    """The pod at `url` holds the lease and has held it without a break for `seconds`."""
    view = ok(http("GET", _demo(url, name)))
    if not view["held"] or not view["heldIntervals"]:
        return False
    start, end = view["heldIntervals"][-1]
    return bool(end - start >= seconds)


def test_one_lease_holder_at_a_time_and_a_killed_holder_is_replaced_within_the_ttl(
    pods: DevCluster,
) -> None:
    name, phases = "leader", 8
    body = {"operation": "op-1", "phases": phases, "stepMs": 300}
    assert pods.store_url is not None
    with _sample_key(pods.store_url, KEYS.lease(f"demo:{name}")) as samples:
        for url in pods.urls:
            ok(http("POST", _demo(url, name), json=body), 202)

        def committed(count: int) -> bool:
            state = ok(http("GET", _demo(pods.urls[0], name)))["state"]
            return state is not None and len(state["data"].get("ran", [])) >= count

        eventually(lambda: committed(3), "three phases committed")
        views = [ok(http("GET", _demo(url, name))) for url in pods.urls]
        assert [v["held"] for v in views].count(True) == 1, views
        leader = next(i for i, v in enumerate(views) if v["held"])
        killed_at = time.monotonic()
        pods.proxies[leader].kill()
        intervals = _held_until(views[leader], killed_at)
        survivors = [url for i, url in enumerate(pods.urls) if i != leader]

        def finished() -> dict[str, Any] | None:
            done = [ok(http("GET", _demo(url, name))) for url in survivors]
            return next((v for v in done if v["finished"]), None)

        eventually(lambda: finished() is not None, "a survivor finishes the phase machine")
        successor = finished()
        assert successor is not None
        takeover_s = successor["heldIntervals"][0][0] - killed_at
        figure("lease_takeover_after_kill_s", round(takeover_s, 3))
        # The lease expires at most a TTL after the kill, and the contenders wake for it.
        assert 0 < takeover_s <= LEASE_TTL_S + SLACK_S

        state = successor["state"]
        assert state["phase"] == "done"
        ran = state["data"]["ran"]
        assert [r["phase"] for r in ran] == [f"p{i}" for i in range(phases)]
        by = [r["by"] for r in ran]
        resumed = by.index(successor["token"])
        assert resumed >= 3
        assert by == [views[leader]["token"]] * resumed + [successor["token"]] * (phases - resumed)
        assert successor["startedFrom"] == [f"p{resumed}"]

        # Several renewal cycles under the new holder, then a graceful leave: the lease is
        # released, so the last pod leads at its next attempt instead of after the TTL.
        successor_url = next(u for u in survivors if ok(http("GET", _demo(u, name)))["finished"])
        last_url = next(u for u in survivors if u != successor_url)
        eventually(lambda: _holds_for(successor_url, name, 4 * LEASE_RENEW_S), "4 renewals")
        before_leave = ok(http("GET", _demo(successor_url, name)))
        left_at = time.monotonic()
        assert ok(http("DELETE", _demo(successor_url, name))) == {"left": True}
        # It believed it held until its release, somewhere inside the DELETE round trip:
        # the overlap check takes the whole round trip, the Redis check only up to the send.
        released = _held_until(before_leave, time.monotonic())
        intervals += released
        certain = [*intervals[: -len(released)], *_held_until(before_leave, left_at)]
        eventually(lambda: ok(http("GET", _demo(last_url, name)))["held"], "the last pod leads")
        last = ok(http("GET", _demo(last_url, name)))
        handover_s = last["heldIntervals"][0][0] - left_at
        figure("lease_handover_after_release_s", round(handover_s, 3))
        assert handover_s <= LEASE_RENEW_S + SLACK_S
        assert last["startedFrom"] == ["done"]
        eventually(lambda: _holds_for(last_url, name, 4 * LEASE_RENEW_S), "4 more renewals")
        last = ok(http("GET", _demo(last_url, name)))
        intervals += _held_until(last, time.monotonic())
        certain += _held_until(last, time.monotonic())
        ok(http("DELETE", _demo(last_url, name)))

    held_s = sum(e - s for s, e, _ in intervals)
    figure("lease_held_s", round(held_s, 3))
    assert held_s >= 10 * LEASE_RENEW_S
    _assert_one_holder(intervals, certain, samples)


def _assert_one_holder(
    believed: list[Interval], certain: list[Interval], samples: list[Sample]
) -> None:
    """No two pods' `believed` intervals overlap, and every Redis sample taken entirely
    inside a `certain` interval names that interval's pod."""
    for (_, end, token), (start, _, other) in itertools.pairwise(sorted(believed)):
        assert start >= end or token == other, f"{token} and {other} both held the lease"
    inside = 0
    for sent, answered, value in samples:
        for start, end, token in certain:
            if start <= sent and answered <= end:
                assert value == token, (sent, value, token)
                inside += 1
    assert inside > 100, "too few Redis samples fell inside held intervals to mean anything"


def test_a_frozen_holder_stops_believing_it_leads_before_another_takes_over(
    pods: DevCluster,
) -> None:
    """SIGSTOP of the holder (a long GC pause, a stalled VM) past the TTL: another pod
    leads, and the frozen one, once thawed, never claims the lease again meanwhile."""
    name = "frozen"
    body = {"operation": "op-1", "phases": 1, "stepMs": 1}
    assert pods.store_url is not None
    with _sample_key(pods.store_url, KEYS.lease(f"demo:{name}")) as samples:
        for url in pods.urls:
            ok(http("POST", _demo(url, name), json=body), 202)
        eventually(
            lambda: any(_holds_for(url, name, 2 * LEASE_RENEW_S) for url in pods.urls),
            "a pod leads for two renewals",
        )
        views = [ok(http("GET", _demo(url, name))) for url in pods.urls]
        leader = next(i for i, v in enumerate(views) if v["held"])
        frozen = pods.proxies[leader]
        frozen.pause()
        frozen_at = time.monotonic()
        try:
            others = [url for i, url in enumerate(pods.urls) if i != leader]
            took = eventually(
                lambda: any(ok(http("GET", _demo(url, name)))["held"] for url in others),
                "another pod leads",
            )
            figure("lease_takeover_after_freeze_s", round(took, 3))
            assert time.monotonic() - frozen_at <= LEASE_TTL_S + SLACK_S
        finally:
            frozen.resume()
        # The new holder leads for four renewals from its takeover, which came before the
        # thaw: the thawed pod meanwhile ran a few rounds against the new holder's lease.
        eventually(
            lambda: any(_holds_for(url, name, 4 * LEASE_RENEW_S) for url in others),
            "the new holder keeps the lease",
        )
        end = time.monotonic()
        final = [ok(http("GET", _demo(url, name))) for url in pods.urls]
        for url in pods.urls:
            ok(http("DELETE", _demo(url, name)))
    assert not final[leader]["held"]
    assert len(final[leader]["heldIntervals"]) == 1, "the thawed pod led again"
    # The frozen pod's last interval ends at its last sample before the freeze.
    intervals = [interval for view in final for interval in _held_until(view, end)]
    _assert_one_holder(intervals, intervals, samples)


def _enqueue(url: str, job: str, chunks: int, steps: int, step_ms: int) -> bool:
    body = {
        "kind": "sleep-chunks",
        "jobId": job,
        "chunks": chunks,
        "steps": steps,
        "stepMs": step_ms,
    }
    return bool(ok(http("POST", f"{url}/_miroir/scaffold/jobs", json=body), 202)["created"])


def _job(url: str, job: str) -> dict[str, Any]:
    return dict(ok(http("GET", f"{url}/_miroir/scaffold/jobs/{job}")))


def _finished(url: str, job: str) -> dict[str, Any]:
    answer: dict[str, Any] = {}

    def done() -> bool:
        answer.update(_job(url, job))
        return bool(answer["finished"])

    eventually(done, f"job {job} finishes")
    return answer


def test_a_killed_pods_chunk_is_finished_by_another_from_its_cursor(
    pods: DevCluster, store: redis.Redis
) -> None:
    job, steps = "mp-kill", 10
    assert _enqueue(pods.urls[0], job, chunks=3, steps=steps, step_ms=100)
    victim: dict[str, Any] = {}

    def mid_chunk() -> bool:
        fields: dict[str, str] = cast(dict[str, str], store.hgetall(KEYS.job(job)))
        for i in range(3):
            owner, cursor = fields.get(f"o:{i}"), fields.get(f"u:{i}")
            if (
                owner
                and not owner.startswith("pod-0/")
                and cursor
                and json.loads(cursor)["next"] >= 3
            ):
                victim.update(index=i, owner=owner)
                return True
        return False

    eventually(mid_chunk, "a chunk of pod-1 or pod-2 is three steps in")
    index, owner = victim["index"], victim["owner"]
    pod = int(owner.split("/")[0].removeprefix("pod-"))
    killed_at = time.monotonic()
    pods.proxies[pod].kill()
    cursor = store.hget(KEYS.job(job), f"u:{index}")
    assert cursor is not None
    saved = json.loads(cursor)["next"]
    takeover_s = eventually(
        lambda: store.hget(KEYS.job(job), f"o:{index}") != owner, "another pod claims the chunk"
    )
    figure("chunk_takeover_after_kill_s", round(takeover_s, 3))
    assert time.monotonic() - killed_at <= 2 * CLAIM_TTL_S + SLACK_S

    answer = _finished(pods.urls[0], job)
    assert (answer["total"], answer["done"], answer["duplicated"]) == (3, 3, False)
    record = answer["chunks"][index]
    assert len(record["done_by"]) == steps
    assert record["done_by"][:saved] == [owner] * saved
    (successor,) = set(record["done_by"][saved:])
    assert successor != owner and record["attempt"] == 2
    tokens = {token for chunk in answer["chunks"] for token in chunk["done_by"]}
    assert len(tokens) >= 3, tokens


def _depth_snapshot(store: redis.Redis, jobs: list[str]) -> tuple[int, int]:
    """(the queue-depth counter, chunks not done summed over `jobs`), read atomically."""
    pipe = store.pipeline(transaction=True)
    pipe.get(KEYS.queue_depth)
    for job in jobs:
        pipe.hmget(KEYS.job(job), "total", "done")
    depth, *progress = pipe.execute()
    open_chunks = sum(int(total) - int(done or 0) for total, done in progress if total)
    return int(depth or 0), open_chunks


def test_two_big_jobs_interleave_on_all_pods_and_the_depth_is_exact(
    pods: DevCluster, store: redis.Redis
) -> None:
    def metrics_show(depth: int) -> bool:
        return [queue_depth_metric(proxy) for proxy in pods.proxies] == [depth] * 3

    eventually(lambda: metrics_show(0), "an empty queue on every pod")
    # Blockers keep each pod's only worker slot busy while the big jobs are queued.
    assert _enqueue(pods.urls[0], "mp-block", chunks=3, steps=10, step_ms=200)

    def in_progress() -> list[int]:
        return [ok(http("GET", f"{u}/_miroir/coordination"))["jobsInProgress"] for u in pods.urls]

    eventually(lambda: in_progress() == [1, 1, 1], "every pod works on a blocker")
    total = 12
    assert _enqueue(pods.urls[1], "mp-a", chunks=total, steps=1, step_ms=50)
    assert _enqueue(pods.urls[2], "mp-b", chunks=total, steps=1, step_ms=50)
    assert not _enqueue(pods.urls[0], "mp-a", chunks=total, steps=1, step_ms=50)
    eventually(lambda: metrics_show(3 + 2 * total), "every pod exports the same depth", 1.0)

    jobs = ["mp-block", "mp-a", "mp-b"]
    progress: list[tuple[int, int]] = []
    snapshots = 0

    def drained() -> bool:
        nonlocal snapshots
        depth, open_chunks = _depth_snapshot(store, jobs)
        assert depth == open_chunks
        snapshots += 1
        a, b = (_job(pods.urls[i], job)["done"] for i, job in ((0, "mp-a"), (1, "mp-b")))
        progress.append((a, b))
        return depth == 0

    eventually(drained, "every job done")
    figure("depth_snapshots", snapshots)
    # Neither job waits for the other: when the first one finished, the second was mostly done.
    first_done = next((a, b) for a, b in progress if total in (a, b))
    assert min(first_done) >= total // 2, progress
    eventually(lambda: metrics_show(0), "every pod exports an empty queue again")
    for job in jobs:
        answer = _job(pods.urls[2], job)
        assert answer["done"] == answer["total"] and answer["duplicated"] is False
    tokens = {
        t
        for job in ("mp-a", "mp-b")
        for c in _job(pods.urls[0], job)["chunks"]
        for t in c["done_by"]
    }
    assert len(tokens) >= 2, tokens

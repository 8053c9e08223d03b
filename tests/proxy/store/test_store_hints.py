"""Hinted handoff in the shared store, on every backend: order, bound, overflow, deletion."""

import asyncio
from collections.abc import Callable

from miroir_proxy.state.store import Hint, HintBacklog, Store


def hint(node: str, n: int, index_uid: str = "books", body: bytes | None = b"[1]") -> Hint:
    return Hint(
        node=node,
        index_uid=index_uid,
        method="POST",
        path=f"/indexes/{index_uid}/documents",
        params={"primaryKey": "id"},
        body=body if body is None else body + b" " * n,
        group="g0",
        shards=(n % 4, 7),
        created_ms=1_000 + n,
    )


def same(stored: Hint, sent: Hint) -> bool:
    return stored.id > 0 and stored == Hint(**{**_fields(sent), "id": stored.id})


def _fields(h: Hint) -> dict[str, object]:
    return {name: getattr(h, name) for name in Hint.__dataclass_fields__}


async def test_hints_list_per_node_oldest_first_and_whole(store: Store) -> None:
    sent = [hint("n1", 0), hint("n2", 1, "films"), hint("n1", 2, body=None), hint("n1", 3)]
    ids = [await store.put_hint(h, 100) for h in sent]
    assert all(isinstance(i, int) for i in ids)
    n1 = await store.list_hints("n1", 10)
    assert [h.id for h in n1] == sorted(h.id for h in n1)
    expected = [sent[0], sent[2], sent[3]]
    assert len(n1) == 3 and all(same(s, h) for s, h in zip(n1, expected, strict=True))
    assert n1[1].body is None
    assert [h.index_uid for h in await store.list_hints("n2", 10)] == ["films"]
    assert await store.list_hints("n1", 2) == n1[:2]
    assert await store.list_hints("n3", 10) == []
    assert await store.hint_backlogs() == {
        "n1": HintBacklog(3, 0, False),
        "n2": HintBacklog(1, 0, False),
    }


async def test_deleting_replayed_hints_keeps_the_rest_in_order(store: Store) -> None:
    for n in range(5):
        await store.put_hint(hint("n1", n), 100)
    first = await store.list_hints("n1", 2)
    assert await store.delete_hints("n1", [h.id for h in first]) == 2
    assert await store.delete_hints("n1", [h.id for h in first]) == 0
    assert await store.delete_hints("n2", []) == 0
    rest = await store.list_hints("n1", 10)
    assert [h.created_ms for h in rest] == [1_002, 1_003, 1_004]
    assert await store.delete_hints("n1", [h.id for h in rest]) == 3
    assert "n1" not in await store.hint_backlogs()
    # Ids keep growing after a node's queue emptied: a later hint never sorts before.
    later = await store.put_hint(hint("n1", 9), 100)
    assert later is not None and later > max(h.id for h in rest)


async def test_past_the_bound_hints_are_dropped_and_the_node_flagged(store: Store) -> None:
    for n in range(3):
        assert await store.put_hint(hint("n1", n), 3) is not None
    await store.put_hint(hint("n2", 0), 3)
    assert await store.put_hint(hint("n1", 3), 3) is None
    assert await store.list_hints("n1", 10) == []
    # A flagged node takes no hint at all: a replay must never apply a partial history.
    assert await store.put_hint(hint("n1", 4), 3) is None
    backlogs = await store.hint_backlogs()
    assert backlogs["n1"] == HintBacklog(pending=0, dropped=5, overflowed=True)
    assert backlogs["n2"] == HintBacklog(1, 0, False)
    # Anti-entropy repaired it: hints are taken again.
    assert await store.clear_hint_overflow("n1") is True
    assert await store.clear_hint_overflow("n1") is False
    assert await store.put_hint(hint("n1", 5), 3) is not None
    assert (await store.hint_backlogs())["n1"] == HintBacklog(1, 0, False)


async def test_concurrent_writers_never_exceed_the_bound(
    make_store: Callable[[], Store],
) -> None:
    pods = [make_store() for _ in range(3)]
    try:
        got = await asyncio.gather(*(p.put_hint(hint("n1", n), 10) for n, p in enumerate(pods * 4)))
        stored = [g for g in got if g is not None]
        assert len(set(stored)) == len(stored)
        backlog = (await pods[0].hint_backlogs())["n1"]
        # 12 puts, bound 10: the 11th overflows (drops all), the 12th is dropped too.
        assert backlog == HintBacklog(pending=0, dropped=12, overflowed=True)
    finally:
        for p in pods:
            await p.close()

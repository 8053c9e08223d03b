"""Tombstones (anti-entropy's record of deletes), run against every backend."""

from collections.abc import Callable

from miroir_proxy.state.store import Store


async def test_tombstones_are_kept_per_shard_with_the_latest_deletion(store: Store) -> None:
    await store.add_tombstones("movies", {0: ["1", "2"], 3: ["9"]}, 1_000, 60_000)
    await store.add_tombstones("movies", {0: ["2", "5"]}, 2_000, 60_000)
    # An older deletion never moves a tombstone back in time.
    await store.add_tombstones("movies", {0: ["5"]}, 1_500, 60_000)
    await store.add_tombstones("books", {0: ["1"]}, 3_000, 60_000)
    await store.add_tombstones("movies", {1: []}, 3_000, 60_000)

    assert await store.tombstones("movies", 0, 0) == {"1": 1_000, "2": 2_000, "5": 2_000}
    assert await store.tombstones("movies", 3, 0) == {"9": 1_000}
    assert await store.tombstones("movies", 1, 0) == {}
    assert await store.tombstones("books", 0, 0) == {"1": 3_000}
    assert await store.tombstones("movies", 0, 1_001) == {"2": 2_000, "5": 2_000}
    assert await store.tombstones("movies", 0, 2_000) == {"2": 2_000, "5": 2_000}


async def test_pruning_forgets_only_older_tombstones_of_one_shard(store: Store) -> None:
    await store.add_tombstones("movies", {0: ["1", "2"], 1: ["3"]}, 1_000, 60_000)
    await store.add_tombstones("movies", {0: ["4"]}, 2_000, 60_000)

    assert await store.prune_tombstones("movies", 0, 2_000) == 2
    assert await store.tombstones("movies", 0, 0) == {"4": 2_000}
    assert await store.tombstones("movies", 1, 0) == {"3": 1_000}
    assert await store.prune_tombstones("movies", 0, 2_000) == 0
    assert await store.prune_tombstones("movies", 7, 5_000) == 0


async def test_tombstones_survive_reopen(make_store: Callable[[], Store]) -> None:
    first = make_store()
    await first.add_tombstones("movies", {2: ["a"]}, 7_000, 60_000)
    await first.close()
    second = make_store()
    try:
        assert await second.tombstones("movies", 2, 0) == {"a": 7_000}
    finally:
        await second.close()

"""What the parity modules share: the dataset, and asking the proxy and the single node the
same thing at once."""

from __future__ import annotations

import string
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import meilisearch
import pytest
from meilisearch.errors import MeilisearchApiError

from .conftest import wait_done

COLORS = ("red", "green", "blue")
# Common words never start with `q`, so a 4-letter `q...` word matches only itself: words
# shorter than 5 letters get no typo tolerance and the prefix rule finds no longer word.
COMMON = ("amber", "birch", "cedar", "delta", "ember", "fjord")
SETTINGS = {
    "filterableAttributes": ["color", "rank", "tags"],
    "sortableAttributes": ["rank"],
}
T = TypeVar("T")
Targets = dict[str, meilisearch.Client]


def unique_word(i: int) -> str:
    letters = string.ascii_lowercase
    return "q" + letters[i // 676 % 26] + letters[i // 26 % 26] + letters[i % 26]


def make_documents(count: int, unique: int = 0) -> list[dict[str, Any]]:
    """`count` documents; the first `unique` titles carry a word no other document has."""
    assert count % 37, "37 must be coprime with count so that ranks are distinct"
    return [
        {
            "id": i,
            "title": " ".join(
                [COMMON[i % 6], COMMON[(i * 7 + 1) % 6], *([unique_word(i)] if i < unique else [])]
            ),
            "color": COLORS[i % 3],
            # Every rank is distinct, so `sort` has no ties to break differently.
            "rank": (i * 37) % count,
            "tags": [f"t{i % 4}", f"t{i % 7}"],
        }
        for i in range(count)
    ]


def both(targets: Targets, ask: Callable[[meilisearch.Client], T]) -> tuple[T, T]:
    """`ask(client)` on the proxy and on the single node, concurrently: (proxy, node)."""
    with ThreadPoolExecutor(2) as pool:
        proxy, node = pool.submit(ask, targets["proxy"]), pool.submit(ask, targets["node"])
        return proxy.result(), node.result()


def error_of(call: Callable[[], object]) -> tuple[int, str | None, str | None]:
    with pytest.raises(MeilisearchApiError) as caught:
        call()
    return caught.value.status_code, caught.value.code, caught.value.type


def load(client: meilisearch.Client, uid: str, documents: list[dict[str, Any]]) -> None:
    created = client.create_index(uid, {"primaryKey": "id"})
    settings = client.index(uid).update_settings(SETTINGS)
    added = client.index(uid).add_documents(documents)
    for task in (created, settings, added):
        done = wait_done(client, task.task_uid)
        assert done.status == "succeeded", done

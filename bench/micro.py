"""In-process micro-benchmarks of the two pure hot paths: merging and routing."""

from __future__ import annotations

import random
from typing import Any

from miroir_proxy.core.hashing import shards_of
from miroir_proxy.core.merging import MergeRequest, merge_search
from miroir_proxy.core.placement import route_documents
from miroir_proxy.core.topology import Node, ReplicaGroup, Topology

from .measure import cpu_ms_per_call, median
from .workloads import documents


def shard_answers(nodes: int, hits: int, seed_value: int = 3) -> list[dict[str, Any]]:
    """`nodes` node answers of `hits` ~1 KB hits each, in rank order, as nodes send them."""
    rng = random.Random(seed_value)
    answers = []
    for node in range(nodes):
        scores = sorted((rng.random() for _ in range(hits)), reverse=True)
        page = documents(hits, seed_value + node, first=node * hits)
        for doc, score in zip(page, scores, strict=True):
            doc["_miroir_shard"] = rng.randrange(16)
            doc["_rankingScore"] = score
        answers.append(
            {"hits": page, "query": "", "processingTimeMs": 1, "estimatedTotalHits": hits * 10}
        )
    return answers


def merge_3x1000_ms(repeat: int = 7, number: int = 20, offset: int = 0) -> float:
    """Merge three answers of 1,000 hits into a page of 20 at `offset` (980 is the page
    the nodes were asked for when each returns offset+limit = 1,000 hits)."""
    request = MergeRequest(offset=offset, limit=20)
    answers = shard_answers(3, 1000)
    merged = merge_search(answers, request)
    assert len(merged["hits"]) == 20
    return median(
        cpu_ms_per_call(lambda: merge_search(answers, request), repeat=repeat, number=number)
    )


def route_10k_ms(repeat: int = 7, number: int = 20) -> float:
    """Shard and route 10,000 primary keys at S=64 over one group of three nodes."""
    group = ReplicaGroup(
        "g0", tuple(Node(f"n{i}", f"http://127.0.0.1:{7700 + i}") for i in range(3))
    )
    topology = Topology(epoch=1, shards=64, replication_factor=1, groups=(group,))
    keys = [f"doc-{i}" for i in range(10_000)]

    def route() -> dict[str, list[int]]:
        return route_documents(shards_of(keys, 64), topology)

    assert sum(len(v) for v in route().values()) == 10_000
    return median(cpu_ms_per_call(route, repeat=repeat, number=number))

"""In-process micro-benchmarks of the hot paths: merging, routing keys, routing a batch."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from miroir_proxy.config import from_mapping
from miroir_proxy.core.merging import MergeRequest, merge_search
from miroir_proxy.core.placement import Layout
from miroir_proxy.dispatch.cluster import topology_from_config
from miroir_proxy.dispatch.payloads import JSON, parse_documents
from miroir_proxy.dispatch.writes import document_ids, route_batch

from .harness import proxy_config
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
    """Route 10,000 small documents at S=64 over one group of three nodes with the code the
    write path runs (`dispatch.writes.route_batch`: ids, shards, tags, one body per node);
    the documents are built once, outside the measurement."""
    nodes = [[f"http://127.0.0.1:{7700 + i}" for i in range(3)]]
    config = from_mapping(proxy_config(nodes, shards=64, rf=1), env={})
    layout = Layout(topology_from_config(config))
    docs = [{"id": f"doc-{i}", "n": i} for i in range(10_000)]

    def route() -> int:
        targets = route_batch(layout, docs, document_ids(docs, "id"), 64)
        return sum(len(orjson.loads(t.body or b"[]")) for t in targets.values())

    assert route() == 10_000

    def route_only() -> None:
        route_batch(layout, docs, document_ids(docs, "id"), 64)

    return median(cpu_ms_per_call(route_only, repeat=repeat, number=number))


def write_route_ratio(batch: int = 1_000, repeat: int = 7, number: int = 10) -> float:
    """CPU of routing one batch of ~1 KB documents in the proxy's own code (parse, ids,
    shards, one serialized body per distinct shard set; RG=2, RF=2 over 4 nodes) over CPU
    of parsing it and serializing it once with orjson: the routing logic alone, without
    the HTTP exchanges and task bookkeeping `write_cost_ratio` also charges."""
    nodes = [[f"http://127.0.0.1:{7700 + 2 * g + i}" for i in range(2)] for g in range(2)]
    config = from_mapping(proxy_config(nodes, shards=16, rf=2), env={})
    layout = Layout(topology_from_config(config))
    raw = orjson.dumps(documents(batch))

    def route() -> None:
        docs = parse_documents(raw, JSON)
        route_batch(layout, docs, document_ids(docs, "id"), 16)

    def bare() -> None:
        orjson.dumps(orjson.loads(raw))

    def best(action: Any) -> float:
        figures = []
        for _ in range(repeat):
            started = time.process_time()
            for _ in range(number):
                action()
            figures.append(time.process_time() - started)
        return min(figures)

    return best(route) / best(bare)

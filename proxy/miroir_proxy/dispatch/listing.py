"""Document listing (`GET /documents`, `POST /documents/fetch`) as one paginated answer.

Every shard is read from one replica, restricted to that shard, so each logical document
is listed exactly once. Replicas list one shard's documents alike (by insertion) only if
they received them alike: a replica that got some late (a hint replay, a repair, a copy)
orders them otherwise, so every page of a listing reads the same replicas while their
health holds (a pinned covering, not the searches' rotation). Without `sort` the order is
shard-major, shard 0's documents in a node's order, then shard 1's, and so on; with
`sort` it is a k-way merge of the shards' sorted lists, comparing sort values as a node
does, ties going by shard, then position.
A first round asks, per shard, `limit: 0` for its total (which also lets the nodes
validate the request); a second round fetches only what the page needs: the slices that
intersect `[offset, offset + limit)`, or with `sort` each shard's first `offset + limit`.
If a node dies between the rounds, the listing starts over without it, so totals and
slices always come from the same nodes.

GET requests are turned into the POST form before planning: a query string the proxy
cannot convert exactly raises `NotUnderstood` and a node judges it as it was sent.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

import orjson

from miroir_proxy.core.covering import NodeAssignment
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.core.pk import RESERVED_PREFIX
from miroir_proxy.core.planner import and_filters, pinned_shards, shard_restriction
from miroir_proxy.core.ranking import sort_value_key

from .broadcast import NodeRefused
from .cluster import Cluster
from .reads import NotUnderstood, ReadResult
from .scatter import call_all, gather

_GET_LISTS = ("fields", "ids", "sort")
_GET_KNOWN = frozenset(("offset", "limit", "filter", "retrieveVectors", *_GET_LISTS))
Slice = tuple[int, int]


def _count(value: Any, default: int) -> int:
    if value is None:
        return default
    if type(value) is not int or value < 0:
        raise NotUnderstood
    return value


def body_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The `/documents/fetch` body equivalent to a `GET /documents` query string."""
    if not _GET_KNOWN.issuperset(params):
        raise NotUnderstood
    body: dict[str, Any] = {}
    for key, raw in params.items():
        if key in ("offset", "limit"):
            if not raw.isascii() or not raw.isdigit():
                raise NotUnderstood
            body[key] = int(raw)
        elif key in _GET_LISTS:
            body[key] = [item.strip() for item in raw.split(",")]
        elif key == "retrieveVectors":
            if raw not in ("true", "false"):
                raise NotUnderstood
            body[key] = raw == "true"
        else:
            try:
                body[key] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body[key] = raw
    return body


class _Bodies:
    """Per-node fetch bodies: the client's body, the node's shards, a slice of its list."""

    def __init__(
        self, body: Mapping[str, Any], client_filter: Any, rules: Sequence[tuple[str, bool]]
    ) -> None:
        self._body = dict(body)
        self._filter = client_filter
        fields = body.get("fields")
        # The merge compares sort values, so they are fetched even when not asked for.
        self.added_fields: frozenset[str] = frozenset()
        if isinstance(fields, list) and "*" not in fields:
            self.added_fields = frozenset(path for path, _ in rules if path not in fields)
            self._body["fields"] = [*fields, *sorted(self.added_fields)]
        self.slices: dict[tuple[str, tuple[int, ...]], Slice] = {}

    def _render(self, assignment: NodeAssignment, offset: int, limit: int) -> bytes:
        out = {**self._body, "offset": offset, "limit": limit}
        if assignment.restrict:
            out["filter"] = and_filters(self._filter, [shard_restriction(assignment.shards)])
        return orjson.dumps(out)

    def counting(self, assignment: NodeAssignment) -> bytes:
        return self._render(assignment, 0, 0)

    def slice(self, assignment: NodeAssignment) -> bytes:
        offset, limit = self.slices[(assignment.node_id, assignment.shards)]
        return self._render(assignment, offset, limit)


def _slices(
    assignments: Sequence[NodeAssignment],
    totals: Sequence[int],
    offset: int,
    limit: int,
    *,
    each: bool = False,
) -> dict[tuple[str, tuple[int, ...]], Slice]:
    """The part of each assignment's list inside `[offset, offset + limit)` of their
    concatenation (or, with `each`, of every assignment's own list)."""
    wanted: dict[tuple[str, tuple[int, ...]], Slice] = {}
    start, end = offset, offset + limit
    position = 0
    for assignment, total in zip(assignments, totals, strict=True):
        if each:
            position = 0
        first, last = max(start, position), min(end, position + total)
        if first < last:
            wanted[(assignment.node_id, assignment.shards)] = (first - position, last - first)
        position += total
    return wanted


def _pinned(body: Mapping[str, Any], primary_key: str | None, shards: int) -> set[int] | None:
    ids = body.get("ids")
    by_ids: set[int] | None = None
    if isinstance(ids, list) and all(
        isinstance(i, str | int) and not isinstance(i, bool) for i in ids
    ):
        by_ids = {shard_of(str(i), shards) for i in ids} or {0}
    by_filter = pinned_shards(body.get("filter"), primary_key, shards)
    if by_filter is None:
        return by_ids
    return set(by_filter) if by_ids is None else (by_ids & by_filter) or {0}


def _clean(document: dict[str, Any], drop: frozenset[str]) -> dict[str, Any]:
    return {
        k: v for k, v in document.items() if k not in drop and not k.startswith(RESERVED_PREFIX)
    }


def _sort_rules(sort: Any) -> list[tuple[str, bool]]:
    """`[(attribute, ascending)]` of a documents `sort`; geo sorts cannot be merged here."""
    if sort is None:
        return []
    if not isinstance(sort, list) or not all(isinstance(rule, str) for rule in sort):
        raise NotUnderstood
    rules = []
    for rule in sort:
        attribute, _, direction = rule.rpartition(":")
        if direction not in ("asc", "desc") or not attribute or attribute.startswith("_geo"):
            raise NotUnderstood
        rules.append((attribute, direction == "asc"))
    return rules


def _value(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _sort_key(rules: Sequence[tuple[str, bool]]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    def key(document: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(sort_value_key(_value(document, path), asc) for path, asc in rules)

    return key


def _sorted_entries(
    documents: list[dict[str, Any]], shard: int, key: Callable[[dict[str, Any]], tuple[Any, ...]]
) -> Iterable[tuple[tuple[Any, ...], int, int, dict[str, Any]]]:
    # (sort values, shard, position) is unique, so the merge never compares documents.
    for position, document in enumerate(documents):
        yield key(document), shard, position, document


async def list_documents(
    cluster: Cluster, uid: str, shards: int, primary_key: str | None, body: Any
) -> ReadResult:
    """`{results, offset, limit, total}` over every shard of index `uid`."""
    if not isinstance(body, dict):
        raise NotUnderstood
    offset, limit = _count(body.get("offset"), 0), _count(body.get("limit"), 20)
    client_filter = body.get("filter")
    if client_filter is not None and not isinstance(client_filter, str | list):
        raise NotUnderstood
    rules = _sort_rules(body.get("sort"))
    bodies = _Bodies(body, client_filter, rules)
    path = f"/indexes/{uid}/documents/fetch"
    only = _pinned(body, primary_key, shards)
    excluded: set[str] = set()
    fanout = 0
    for _ in range(len(cluster.all_nodes()) + 1):
        counted = await gather(
            cluster,
            shards=shards,
            method="POST",
            path=path,
            body_for=bodies.counting,
            only=only,
            excluded=excluded,
            per_shard=True,
            pinned=True,  # every page of a listing from the same replicas
        )
        fanout += counted.fanout
        by_shard = sorted(
            zip(counted.assignments, counted.answers, strict=True), key=lambda p: p[0].shards
        )
        assignments = [assignment for assignment, _ in by_shard]
        totals = [int(answer.get("total") or 0) for _, answer in by_shard]
        if rules:
            # Each shard's first `offset + limit` in its own sorted order hold the page.
            bodies.slices = _slices(assignments, totals, 0, offset + limit, each=True)
        else:
            bodies.slices = _slices(assignments, totals, offset, limit)
        wanted = [a for a in assignments if (a.node_id, a.shards) in bodies.slices]
        fetched = await call_all(
            cluster,
            wanted,
            "POST",
            path,
            bodies.slice,
            None,
            cluster.config.timeouts.node_read_ms,
        )
        fanout += len(wanted)
        if fetched.rejection is not None:
            raise NodeRefused(fetched.rejection)
        if fetched.failed:
            excluded.update(a.node_id for a in fetched.failed)
            continue
        if rules:
            key = _sort_key(rules)
            streams = [
                _sorted_entries(answer.get("results") or [], assignment.shards[0], key)
                for assignment, answer in fetched.answers
            ]
            ordered = islice(heapq.merge(*streams), offset, offset + limit)
            chosen: Iterable[dict[str, Any]] = (entry[3] for entry in ordered)
        else:
            chosen = (d for _, answer in fetched.answers for d in answer.get("results") or [])
        results = [_clean(document, bodies.added_fields) for document in chosen]
        page = {"results": results, "offset": offset, "limit": limit, "total": sum(totals)}
        return ReadResult(page, counted.degraded, fanout)
    raise MiroirError(
        "miroir_shard_unavailable", "The document listing lost a node on every attempt."
    )

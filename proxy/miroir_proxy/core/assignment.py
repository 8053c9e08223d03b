"""Assignment tables: which nodes of a group hold each shard, balanced and moved minimally.

A table lists, for every shard, the ids of the nodes holding it. `plan` computes the next
table from the previous one when a group's nodes change (a node being drained or removed
is simply absent from `node_ids`). It is a min-cost flow, solved exactly:

    source -> shard (capacity k) -> node (capacity 1 per pair) -> sink,

where k = min(RF, N) and node loads are held between q = floor(S*k / N) and q + 1, with
exactly S*k mod N nodes at q + 1. A pair costs -1 when the node held that shard in the
previous table and 0 otherwise, so the cheapest full flow keeps the most replicas, i.e.
moves the fewest. Successive shortest paths, started from "keep every replica a node may
keep", fill the rest; almost every step is a direct fill (a shard missing a replica, a
node with room that does not hold it), and only when those dead-end does a search find a
chain (the node with room already holds the shard: another node takes it and hands one of
its own shards on). Because every augmentation is a shortest path, the result is optimal.

Rendezvous scores `xxh3_64(f"{s}:{node_id}")` only decide between equally cheap choices:
an over-full node gives away the shards it scores lowest, a shard missing a replica goes to
the node with room that scores it highest. A new group's first table is the pure
rendezvous table rebalanced with as few changes as possible; an existing cluster's first
table is `rendezvous_table` itself (today's placement), so upgrading moves nothing.
"""

from __future__ import annotations

import collections
import collections.abc
import itertools
from collections.abc import Sequence

from xxhash import xxh3_64_intdigest

Table = tuple[tuple[str, ...], ...]

_UNREACHED = 1 << 30
_FROM_SOURCE = -1
_FROM_HUB = -2


def _nodes(node_ids: Sequence[str], rf: int, shards: int) -> list[str]:
    if rf < 1 or shards < 1:
        raise ValueError("rf and shards must be positive")
    ids = sorted(node_ids)
    if not ids:
        raise ValueError("a table needs at least one node")
    if len(set(ids)) != len(ids):
        raise ValueError("node ids must be distinct")
    return ids


def rendezvous_table(node_ids: Sequence[str], rf: int, shards: int) -> Table:
    """Today's placement: shard s on the top-min(RF, N) nodes by rendezvous score, best first
    (ties to the smaller id), exactly as `placement.place` computes it."""
    ids = _nodes(node_ids, rf, shards)
    keep = min(rf, len(ids))
    encoded = [node.encode() for node in ids]
    table = []
    for shard in range(shards):
        prefix = f"{shard}:".encode()
        scores = [xxh3_64_intdigest(prefix + node) for node in encoded]
        # A stable sort: equal scores keep id order, so the smaller id wins a tie.
        best = sorted(range(len(ids)), key=scores.__getitem__, reverse=True)[:keep]
        table.append(tuple(ids[i] for i in best))
    return tuple(table)


def loads(table: Table) -> dict[str, int]:
    """Replicas per node (nodes holding nothing are absent)."""
    return dict(collections.Counter(node for replicas in table for node in replicas))


def moves(previous: Table, new: Table) -> int:
    """Replicas placed on a node that did not hold that shard before."""
    if len(previous) != len(new):
        raise ValueError("tables of different shard counts")
    return sum(len(set(after) - set(before)) for before, after in zip(previous, new, strict=True))


def minimum_moves(previous: Table, node_ids: Sequence[str], rf: int, shards: int) -> int:
    """A lower bound on the moves any valid balanced table over `node_ids` needs.

    With k = min(RF, N), T = S*k, q = T // N and e = T % N, every valid balanced table has
    k replicas per shard and e nodes holding q + 1 replicas, the others q. Let o_s be the
    previous replicas of shard s still on `node_ids` and h_v the shards node v held.

    - Missing replicas: a shard with o_s < k ("short") receives at least k - o_s new
      replicas: M = sum_s max(0, k - o_s) moves that any table makes.
    - Receptions: node v must receive at least r_v = max(0, q - h_v) shards it did not
      hold, and e' = max(0, e - #{v: h_v > q}) nodes with h_v <= q must receive one more
      (only e nodes may keep q + 1): D = sum_v r_v + e' receptions (this alone is the
      bound T - "the most replicas the quotas let stay").
    - A reception is free, i.e. already one of the M, only if it fills one of the k - o_s
      missing slots of a short shard the node did not hold; every other reception takes
      the place of a replica that could have stayed and is a move on top of M. At most mu
      receptions can be free, mu being the maximum flow: node v takes at most r_v (plus
      one of the e' extra) slots, shard s gives at most k - o_s, only where v did not hold
      s. So moves >= M + D - mu, which is at least max(M, D).

    (Removing a node whose shards mostly shared one surviving node y: y must grow, the
    orphaned shards cannot go to y, so y takes a shard from another node, which moves
    once more; the flow counts that.) `plan` always makes the fewest moves any table
    makes. That minimum met this bound on every addition and removal of nodes from a
    balanced table tried (the property tests, the bench simulator and some 10^5 random
    changes while writing it), but no proof says it always does: the bound only counts,
    it does not see every way replicas of different shards can block each other.
    """
    ids = _nodes(node_ids, rf, shards)
    _check_previous(previous, shards)
    present = set(ids)
    k = min(rf, len(ids))
    quota, extra = divmod(shards * k, len(ids))
    valid = [present.intersection(replicas) for replicas in previous]
    held = collections.Counter(node for replicas in valid for node in replicas)
    slots = {s: k - len(replicas) for s, replicas in enumerate(valid) if len(replicas) < k}
    needs = {node: quota - held[node] for node in ids if held[node] < quota}
    spare = max(0, extra - sum(held[node] > quota for node in ids))
    free = _free_receptions(valid, ids, quota, held, needs, spare, slots)
    return sum(slots.values()) + sum(needs.values()) + spare - free


def _free_receptions(
    valid: list[set[str]],
    ids: list[str],
    quota: int,
    held: collections.Counter[str],
    needs: dict[str, int],
    spare: int,
    slots: dict[int, int],
) -> int:
    """mu of `minimum_moves`: max flow source -> node (r_v, plus 1 through a hub of e'
    for nodes with h_v <= q) -> short shard it did not hold (1) -> sink (k - o_s).
    A greedy pass saturates almost everything; Dinic's algorithm finishes the rest."""
    graph: dict[object, dict[object, int]] = collections.defaultdict(dict)
    source, hub, sink = ("source",), ("hub",), ("sink",)
    graph[source][hub] = spare
    receivers = [n for n in ids if n in needs or (spare and held[n] <= quota)]
    for node in receivers:
        graph[source][node] = needs.get(node, 0)
        graph[hub][node] = 1 if spare and held[node] <= quota else 0
        graph[node] = {shard: 1 for shard in slots if node not in valid[shard]}
    for shard, count in slots.items():
        graph[shard][sink] = count
    for tail in list(graph):
        for head in list(graph[tail]):
            graph[head].setdefault(tail, 0)

    def push(path: Sequence[object]) -> None:
        for a, b in itertools.pairwise(path):
            graph[a][b] -= 1
            graph[b][a] += 1

    total = 0
    open_shards = list(slots)
    for node in receivers:
        for shard in open_shards:
            if graph[shard][sink] and graph[node].get(shard):
                if graph[source][node]:
                    push((source, node, shard, sink))
                elif graph[source][hub] and graph[hub][node]:
                    push((source, hub, node, shard, sink))
                else:
                    break
                total += 1
        open_shards = [shard for shard in open_shards if graph[shard][sink]]
    return total + _max_flow(graph, source, sink)


def _max_flow(graph: dict[object, dict[object, int]], source: object, sink: object) -> int:
    """Dinic's algorithm over residual capacities, reverse edges included (mutates)."""
    total = 0
    while True:
        level = {source: 0}
        frontier = [source]
        while frontier:
            following = []
            for tail in frontier:
                for head, capacity in graph[tail].items():
                    if capacity > 0 and head not in level:
                        level[head] = level[tail] + 1
                        following.append(head)
            frontier = following
        if sink not in level:
            return total
        heads = {tail: list(graph[tail]) for tail in level}
        cursor = dict.fromkeys(level, 0)
        path = [source]
        while path:
            tail = path[-1]
            if tail == sink:
                bottleneck = min(graph[a][b] for a, b in itertools.pairwise(path))
                for a, b in itertools.pairwise(path):
                    graph[a][b] -= bottleneck
                    graph[b][a] += bottleneck
                total += bottleneck
                path = [source]
                continue
            options = heads[tail]
            while cursor[tail] < len(options):
                head = options[cursor[tail]]
                if graph[tail][head] > 0 and level.get(head) == level[tail] + 1:
                    path.append(head)
                    break
                cursor[tail] += 1
            else:
                level.pop(tail)  # dead end for this phase
                path.pop()
                if path:
                    cursor[path[-1]] += 1


def _check_previous(previous: Table, shards: int) -> None:
    if len(previous) != shards:
        raise ValueError(f"the previous table has {len(previous)} shards, not {shards}")
    for replicas in previous:
        if len(set(replicas)) != len(replicas):
            raise ValueError("a shard lists the same node twice")


def plan(previous: Table | None, node_ids: Sequence[str], rf: int, shards: int) -> Table:
    """The next table over `node_ids`: every shard on min(RF, N) distinct nodes, every node
    within one replica of the mean, with the fewest replicas placed on a node that did not
    hold them in `previous` (None: a new group, preferring the rendezvous table). Replicas
    that stay keep their order inside a shard; new ones are appended."""
    ids = _nodes(node_ids, rf, shards)
    if previous is None:
        previous = rendezvous_table(ids, rf, shards)
    _check_previous(previous, shards)
    planner = _Planner(previous, ids, min(rf, len(ids)))
    planner.shed()
    planner.fill()
    return planner.table(previous)


class _Planner:
    """Mutable working state of one `plan` call; nodes are indices into sorted ids."""

    def __init__(self, previous: Table, ids: list[str], k: int) -> None:
        index = {node: i for i, node in enumerate(ids)}
        self.ids = ids
        self.k = k
        self.quota, self.extra = divmod(len(previous) * k, len(ids))
        self.encoded = [node.encode() for node in ids]
        self.scores: dict[tuple[int, int], int] = {}
        self.rows: dict[int, list[int]] = {}  # every node's score, for shards being filled
        self.old: list[frozenset[int]] = []
        self.cur: list[list[int]] = []
        self.held: list[set[int]] = [set() for _ in ids]
        self.truncated = False
        for shard, replicas in enumerate(previous):
            valid = [index[node] for node in replicas if node in index]
            self.old.append(frozenset(valid))
            self.truncated |= len(valid) > k
            self.cur.append(valid[:k])
            for v in valid[:k]:
                self.held[v].add(shard)
        self.load = [len(h) for h in self.held]
        self.at_top = sum(load == self.quota + 1 for load in self.load)  # nodes at q + 1

    def score(self, shard: int, v: int) -> int:
        key = (shard, v)
        found = self.scores.get(key)
        if found is None:
            found = self.scores[key] = xxh3_64_intdigest(f"{shard}:".encode() + self.encoded[v])
        return found

    def row(self, shard: int) -> list[int]:
        found = self.rows.get(shard)
        if found is None:
            prefix = f"{shard}:".encode()
            found = self.rows[shard] = [xxh3_64_intdigest(prefix + node) for node in self.encoded]
        return found

    def shed(self) -> None:
        """Bring every node down to its quota, keeping as much as any table could keep.

        The e quotas of q + 1 go to the fullest nodes (ties: smaller id); a node gives away
        the shards it scores lowest, preferring shards that miss the fewest replicas (a
        shard that lost two replicas cannot hand both to the same node)."""
        q = self.quota
        over = sorted(
            (v for v, load in enumerate(self.load) if load > q), key=lambda v: -self.load[v]
        )
        bigger = set(over[: self.extra])
        for v in sorted(over):
            excess = self.load[v] - (q + 1 if v in bigger else q)
            if excess <= 0:
                continue
            ranked = sorted(
                self.held[v],
                key=lambda s: (-len(self.cur[s]), self.score(s, v), s),
            )
            for shard in ranked[:excess]:
                self._drop(shard, v)
        if self.truncated:
            # A dropped previous replica may fit again (RF lowered): only then can a chain of
            # previous replicas keep one more; this is the max-flow step over kept pairs.
            while (path := self._search(-1, kept_only=True)) is not None:
                self._apply(path[1])

    def fill(self) -> None:
        floor = 0  # shortest augmenting paths never get cheaper (successive shortest paths)
        for shard in range(len(self.cur)):
            while len(self.cur[shard]) < self.k:
                v = self._best_room(shard)
                if v is not None:
                    self._add(shard, v)
                    continue
                path = self._search(floor, kept_only=False)
                if path is None:
                    raise RuntimeError("no balanced table exists")  # k <= N rules this out
                floor = path[0]
                self._apply(path[1])

    def table(self, previous: Table) -> Table:
        rows = []
        for shard, replicas in enumerate(previous):
            now = [self.ids[v] for v in self.cur[shard]]
            kept = [node for node in replicas if node in now]
            rows.append((*kept, *(node for node in now if node not in kept)))
        return tuple(rows)

    def _add(self, shard: int, v: int) -> None:
        self.cur[shard].append(v)
        self.held[v].add(shard)
        self.load[v] += 1
        self.at_top += (self.load[v] == self.quota + 1) - (self.load[v] == self.quota + 2)

    def _drop(self, shard: int, v: int) -> None:
        self.cur[shard].remove(v)
        self.held[v].discard(shard)
        self.load[v] -= 1
        self.at_top += (self.load[v] == self.quota + 1) - (self.load[v] == self.quota)

    def _has_room(self, v: int, extras_free: bool) -> bool:
        load = self.load[v]
        return load < self.quota or (load == self.quota and extras_free)

    def _best_room(self, shard: int) -> int | None:
        extras_free = self.at_top < self.extra
        holders = self.cur[shard]
        room = [
            v for v in range(len(self.ids)) if v not in holders and self._has_room(v, extras_free)
        ]
        if not room:
            return None
        return max(room, key=self.row(shard).__getitem__)  # the first, smaller id, on a tie

    def _apply(self, steps: list[tuple[bool, int, int]]) -> None:
        for add, shard, v in steps:
            if not add:
                self._drop(shard, v)
        for add, shard, v in steps:
            if add:
                self._add(shard, v)

    def _search(
        self, floor: int, kept_only: bool
    ) -> tuple[int, list[tuple[bool, int, int]]] | None:
        """Cheapest augmenting path from a shard missing a replica to a node with room.

        Label-correcting shortest paths over the residual graph (no negative cycles: the
        current flow is min-cost for its size). Edges: shard t -> node w not holding it
        (adds (t, w); cost -1 if w held t before, else 0), node v -> shard t it holds
        (drops (t, v); cost +1 if v held t before, else 0), and a hub through which a node
        at q takes a q + 1 quota from a node that gives one replica up. A path costing
        `floor` is a shortest one (paths never get cheaper), so the search stops there.
        Returns (cost, steps) with steps (add?, shard, node), or None.
        """
        q, n = self.quota, len(self.ids)
        extras_free = self.at_top < self.extra
        shard_label: dict[int, int] = {}
        shard_parent: dict[int, int] = {}
        node_label = [_UNREACHED] * n
        node_parent = [0] * n
        by_label: dict[int, set[int]] = {_UNREACHED: set(range(n))}
        hub_label, hub_parent = _UNREACHED, -1
        best: tuple[int, int] = (_UNREACHED, -1)  # (cost, end node; -1: via the hub)
        queue: collections.deque[tuple[bool, int]] = collections.deque()
        queued: set[tuple[bool, int]] = set()

        def push(item: tuple[bool, int]) -> None:
            if item not in queued:
                queued.add(item)
                queue.append(item)

        def reach_node(v: int, label: int, parent: int) -> None:
            nonlocal best, hub_label, hub_parent
            if label >= node_label[v]:
                return
            by_label[node_label[v]].discard(v)
            by_label.setdefault(label, set()).add(v)
            node_label[v], node_parent[v] = label, parent
            push((False, v))
            if self.load[v] < q:
                best = min(best, (label, v))
            elif self.load[v] == q and label < hub_label:
                hub_label, hub_parent = label, v
                if extras_free:
                    best = min(best, (label, -1))
                else:
                    push((False, -1))

        for shard, replicas in enumerate(self.cur):
            if len(replicas) < self.k:
                shard_label[shard], shard_parent[shard] = 0, _FROM_SOURCE
                push((True, shard))
        while queue and best[0] > floor:
            item = queue.popleft()
            queued.discard(item)
            is_shard, x = item
            if is_shard:
                label, holders, before = shard_label[x], self.cur[x], self.old[x]
                for v in before:
                    if v not in holders:
                        reach_node(v, label - 1, x)
                if not kept_only:
                    for level in [level for level in by_label if level > label]:
                        for v in list(by_label[level]):
                            if v not in holders and v not in before:
                                reach_node(v, label, x)
            elif x == -1:
                for v, load in enumerate(self.load):
                    if load == q + 1:
                        reach_node(v, hub_label, _FROM_HUB)
            else:
                label = node_label[x]
                for shard in self.held[x]:
                    cost = label + (x in self.old[shard])
                    if cost < shard_label.get(shard, _UNREACHED):
                        shard_label[shard], shard_parent[shard] = cost, x
                        push((True, shard))
        if best[1] == -1 and best[0] == _UNREACHED:
            return None
        steps: list[tuple[bool, int, int]] = []
        v = hub_parent if best[1] == -1 else best[1]
        for _ in range(2 * (len(self.cur) + n) + 2):
            parent = node_parent[v]
            if parent == _FROM_HUB:
                v = hub_parent
                continue
            steps.append((True, parent, v))
            giver = shard_parent[parent]
            if giver == _FROM_SOURCE:
                return best[0], steps
            steps.append((False, parent, giver))
            v = giver
        raise AssertionError("augmenting path does not end")  # pragma: no cover

"""Prometheus metrics of one proxy process, served on the metrics port and, for admins,
at `/_miroir/metrics`. One registry per app so in-process test apps stay independent."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from miroir_proxy.histogram import HistogramChild, LabeledHistogram
from miroir_proxy.state.store import HintBacklog

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._request_children: dict[tuple[str, str, int], tuple[Any, HistogramChild]] = {}
        self._fanout_children: dict[str, HistogramChild] = {}
        self.requests = Counter(
            "miroir_requests", "Client requests", ["method", "route", "status"], registry=r
        )
        self.request_duration = LabeledHistogram(
            "miroir_request_duration_seconds",
            "Client request duration",
            ["method", "route"],
            LATENCY_BUCKETS,
            r,
        )
        # A plain count read when scraped: two locked updates per request cost more.
        self.requests_in_flight = 0
        self.in_flight = Gauge("miroir_requests_in_flight", "Requests being served", registry=r)
        self.in_flight.set_function(lambda: self.requests_in_flight)
        self.node_healthy = Gauge(
            "miroir_node_healthy", "1 when a node is healthy", ["node"], registry=r
        )
        self.fanout = LabeledHistogram(
            "miroir_fanout_nodes",
            "Nodes one client request was sent to",
            ["kind"],
            (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            r,
        )
        self.partial_responses = Counter(
            "miroir_partial_responses", "Answers missing some shards", ["kind"], registry=r
        )
        self.degraded_shards = Gauge(
            "miroir_degraded_shards", "Shards with no live replica in any active group", registry=r
        )
        self.queue_depth = Gauge(
            "miroir_background_queue_depth",
            "Chunks of background jobs not done yet, over all pods (the same on every pod)",
            registry=r,
        )
        self.jobs_in_progress = Gauge(
            "miroir_jobs_in_progress", "Job chunks this pod is processing", registry=r
        )

    def count_group_reads(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Export `counts` (reads served per replica group) as `miroir_group_reads_total`."""
        self.registry.register(_GroupReads(counts))

    def count_anti_entropy(self, totals: Callable[[], Mapping[str, float]]) -> None:
        """Export anti-entropy's totals (`shards`, `mismatches`, `repaired`, `last_pass_s`)."""
        self.registry.register(_AntiEntropy(totals))

    def export_hints(
        self, backlogs: Callable[[], Mapping[str, HintBacklog]], replayed: Callable[[], int]
    ) -> None:
        """Hinted handoff: the cluster's backlogs (as of this pod's last replay round) and
        the hints this pod replayed."""
        self.registry.register(_Hints(backlogs, replayed))

    def count_hedges(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        """Export `counts` ((slow node, outcome) -> hedged calls) as `miroir_hedged_reads_total`."""
        self.registry.register(_Hedges(counts))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # `labels()` locks and builds a key each call; routes x methods x statuses are few.
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(method, route, str(status)),
                self.request_duration.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_fanout(self, kind: str, nodes: int) -> None:
        child = self._fanout_children.get(kind)
        if child is None:
            child = self._fanout_children[kind] = self.fanout.labels(kind)
        child.observe(nodes)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _GroupReads(Collector):
    """Reads (covering sets) each replica group served, read from the cluster when scraped."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "miroir_group_reads", "Searches and reads served per replica group", labels=["group"]
        )
        for group_id, count in sorted(self._counts().items()):
            family.add_metric([group_id], count)
        yield family


class _AntiEntropy(Collector):
    """This pod's anti-entropy passes, read when scraped."""

    def __init__(self, totals: Callable[[], Mapping[str, float]]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        totals = self._totals()
        for name, key, text in (
            ("shards_scanned", "shards", "Shards whose replicas a pass compared"),
            ("mismatches", "mismatches", "Documents a pass found differing between replicas"),
            ("documents_repaired", "repaired", "Replica copies a pass wrote or deleted"),
        ):
            yield CounterMetricFamily(f"miroir_antientropy_{name}", text, value=totals[key])
        yield GaugeMetricFamily(
            "miroir_antientropy_last_pass_timestamp_seconds",
            "When this pod's last anti-entropy pass finished (0: none yet)",
            value=totals["last_pass_s"],
        )


class _Hints(Collector):
    def __init__(
        self, backlogs: Callable[[], Mapping[str, HintBacklog]], replayed: Callable[[], int]
    ) -> None:
        self._backlogs = backlogs
        self._replayed = replayed

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        pending = GaugeMetricFamily(
            "miroir_hints_pending", "Hints stored for a node, not replayed yet", labels=["node"]
        )
        dropped = GaugeMetricFamily(
            "miroir_hints_dropped", "Hints dropped past the bound since the node's last repair",
            labels=["node"],
        )  # fmt: skip
        overflowed = GaugeMetricFamily(
            "miroir_hints_overflowed",
            "1 when a node overflowed its hint bound and needs anti-entropy",
            labels=["node"],
        )
        for node, backlog in sorted(self._backlogs().items()):
            pending.add_metric([node], backlog.pending)
            dropped.add_metric([node], backlog.dropped)
            overflowed.add_metric([node], int(backlog.overflowed))
        replayed = CounterMetricFamily(
            "miroir_hints_replayed", "Hints this pod replayed to their returned node"
        )
        replayed.add_metric([], self._replayed())
        yield from (pending, dropped, overflowed, replayed)


class _Hedges(Collector):
    """Node calls hedged because they were slow, by the node and by who answered first."""

    def __init__(self, counts: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "miroir_hedged_reads",
            "Slow node calls asked again of other replicas: outcome hedge_won (the slow call "
            "was cancelled), primary_won (the hedge was cancelled) or failed",
            labels=["node", "outcome"],
        )
        for (node_id, outcome), count in sorted(self._counts().items()):
            family.add_metric([node_id, outcome], count)
        yield family

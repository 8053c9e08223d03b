"""`make chaos` (`python -m bench.chaos`): Miroir under kills, pauses, restarts and outages.

Everything runs on loopback as real processes (devnodes or a real Meilisearch, `miroir-proxy`
pods, `redis-server`), bounded in time and in count. Four scenarios, one table:

- **nodes** (6 nodes, RG=2, RF=2, one pod): a writer adds new documents at a steady rate while
  one node at a time is killed with -9, paused (SIGSTOP/SIGCONT) or restarted every few
  seconds. Then every Miroir task and every hint (`hints_replayed`) is waited for, the
  replicas of every shard are compared (per-shard fingerprints paged with `documents/fetch`
  and `_miroir_shard = N` on the nodes themselves), one anti-entropy pass runs
  (`anti_entropy_pass`), and they are compared again.
- **pods** (the same nodes, three pods on Redis): the writer spreads over the pods while
  one pod at a time is killed with -9 and started again: nothing acknowledged is lost,
  every task stays queryable from every pod, task uids stay unique.
- **redis** (four nodes, three pods on Redis): Redis is stopped for a while: searches go on, writes
  answer 503 in Meilisearch's error shape, and everything recovers without a restart.
- **slow** (6 nodes, one pod): one node answers every request 500 ms late (fault injection)
  while its health probes still pass; search latency with hedging off and on.

Bookkeeping rules (what makes "lost" honest): a write is *acknowledged* when its Miroir task
ends `succeeded`; a write answered 503, refused, timed out or cut off is not, whatever the
nodes did with it. Each write adds documents with fresh ids, so an acknowledged document is
*lost* when no replica of its shard holds it, *duplicated* when a node holds it outside the
shards it replicates (or filed under another shard), and *wrong* when a replica holds
other content than was written.

The short version in `make test` (tests/proxy/test_chaos_short.py) runs `node_chaos` and
`redis_outage` for a few seconds each.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import requests

from miroir_proxy.cli.devcluster import OWN_REDIS, ClusterSpec, DevCluster
from miroir_proxy.cli.processes import NodeProcess, ProxyProcess, poll_until
from miroir_proxy.core.hashing import shard_of

MASTER_KEY = "chaos-master-key-0123456789"
NODE_KEY = "chaos-node-master-key-0123"
UID = "chaos"
SHARDS = 16
DEGRADED = "X-Miroir-Degraded"
ERROR_FIELDS = {"message", "code", "type", "link"}
RESULTS = Path(__file__).resolve().parent / "results" / "chaos-latest.json"
PAGE = 1_000
_CLIENT_TIMEOUT_S = 30.0
_SETTLE_S = 120.0
_WARM_UP = 10

# Failures are noticed within about a second; a node task on a dead node stops blocking
# its Miroir task after 5 s (so every task ends while nodes come and go).
FAST_SETTINGS: dict[str, Any] = {
    "health": {"interval_ms": 200, "timeout_ms": 1_000, "unhealthy_after": 2},
    "timeouts": {
        "node_connect_ms": 500,
        "node_read_ms": 5_000,
        "node_write_ms": 5_000,
        "task_node_deadline_ms": 5_000,
    },
    "coordination": {
        "topology_poll_ms": 200,
        "peer_heartbeat_ms": 200,
        "peer_ttl_ms": 1_000,
        "lease_ttl_ms": 1_000,
        "lease_renew_ms": 300,
        "job_claim_ttl_ms": 1_000,
    },
}


# --------------------------------------------------------------------------- HTTP helpers


def http(method: str, url: str, key: str = MASTER_KEY, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    timeout = kwargs.pop("timeout", _CLIENT_TIMEOUT_S)
    return requests.request(method, url, headers=headers, timeout=timeout, **kwargs)


def ok(response: requests.Response, *statuses: int) -> Any:
    if response.status_code not in (statuses or (200,)):
        raise RuntimeError(
            f"{response.request.method} {response.url}: {response.status_code} "
            f"{response.text[:500]}"
        )
    return response.json()


def first_answer(urls: Sequence[str], call: Callable[[str], requests.Response]) -> Any:
    """The JSON of the first pod in `urls` that answers 200 (others may be down)."""
    problems = []
    for url in urls:
        try:
            response = call(url)
        except requests.RequestException as e:
            problems.append(f"{url}: {e}")
            continue
        if response.status_code == 200:
            return response.json()
        problems.append(f"{url}: {response.status_code} {response.text[:200]}")
    raise RuntimeError("no pod answered: " + "; ".join(problems))


def is_meili_error(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) >= ERROR_FIELDS


# --------------------------------------------------------------------------- the fleet


def fleet_spec(
    data_dir: Path,
    *,
    nodes: int = 6,
    groups: int = 2,
    rf: int = 2,
    proxies: int = 1,
    settings: dict[str, Any] | None = None,
) -> ClusterSpec:
    return ClusterSpec(
        nodes=nodes,
        replica_groups=groups,
        replication_factor=rf,
        shards=SHARDS,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=data_dir,
        proxy_settings={**FAST_SETTINGS, **(settings or {})},
        proxies=proxies,
        store=OWN_REDIS if proxies > 1 else None,
    )


@contextlib.contextmanager
def running(spec: ClusterSpec, *, fault_injection: bool = False) -> Iterator[DevCluster]:
    cluster = DevCluster(spec)
    if fault_injection:
        for node in cluster.nodes:
            if not node.binary.is_devnode:
                raise RuntimeError("the slow-node scenario needs the devnode (fault injection)")
            node.fault_injection = True
    cluster.start()
    try:
        yield cluster
    finally:
        # A paused process would ignore SIGTERM until the deadline.
        for process in cluster.processes:
            if process.is_running and process.is_paused:
                process.resume()
        cluster.stop()


def create_index(cluster: DevCluster) -> None:
    answer = ok(http("POST", f"{cluster.url}/indexes", json={"uid": UID, "primaryKey": "id"}), 202)
    wait_tasks(cluster.urls, [answer["taskUid"]])


def wait_tasks(
    urls: Sequence[str], uids: Sequence[int], timeout_s: float = _SETTLE_S
) -> dict[int, str]:
    """Every task's terminal status, read through whichever pod answers."""
    statuses: dict[int, str] = {}
    pending = list(uids)

    def done() -> bool:
        while pending:
            path = f"/tasks/{pending[0]}"
            task = first_answer(urls, lambda url, p=path: http("GET", url + p, timeout=10))
            if task["status"] not in ("succeeded", "failed", "canceled"):
                return False
            statuses[pending[0]] = task["status"]
            pending.pop(0)
        return True

    poll_until(done, timeout_s, what=f"{len(uids)} tasks finish")
    return statuses


def nodes_idle(cluster: DevCluster, timeout_s: float = _SETTLE_S) -> None:
    """Wait until no node has a task left to process (what the nodes enqueued is applied)."""

    def idle() -> bool:
        for node in cluster.nodes:
            answer = http(
                "GET",
                f"{node.url}/tasks",
                NODE_KEY,
                params={"statuses": "enqueued,processing", "limit": 1},
                timeout=5,
            )
            if answer.status_code != 200 or answer.json()["total"]:
                return False
        return True

    poll_until(idle, timeout_s, what="every node's task queue drains")


# --------------------------------------------------------------------------- the writer


@dataclasses.dataclass
class Write:
    ids: list[int]
    status: int | None  # None: no answer (refused, timed out, cut off)
    task_uid: int | None = None
    degraded: bool = False
    error_shape: bool = False


def document(i: int) -> dict[str, Any]:
    return {"id": i, "title": f"chaos document {i}", "n": i, "tag": ("a", "b", "c")[i % 3]}


class Writer(threading.Thread):
    """Adds `batch` new documents `rate` times a second, spreading over `urls`; a pod that
    refuses the connection is skipped (nothing was sent), anything else is recorded."""

    def __init__(self, urls: Callable[[], Sequence[str]], rate: float, batch: int) -> None:
        super().__init__(name="chaos-writer", daemon=True)
        self.urls = urls
        self.period = 1.0 / rate
        self.batch = batch
        self.writes: list[Write] = []
        self.stop_event = threading.Event()
        self._ids = itertools.count(1)
        self._turn = itertools.count()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            ids = [next(self._ids) for _ in range(self.batch)]
            self.writes.append(self._send(ids))
            next_at += self.period
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def _send(self, ids: list[int]) -> Write:
        urls = list(self.urls())
        body = [document(i) for i in ids]
        for _ in range(len(urls)):
            url = urls[next(self._turn) % len(urls)]
            try:
                response = http("POST", f"{url}/indexes/{UID}/documents", json=body)
            except requests.ConnectionError as e:
                if "refused" in str(e).lower():
                    continue  # the pod is down; the write never left
                return Write(ids, None)
            except requests.RequestException:
                return Write(ids, None)
            write = Write(ids, response.status_code, degraded=DEGRADED in response.headers)
            write.error_shape = response.status_code >= 400 and is_meili_error(response)
            if response.status_code == 202:
                write.task_uid = int(response.json()["taskUid"])
            return write
        return Write(ids, None)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def search(url: str) -> requests.Response:
    body = {"q": "chaos", "limit": 5}
    return http("POST", f"{url}/indexes/{UID}/search", json=body, timeout=10)


class Searcher(threading.Thread):
    """Searches at a steady rate and counts the answers by status (and degraded ones)."""

    def __init__(self, urls: Callable[[], Sequence[str]], rate: float) -> None:
        super().__init__(name="chaos-searcher", daemon=True)
        self.urls = urls
        self.period = 1.0 / rate
        self.statuses: Counter[int | None] = Counter()
        self.degraded = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        turns = itertools.count()
        while not self.stop_event.wait(self.period):
            urls = self.urls()
            for _ in range(len(urls)):
                url = urls[next(turns) % len(urls)]
                try:
                    response = search(url)
                except requests.ConnectionError as e:
                    if "refused" in str(e).lower():
                        continue  # a pod that is down: a Service would not route here
                    self.statuses[None] += 1
                except requests.RequestException:
                    self.statuses[None] += 1
                else:
                    self.statuses[response.status_code] += 1
                    self.degraded += DEGRADED in response.headers
                break

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


# --------------------------------------------------------------------------- the monkeys


class Monkey(threading.Thread):
    """Every `interval_s`, one victim out of `victims`: kill -9 (started again after
    `down_s`), pause (resumed after `down_s`) or restart; one victim at a time."""

    def __init__(
        self,
        victims: Sequence[NodeProcess],
        actions: Sequence[str],
        interval_s: float,
        down_s: float,
        seed: int,
    ) -> None:
        super().__init__(name="chaos-monkey", daemon=True)
        self.victims = victims
        self.actions = itertools.cycle(actions)
        self.interval_s = interval_s
        self.down_s = down_s
        self.random = random.Random(seed)
        self.done: Counter[str] = Counter()
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.wait(self.interval_s):
                victim = self.random.choice(self.victims)
                action = next(self.actions)
                self._act(victim, action)
                self.done[action] += 1
        except BaseException as e:  # reported by stop(): a monkey that died tested nothing
            self.error = e

    def _act(self, victim: NodeProcess, action: str) -> None:
        if action == "kill":
            victim.kill()
            self.stop_event.wait(self.down_s)
            victim.start()
            wait_up(victim)
        elif action == "pause":
            victim.pause()
            self.stop_event.wait(self.down_s)
            victim.resume()
        elif action == "restart":
            victim.stop()
            victim.start()
            wait_up(victim)
        else:
            raise ValueError(action)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()
        if self.error is not None:
            raise RuntimeError("the chaos monkey failed") from self.error


def wait_up(process: NodeProcess) -> None:
    if isinstance(process, ProxyProcess):
        process.wait_ready(60.0)
    else:
        process.wait_healthy(60.0)


# --------------------------------------------------------------------------- the checks


def shard_map(url: str) -> dict[str, list[list[str]]]:
    groups: dict[str, list[list[str]]] = ok(http("GET", f"{url}/_miroir/shards"))["groups"]
    return groups


def node_shard(node: NodeProcess, shard: int) -> dict[int, bytes]:
    """id -> content (without Miroir's fields) of every document the node holds in `shard`."""
    found: dict[int, bytes] = {}
    for offset in itertools.count(0, PAGE):
        page = ok(
            http(
                "POST",
                f"{node.url}/indexes/{UID}/documents/fetch",
                NODE_KEY,
                json={"filter": f"_miroir_shard = {shard}", "limit": PAGE, "offset": offset},
            )
        )
        for doc in page["results"]:
            found[int(doc["id"])] = content(doc)
        if offset + PAGE >= page["total"]:
            return found
    raise AssertionError("unreachable")


def node_total(node: NodeProcess) -> int:
    return int(ok(http("GET", f"{node.url}/indexes/{UID}/stats", NODE_KEY))["numberOfDocuments"])


def content(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {k: v for k, v in doc.items() if not k.startswith("_miroir_")},
        option=orjson.OPT_SORT_KEYS,
    )


def proxy_listing(url: str) -> Counter[int]:
    """How often each id appears in Miroir's own `GET /documents` listing."""
    seen: Counter[int] = Counter()
    for offset in itertools.count(0, PAGE):
        page = ok(
            http("GET", f"{url}/indexes/{UID}/documents", params={"limit": PAGE, "offset": offset})
        )
        seen.update(int(doc["id"]) for doc in page["results"])
        if offset + PAGE >= page["total"]:
            return seen
    raise AssertionError("unreachable")


@dataclasses.dataclass
class ReplicaReport:
    lost: int  # acknowledged, on no replica of its shard
    duplicated: int  # held by a node outside the shards it replicates
    listing_repeats: int  # ids Miroir's paged `GET /documents` listing returned twice
    wrong: int  # a replica holds other content than was written
    missing_copies: int  # (acknowledged document, replica) pairs where the replica lacks it
    differing_shards: int  # shards whose replicas do not hold identical fingerprints


def check_replicas(cluster: DevCluster, acked: set[int]) -> ReplicaReport:
    nodes = cluster.node_ids()
    groups = shard_map(cluster.url)
    expected = {i: content(document(i)) for i in acked}
    lost = wrong = missing = differing = misfiled = 0
    held_in_shards: Counter[str] = Counter()
    for shard in range(SHARDS):
        holders = [node for replicas in groups.values() for node in replicas[shard]]
        copies = {node_id: node_shard(nodes[node_id], shard) for node_id in holders}
        for node_id, docs in copies.items():
            held_in_shards[node_id] += len(docs)
            misfiled += sum(shard_of(i, SHARDS) != shard for i in docs)
        fingerprints = {node_id: sorted(docs.items()) for node_id, docs in copies.items()}
        differing += (
            len({orjson.dumps([[k, v.decode()] for k, v in f]) for f in fingerprints.values()}) > 1
        )
        for i in (i for i in acked if shard_of(i, SHARDS) == shard):
            present = [docs[i] for docs in copies.values() if i in docs]
            lost += not present
            missing += len(copies) - len(present)
            wrong += sum(copy != expected[i] for copy in present)
    strays = sum(
        max(0, node_total(node) - held_in_shards[node_id]) for node_id, node in nodes.items()
    )
    listed = proxy_listing(cluster.url)
    repeats = sum(n - 1 for n in listed.values() if n > 1)
    return ReplicaReport(lost, strays + misfiled, repeats, wrong, missing, differing)


def anti_entropy_pass(url: str, timeout_s: float = _SETTLE_S) -> str:
    """Run one anti-entropy pass now (`POST /_miroir/maintenance/anti-entropy`) and wait for
    it: "ran", or why it could not ("unavailable (HTTP 404)" where that route does not exist).
    A pass already running (409) is waited for, then ours is started."""
    started: dict[str, Any] = {}

    def start() -> bool:
        response = http("POST", f"{url}/_miroir/maintenance/anti-entropy", json={})
        started["status"] = response.status_code
        if response.status_code == 409:
            return False
        if response.status_code == 202:
            started["operation"] = response.json().get("operation")
        return True

    poll_until(start, timeout_s, what="an anti-entropy pass starts")
    if started["status"] not in (200, 202):
        return f"unavailable (HTTP {started['status']})"
    operation = started.get("operation")
    if operation is None:
        return "ran"

    def finished() -> bool:
        state = ok(http("GET", f"{url}/_miroir/operations/{operation}"))["state"]
        if state in ("failed", "canceled"):
            raise RuntimeError(f"anti-entropy operation {operation} {state}")
        return bool(state == "succeeded")

    poll_until(finished, timeout_s, what="the anti-entropy pass")
    return "ran"


def hints_replayed(url: str, timeout_s: float = _SETTLE_S) -> str:
    """Wait until hinted handoff has replayed every stored hint (`GET /_miroir/hints`):
    "replayed", or "unavailable (HTTP 404)" where hinted handoff does not exist."""
    response = http("GET", f"{url}/_miroir/hints")
    if response.status_code != 200:
        return f"unavailable (HTTP {response.status_code})"

    def drained() -> bool:
        nodes = ok(http("GET", f"{url}/_miroir/hints"))["nodes"]
        return all(not node["pending"] for node in nodes)

    poll_until(drained, timeout_s, what="every hint is replayed")
    return "replayed"


# --------------------------------------------------------------------------- scenarios


@dataclasses.dataclass
class WriteFigures:
    scenario: str
    seconds: float
    actions: dict[str, int]
    writes: int
    acked: int
    acked_degraded: int
    not_acked: int  # 503s, failed tasks, no answer
    answered_503: int
    lost: int
    duplicated: int
    wrong: int
    listing_repeats_before_repair: int
    listing_repeats_after_repair: int
    missing_before_repair: int
    differing_shards_before_repair: int
    hinted_handoff: str
    anti_entropy: str
    missing_after_repair: int
    differing_shards_after_repair: int
    searches: dict[str, int]
    searches_degraded: int
    tasks_unqueryable: int = 0
    task_uids_duplicated: int = 0


def settle_and_check(
    cluster: DevCluster,
    writer: Writer,
    searcher: Searcher,
    scenario: str,
    seconds: float,
    actions: dict[str, int],
) -> WriteFigures:
    """Wait for every task, compare the replicas, run one anti-entropy pass, compare again."""
    for node in cluster.nodes:  # the monkey left every process running; be sure of it
        if node.is_paused:
            node.resume()
    live = [p.url for p in cluster.proxies if p.is_running]
    uids = [w.task_uid for w in writer.writes if w.task_uid is not None]
    statuses = wait_tasks(live, uids)
    handoff = hints_replayed(cluster.url)
    acked_writes = [w for w in writer.writes if w.task_uid and statuses[w.task_uid] == "succeeded"]
    acked = {i for w in acked_writes for i in w.ids}
    nodes_idle(cluster)
    before = check_replicas(cluster, acked)
    repair = anti_entropy_pass(cluster.url)
    if repair == "ran":
        nodes_idle(cluster)
        after = check_replicas(cluster, acked)
    else:
        after = before
    unqueryable = sum(
        http("GET", f"{url}/tasks/{uid}").status_code != 200 for url in live for uid in uids
    )
    return WriteFigures(
        scenario=scenario,
        seconds=round(seconds, 1),
        actions=actions,
        writes=len(writer.writes),
        acked=len(acked_writes),
        acked_degraded=sum(w.degraded for w in acked_writes),
        not_acked=len(writer.writes) - len(acked_writes),
        answered_503=sum(w.status == 503 for w in writer.writes),
        lost=after.lost,
        duplicated=after.duplicated,
        wrong=after.wrong,
        listing_repeats_before_repair=before.listing_repeats,
        listing_repeats_after_repair=after.listing_repeats,
        missing_before_repair=before.missing_copies,
        differing_shards_before_repair=before.differing_shards,
        hinted_handoff=handoff,
        anti_entropy=repair,
        missing_after_repair=after.missing_copies,
        differing_shards_after_repair=after.differing_shards,
        searches={str(k): v for k, v in sorted(searcher.statuses.items(), key=str)},
        searches_degraded=searcher.degraded,
        tasks_unqueryable=unqueryable,
        task_uids_duplicated=len(uids) - len(set(uids)),
    )


def chaos_run(
    cluster: DevCluster,
    victims: Sequence[NodeProcess],
    actions: Sequence[str],
    scenario: str,
    *,
    seconds: float,
    interval_s: float,
    down_s: float,
    rate: float,
    batch: int,
    seed: int,
) -> WriteFigures:
    create_index(cluster)
    pods = lambda: [p.url for p in cluster.proxies]  # noqa: E731
    writer, searcher = Writer(pods, rate, batch), Searcher(pods, rate)
    monkey = Monkey(victims, actions, interval_s, down_s, seed)
    started = time.monotonic()
    writer.start()
    searcher.start()
    monkey.start()
    try:
        time.sleep(seconds)
        # A loaded machine restarts nodes slowly: go on until every kind of fault happened
        # once, so a short run still tests them all (bounded all the same).
        poll_until(
            lambda: all(monkey.done[a] for a in actions) or monkey.error is not None,
            _SETTLE_S,
            what=f"every fault ({', '.join(actions)}) happens once",
        )
    finally:
        monkey.stop()
        writer.stop()
        searcher.stop()
    elapsed = time.monotonic() - started
    return settle_and_check(cluster, writer, searcher, scenario, elapsed, dict(monkey.done))


def node_chaos(
    data_dir: Path,
    *,
    seconds: float,
    interval_s: float = 3.0,
    down_s: float = 1.5,
    rate: float = 10.0,
    batch: int = 5,
    seed: int = 1,
) -> WriteFigures:
    """Scenario (a): nodes killed -9, paused and restarted under a steady writer."""
    with running(fleet_spec(data_dir)) as cluster:
        return chaos_run(
            cluster,
            cluster.nodes,
            ("kill", "pause", "restart"),
            "nodes (RG=2, RF=2)",
            seconds=seconds,
            interval_s=interval_s,
            down_s=down_s,
            rate=rate,
            batch=batch,
            seed=seed,
        )


def pod_chaos(
    data_dir: Path,
    *,
    seconds: float,
    interval_s: float = 3.0,
    down_s: float = 1.5,
    rate: float = 10.0,
    batch: int = 5,
    seed: int = 2,
) -> WriteFigures:
    """Scenario (b): proxy pods (three, on Redis) killed -9 under a steady writer."""
    with running(fleet_spec(data_dir, proxies=3)) as cluster:
        return chaos_run(
            cluster,
            cluster.proxies,
            ("kill",),
            "pods (3 on Redis)",
            seconds=seconds,
            interval_s=interval_s,
            down_s=down_s,
            rate=rate,
            batch=batch,
            seed=seed,
        )


@dataclasses.dataclass
class OutageFigures:
    outage_s: float
    searches_during: dict[str, int]
    writes_during: int
    writes_503_meili_shape: int
    writes_other: dict[str, int]
    recovered_after_s: float
    pods_restarted: int
    acked_after: bool


def redis_outage(data_dir: Path, *, outage_s: float, proxies: int = 3) -> OutageFigures:
    """Scenario (c): Redis stopped for `outage_s`; searches go on, writes answer 503 in
    Meilisearch's shape, and a write succeeds again once Redis is back, no pod restarted."""
    with running(fleet_spec(data_dir, nodes=4, proxies=proxies)) as cluster:
        assert cluster.redis is not None
        create_index(cluster)
        seeded = ok(
            http(
                "POST",
                f"{cluster.url}/indexes/{UID}/documents",
                json=[document(i) for i in range(1, 51)],
            ),
            202,
        )
        wait_tasks(cluster.urls, [seeded["taskUid"]])
        for url in cluster.urls:  # every pod has served the index before the outage
            ok(search(url))
        pids = [p.pid for p in cluster.proxies]
        pods = lambda: cluster.urls  # noqa: E731
        searcher, writer = Searcher(pods, 10.0), Writer(pods, 5.0, 1)
        cluster.redis.stop()
        started = time.monotonic()
        searcher.start()
        writer.start()
        time.sleep(outage_s)
        writer.stop()
        searcher.stop()
        cluster.redis.start()
        cluster.redis.wait_healthy(30.0)
        back = time.monotonic()
        outcome: dict[str, Any] = {}

        def write_succeeds() -> bool:
            response = http(
                "POST",
                f"{cluster.url}/indexes/{UID}/documents",
                json=[document(10_000_000)],
                timeout=10,
            )
            if response.status_code != 202:
                return False
            outcome["uid"] = response.json()["taskUid"]
            return True

        poll_until(write_succeeds, 60.0, what="a write succeeds after Redis is back")
        recovered = time.monotonic() - back
        acked = wait_tasks(cluster.urls, [outcome["uid"]])[outcome["uid"]] == "succeeded"
        shape = sum(w.status == 503 and w.error_shape for w in writer.writes)
        other = Counter(
            str(w.status) for w in writer.writes if not (w.status == 503 and w.error_shape)
        )
        return OutageFigures(
            outage_s=round(time.monotonic() - started - recovered, 1),
            searches_during={str(k): v for k, v in sorted(searcher.statuses.items(), key=str)},
            writes_during=len(writer.writes),
            writes_503_meili_shape=shape,
            writes_other=dict(other),
            recovered_after_s=round(recovered, 2),
            pods_restarted=sum(a != p.pid for a, p in zip(pids, cluster.proxies, strict=True)),
            acked_after=acked,
        )


@dataclasses.dataclass
class SlowFigures:
    delay_ms: int
    searches: int
    rows: dict[str, dict[str, float]]  # mode -> {p50_ms, p99_ms, hedges_won}


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def slow_node(data_dir: Path, *, searches: int, delay_ms: int = 500) -> SlowFigures:
    """Scenario (d): one node 500 ms late (its probes still pass); search latency with
    hedging off, fixed 50 ms, and the node's own p95."""
    # Probes wait out the delay: the node is slow, not dead, so the prober keeps it.
    health = {"interval_ms": 1_000, "timeout_ms": 5_000, "unhealthy_after": 2}
    modes = {
        "off": {"enabled": False},
        "fixed 50 ms": {"enabled": True, "delay_ms": 50},
        "p95 (min 20 ms)": {"enabled": True, "delay_ms": "p95", "min_delay_ms": 20},
    }
    settings = {"health": health, "features": {"coalesce_window_ms": 0}}
    rows: dict[str, dict[str, float]] = {}
    with running(fleet_spec(data_dir, settings=settings), fault_injection=True) as cluster:
        create_index(cluster)
        seeded = ok(
            http(
                "POST",
                f"{cluster.url}/indexes/{UID}/documents",
                json=[document(i) for i in range(1, 2_001)],
            ),
            202,
        )
        wait_tasks(cluster.urls, [seeded["taskUid"]])
        slow = cluster.nodes[0]
        ok(http("PUT", f"{slow.url}/_devnode/faults", NODE_KEY, json={"delayMs": delay_ms}))
        proxy = cluster.proxy
        for mode, hedging in modes.items():
            proxy.config = {**proxy.config, "hedging": hedging}
            proxy.restart()
            proxy.wait_ready(60.0)
            warm_up(proxy.url)
            latencies, errors = [], 0
            for turn in range(searches):
                began = time.perf_counter()
                answer = http(
                    "POST",
                    f"{proxy.url}/indexes/{UID}/search",
                    json={"q": f"document {turn % 97}", "limit": 10},
                )
                latencies.append((time.perf_counter() - began) * 1000)
                errors += answer.status_code != 200
            rows[mode] = {
                "p50_ms": round(statistics.median(latencies), 1),
                "p90_ms": round(percentile(latencies, 0.90), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
                "hedges_won": hedges_won(proxy),
                "errors": errors,
            }
    return SlowFigures(delay_ms, searches, rows)


def warm_up(url: str) -> None:
    """Searches until `_WARM_UP` in a row answer 200: the first ones load the catalog (and
    a restarted pod must first see its nodes); none of them is measured."""
    turns = itertools.count()

    def warm() -> bool:
        body = {"q": str(next(turns))}
        return all(
            http("POST", f"{url}/indexes/{UID}/search", json=body).status_code == 200
            for _ in range(_WARM_UP)
        )

    poll_until(warm, 60.0, what="searches answer after the restart")


def hedges_won(proxy: ProxyProcess) -> float:
    text = requests.get(f"{proxy.metrics_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("miroir_hedged_reads_total{") and 'outcome="hedge_won"' in line
    )


# --------------------------------------------------------------------------- the table


def table(results: dict[str, Any]) -> str:
    lines = ["| scenario | figure | value |", "|---|---|---|"]
    for key in ("nodes", "pods"):
        figures = results.get(key)
        if not figures:
            continue
        name = figures["scenario"]
        for label, value in (
            ("run", f"{figures['seconds']} s, {figures['actions']}"),
            ("writes sent / acknowledged", f"{figures['writes']} / {figures['acked']}"),
            ("acknowledged with X-Miroir-Degraded", figures["acked_degraded"]),
            ("not acknowledged (503, failed, no answer)", figures["not_acked"]),
            ("**lost**", figures["lost"]),
            ("**duplicated**", figures["duplicated"]),
            ("wrong content", figures["wrong"]),
            ("missing copies before repair", figures["missing_before_repair"]),
            (
                "replicas differing before repair (shards)",
                figures["differing_shards_before_repair"],
            ),
            ("hints (hinted handoff) before the comparison", figures["hinted_handoff"]),
            ("anti-entropy pass", figures["anti_entropy"]),
            ("missing copies after repair", figures["missing_after_repair"]),
            ("replicas differing after repair (shards)", figures["differing_shards_after_repair"]),
            (
                "ids repeated by a paged GET /documents, before / after repair",
                f"{figures['listing_repeats_before_repair']} / "
                f"{figures['listing_repeats_after_repair']}",
            ),
            (
                "searches by status / degraded",
                f"{figures['searches']} / {figures['searches_degraded']}",
            ),
            (
                "tasks not queryable / duplicate uids",
                f"{figures['tasks_unqueryable']} / {figures['task_uids_duplicated']}",
            ),
        ):
            lines.append(f"| {name} | {label} | {value} |")
    outage = results.get("redis")
    if outage:
        name = f"Redis stopped {outage['outage_s']} s"
        for label, value in (
            ("searches during the outage by status", outage["searches_during"]),
            (
                "writes during / 503 in Meilisearch's shape",
                f"{outage['writes_during']} / {outage['writes_503_meili_shape']}",
            ),
            ("other write answers", outage["writes_other"] or "none"),
            ("first acknowledged write after Redis is back", f"{outage['recovered_after_s']} s"),
            ("pods restarted", outage["pods_restarted"]),
        ):
            lines.append(f"| {name} | {label} | {value} |")
    slow = results.get("slow")
    if slow:
        name = f"one node +{slow['delay_ms']} ms, {slow['searches']} searches"
        for mode, row in slow["rows"].items():
            won = f"hedges won {row['hedges_won']:.0f}, errors {row['errors']}"
            value = f"p50 {row['p50_ms']} ms, p90 {row['p90_ms']} ms, p99 {row['p99_ms']} ms, {won}"
            lines.append(f"| {name} | hedging {mode} | {value} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--minutes", type=float, default=1.0, help="length of each chaos run")
    parser.add_argument("--seconds", type=float, help="length of each chaos run (overrides)")
    parser.add_argument("--interval-s", type=float, default=3.0, help="time between faults")
    parser.add_argument("--down-s", type=float, default=1.5, help="how long a victim stays down")
    parser.add_argument("--rate", type=float, default=10.0, help="writes (and searches) per s")
    parser.add_argument("--outage-s", type=float, default=30.0, help="how long Redis is stopped")
    parser.add_argument("--redis-pods", type=int, default=3, help="pods during the outage")
    parser.add_argument("--searches", type=int, default=300, help="searches per hedging mode")
    parser.add_argument("--scenarios", default="nodes,pods,redis,slow")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    wanted = set(args.scenarios.split(","))
    unknown = wanted - {"nodes", "pods", "redis", "slow"}
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    run = {
        "seconds": args.seconds if args.seconds is not None else args.minutes * 60,
        "interval_s": args.interval_s,
        "down_s": args.down_s,
        "rate": args.rate,
        "seed": args.seed,
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="miroir-chaos-") as tmp:
        base = Path(tmp)
        if "nodes" in wanted:
            results["nodes"] = dataclasses.asdict(node_chaos(base / "nodes", **run))
        if "pods" in wanted:
            results["pods"] = dataclasses.asdict(pod_chaos(base / "pods", **run))
        if "redis" in wanted:
            outage = redis_outage(base / "redis", outage_s=args.outage_s, proxies=args.redis_pods)
            results["redis"] = dataclasses.asdict(outage)
        if "slow" in wanted:
            results["slow"] = dataclasses.asdict(slow_node(base / "slow", searches=args.searches))
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    bad = [k for k in ("nodes", "pods") if k in results and not clean(results[k])]
    if bad:
        print(
            f"FAILED: acknowledged writes lost, duplicated, altered or unrepaired in {bad}",
            file=sys.stderr,
        )
        return 1
    return 0


def clean(figures: dict[str, Any]) -> bool:
    """Nothing acknowledged lost, duplicated or altered; after a repair pass, every replica
    holds every acknowledged document and the replicas of each shard are identical."""
    if figures["lost"] or figures["duplicated"] or figures["wrong"]:
        return False
    repaired = figures["anti_entropy"] == "ran"
    return not repaired or not (
        figures["missing_after_repair"] or figures["differing_shards_after_repair"]
    )


if __name__ == "__main__":
    sys.exit(main())

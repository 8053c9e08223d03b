"""One validated settings tree for a proxy pod, loaded from YAML with env overrides.

Secrets never need to be in the file: `MIROIR_MASTER_KEY`, `MIROIR_ADMIN_KEY`,
`MIROIR_NODE_MASTER_KEY` and `MIROIR_STORE` (a Redis URL may hold a password) override it.
The operator imports this module to render the proxy's ConfigMap, so it stays free of I/O
beyond `load()`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from miroir_proxy.core.topology import MAX_SHARDS, check_group_id, check_node_id, check_node_url


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Strict):
    id: str = Field(description="stable node id; placement hashes it, so never reuse one")
    url: str = Field(description="base URL of the Meilisearch node, e.g. http://10.0.0.5:7700")

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return check_node_id(value)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return check_node_url(value)


class GroupConfig(_Strict):
    id: str
    nodes: tuple[NodeConfig, ...] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return check_group_id(value)


class TimeoutsConfig(_Strict):
    node_connect_ms: int = Field(1_000, gt=0, description="TCP connect to a node")
    node_read_ms: int = Field(5_000, gt=0, description="one search/read call to a node")
    node_write_ms: int = Field(30_000, gt=0, description="one write/broadcast call to a node")
    request_ms: int = Field(60_000, gt=0, description="overall budget of one client request")
    task_node_deadline_ms: int = Field(
        120_000,
        gt=0,
        description="a node task on an unreachable node stops blocking its Miroir task after this",
    )
    shutdown_grace_ms: int = Field(20_000, gt=0, description="SIGTERM: drain in-flight requests")


class HealthConfig(_Strict):
    interval_ms: int = Field(1_000, gt=0, description="probe period per node")
    timeout_ms: int = Field(500, gt=0)
    unhealthy_after: int = Field(2, ge=1, description="consecutive failures to mark unhealthy")
    healthy_after: int = Field(1, ge=1, description="consecutive successes to mark healthy")


class ListenConfig(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(7700, ge=0, le=65535, description="client API (Meilisearch-compatible)")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Prometheus /metrics")


class CoordinationConfig(_Strict):
    pod_id: str | None = Field(None, description="this pod's id; default: hostname-pid")
    topology_poll_ms: int = Field(1_000, gt=0, description="how often pods re-read the epoch")
    peer_heartbeat_ms: int = Field(1_000, gt=0)
    peer_ttl_ms: int = Field(5_000, gt=0, description="a pod missing heartbeats this long is gone")
    lease_ttl_ms: int = Field(10_000, gt=0)
    lease_renew_ms: int = Field(3_000, gt=0)
    job_claim_ttl_ms: int = Field(
        10_000, gt=0, description="a chunk claim expires without heartbeat"
    )
    job_concurrency: int = Field(2, ge=0, description="chunks one pod runs at once; 0: none")
    task_retention_s: int = Field(
        7 * 86_400, gt=0, description="finished tasks older than this are pruned"
    )
    task_prune_interval_ms: int = Field(60_000, gt=0, description="period of the pruning sweep")


class TtlConfig(_Strict):
    enabled: bool = Field(True, description="run the periodic sweep of expired documents")
    interval_ms: int = Field(60_000, gt=0, description="period of the TTL sweep")
    max_deletes_per_sweep: int = Field(
        1_000, gt=0, description="expired documents one pass deletes per index, at most"
    )


class AntiEntropyConfig(_Strict):
    enabled: bool = Field(True, description="run the periodic anti-entropy pass (Mode A)")
    interval_ms: int = Field(300_000, gt=0, description="pause between two scheduled passes")
    shards_per_pass: int = Field(
        0, ge=0, description="shards one scheduled pass compares, at most; 0: every owned shard"
    )
    read_concurrency: int = Field(
        4, ge=1, description="replica pages read at once during a pass (per pod)"
    )
    auto_repair: bool = Field(
        True, description="repair what a pass finds; off: report (and count) only"
    )
    tombstone_window_ms: int = Field(
        7 * 86_400_000,
        gt=0,
        description="deletes are remembered this long: a replica that was away longer than "
        "this may give a deleted document back",
    )
    page_size: int = Field(1_000, ge=1, le=100_000, description="documents per page read")


class SettingsSyncConfig(_Strict):
    """Settings updates (propose, verify, commit) and the drift pass (README "Settings
    updates")."""

    repair_attempts: int = Field(
        3, ge=0, description="repairs of a node whose settings differ before giving up"
    )
    repair_backoff_ms: int = Field(200, gt=0, description="first wait between repairs, doubled")
    verify_timeout_ms: int = Field(
        120_000,
        gt=0,
        description="longest a settings task waits for its verification once its node tasks "
        "finished",
    )
    drift_enabled: bool = Field(True, description="run the periodic settings-drift pass")
    drift_interval_ms: int = Field(60_000, gt=0, description="period of the settings-drift pass")


class FeaturesConfig(_Strict):
    idempotency_ttl_s: int = Field(86_400, gt=0, description="how long an Idempotency-Key is kept")
    idempotency_max_body_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="larger writes are not remembered by body hash"
    )
    coalesce_window_ms: int = Field(50, ge=0, description="0 turns query coalescing off")
    coalesce_max_subscribers: int = Field(1_000, gt=0)
    session_wait_ms: int = Field(
        5_000, ge=0, description="a session's search waits this long for its last write"
    )


class OperationsConfig(_Strict):
    ack_timeout_ms: int = Field(
        60_000, gt=0, description="how long a topology change waits for every pod to adopt it"
    )
    copy_page_size: int = Field(1_000, ge=1, le=100_000, description="documents per copy page")
    copy_docs_per_s: float = Field(
        0, ge=0, description="throttle of one copying chunk, documents per second; 0: none"
    )
    verify_passes: int = Field(
        5, ge=1, description="verification passes of a shard before its chunk is retried"
    )
    node_task_timeout_ms: int = Field(
        300_000, gt=0, description="how long a copy waits for a node to apply one page"
    )
    reshard_retain_s: float = Field(
        300,
        ge=0,
        description="how long a finished reshard keeps the old index (still written) so a "
        "cancel can flip back; the reshard operation ends after it",
    )

    dump_spool_dir: str | None = Field(
        None,
        description="where received dumps are kept, compressed, while they are imported "
        "(None: `miroir-dumps` next to `state_path`); pods sharing it (a ReadWriteMany "
        "volume) may all resume an import's chunks",
    )
    dump_chunk_documents: int = Field(
        50_000, ge=1, description="documents of one dump import chunk (Mode C job)"
    )


class HandoffConfig(_Strict):
    """Hinted handoff (README "Writes with a node down")."""

    enabled: bool = Field(
        True,
        description="acknowledge a write whose replica is down once a live replica acked "
        "and the missed node batch is stored as a hint, replayed when the node returns",
    )
    max_hints_per_node: int = Field(
        10_000,
        gt=0,
        description="node batches kept per node; one more drops them all and leaves the node "
        "to anti-entropy",
    )
    replay_batch: int = Field(
        100, gt=0, le=1_000, description="hints one replay round sends to a node, in order"
    )
    replay_concurrency: int = Field(2, gt=0, description="nodes one pod replays to at once")
    replay_interval_ms: int = Field(
        1_000, gt=0, description="how often a pod looks for returned nodes with hints"
    )


class HedgingConfig(_Strict):
    enabled: bool = Field(
        False, description="ask another replica when a search's node call is slow (hedging)"
    )
    delay_ms: int | Literal["p95"] = Field(
        "p95",
        description="how long a node call runs alone before it is hedged: milliseconds, or "
        '"p95" for the node\'s own observed p95 of recent read calls',
    )
    min_delay_ms: int = Field(
        20, ge=0, description='"p95" mode: never hedge sooner (and this until a node has data)'
    )

    @field_validator("delay_ms")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError('delay_ms must be >= 0 or "p95"')
        return value


class DumpsConfig(_Strict):
    dir: str | None = Field(
        None,
        description="where `POST /dumps` writes dump files on the pod that runs the dump; "
        "None: a `dumps` directory next to `state_path` (SQLite store), or `miroir-dumps` in "
        "the temporary directory (Redis store)",
    )
    page_size: int = Field(1_000, ge=1, le=100_000, description="documents read per node call")


class MiroirConfig(_Strict):
    shards: int = Field(16, ge=1, le=MAX_SHARDS, description="shard count for new indexes")
    replication_factor: int = Field(1, ge=1, description="copies of each shard inside a group")
    replica_groups: tuple[GroupConfig, ...] = Field(min_length=1)
    master_key: str | None = Field(None, description="clients' master key (env MIROIR_MASTER_KEY)")
    admin_key: str | None = Field(None, description="admin API key (env MIROIR_ADMIN_KEY)")
    node_master_key: str | None = Field(
        None, description="master key of every node (env MIROIR_NODE_MASTER_KEY)"
    )
    listen: ListenConfig = ListenConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    health: HealthConfig = HealthConfig()
    max_body_bytes: int = Field(100 * 1024 * 1024, gt=0, description="client payload limit")
    unavailable_shards: Literal["partial", "error"] = Field(
        "partial",
        description="search with a shard no active group covers: 200 + X-Miroir-Degraded, or 503",
    )
    state_path: str = Field("miroir-state.sqlite3", description="SQLite state file (one pod)")
    store: str | None = Field(
        None,
        description="None: SQLite at state_path; redis://host:port/db: shared by many pods; "
        "redis+cluster://host:port: a Redis Cluster (any one node), shared by many pods",
    )
    coordination: CoordinationConfig = CoordinationConfig()
    features: FeaturesConfig = FeaturesConfig()
    operations: OperationsConfig = OperationsConfig()
    ttl: TtlConfig = TtlConfig()
    anti_entropy: AntiEntropyConfig = AntiEntropyConfig()
    handoff: HandoffConfig = HandoffConfig()
    hedging: HedgingConfig = HedgingConfig()
    dumps: DumpsConfig = DumpsConfig()
    settings_sync: SettingsSyncConfig = SettingsSyncConfig()

    @model_validator(mode="after")
    def _consistent(self) -> MiroirConfig:
        seen: set[str] = set()
        for group in self.replica_groups:
            if len(group.nodes) < self.replication_factor:
                raise ValueError(
                    f"group {group.id!r} has {len(group.nodes)} nodes, fewer than "
                    f"replication_factor {self.replication_factor}"
                )
            for node in group.nodes:
                if node.id in seen:
                    raise ValueError(f"node id {node.id!r} appears twice")
                seen.add(node.id)
        group_ids = [g.id for g in self.replica_groups]
        if len(set(group_ids)) != len(group_ids):
            raise ValueError("replica group ids must be unique")
        return self


ENV_OVERRIDES = {
    "MIROIR_MASTER_KEY": "master_key",
    "MIROIR_ADMIN_KEY": "admin_key",
    "MIROIR_NODE_MASTER_KEY": "node_master_key",
    "MIROIR_STORE": "store",
}


def from_mapping(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> MiroirConfig:
    data = dict(raw)
    for var, field in ENV_OVERRIDES.items():
        value = (os.environ if env is None else env).get(var)
        if value:
            data[field] = value
    return MiroirConfig.model_validate(data)


def load(path: str | Path, env: Mapping[str, str] | None = None) -> MiroirConfig:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the configuration must be a YAML mapping")
    return from_mapping(raw, env)

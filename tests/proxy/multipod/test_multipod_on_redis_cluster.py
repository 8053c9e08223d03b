"""Two of the multi-pod tests again, with the three pods sharing a 3-master Redis Cluster
(`store: redis+cluster://...`) instead of one redis-server: one task uid sequence under
concurrent writes to every pod, and a killed pod's chunk finished by another from its cursor.
The store contract itself runs on the cluster in tests/proxy/store; these two show the pods
work on it end to end (task registry, topology, peers, leases and the job queue).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from miroir_proxy.cli.devcluster import DevCluster

from ...redis_cluster import RedisCluster
from .conftest import run_fleet

# Collected again in this module, where `fleet` and `store` are the cluster's.
from .test_multipod import test_tasks_have_one_uid_sequence_shared_by_every_pod
from .test_multipod_coordination import (
    test_a_killed_pods_chunk_is_finished_by_another_from_its_cursor,
)

__all__ = [
    "test_a_killed_pods_chunk_is_finished_by_another_from_its_cursor",
    "test_tasks_have_one_uid_sequence_shared_by_every_pod",
]


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, redis_cluster: RedisCluster
) -> Iterator[DevCluster]:
    yield from run_fleet(tmp_path_factory.mktemp("multipod-cluster"), redis_cluster.url)


@pytest.fixture
def store(redis_cluster: RedisCluster) -> Iterator[redis.RedisCluster]:
    client = redis.RedisCluster.from_url(redis_cluster.client_url, decode_responses=True)
    yield client
    client.close()

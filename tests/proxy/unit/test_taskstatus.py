"""Pure task aggregation: status from node tasks, logical counts, rendering, durations."""

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from miroir_proxy.core.sizes import human_size, parse_size, unit_size
from miroir_proxy.dispatch.taskstatus import (
    HOLD_KEY,
    POLICY_KEY,
    iso_duration,
    logical_count,
    release,
    render,
    settle,
    summary,
)
from miroir_proxy.state.store import NodeTaskRef, TaskRecord

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def ref(node: str, group: str, shards: list[int], status: str, **details: int) -> NodeTaskRef:
    return NodeTaskRef(
        node=node,
        group=group,
        shards=shards,
        uid=1,
        status=status,
        error=None if status == "succeeded" else {"message": node, "code": "io_error"},
        details=details or None,
    )


def record(refs: list[NodeTaskRef], policy: str = "quorum", **details: Any) -> TaskRecord:
    return TaskRecord(
        uid=7,
        index_uid="books",
        type="documentAdditionOrUpdate",
        enqueued_at="2026-01-02T03:04:05.000000Z",
        details=details or None,
        node_tasks=refs,
        extra={POLICY_KEY: policy},
    )


def test_pending_node_tasks_keep_the_task_open_and_start_it() -> None:
    task = record([ref("a", "g0", [0], "succeeded"), ref("b", "g0", [0], "enqueued")])
    assert settle(task, {"g0"}, NOW)
    assert (task.status, task.started_at, task.batch_uid) == (
        "processing",
        "2026-01-02T03:04:05.678901Z",
        7,
    )
    assert not settle(task, {"g0"}, NOW)
    untouched = record([ref("a", "g0", [0], "enqueued")])
    assert not settle(untouched, {"g0"}, NOW)
    assert untouched.status == "enqueued"


def test_quorum_needs_a_majority_in_one_active_group_per_shard() -> None:
    refs = [
        ref("a", "g0", [0, 1], "succeeded"),
        ref("b", "g0", [0, 1], "lost"),
        ref("c", "g1", [0, 1], "succeeded"),
        ref("d", "g1", [0, 1], "succeeded"),
    ]
    ok = record(refs)
    settle(ok, {"g0", "g1"}, NOW)
    assert ok.status == "succeeded"
    # The only group at quorum is not serving searches: not good enough.
    syncing = record(refs)
    settle(syncing, {"g0"}, NOW)
    assert syncing.status == "failed"
    assert syncing.error is not None
    assert [e["node"] for e in syncing.error["nodeErrors"]] == ["b"]


def test_policy_all_and_cancellations() -> None:
    mixed = record([ref("a", "g0", [], "succeeded"), ref("b", "g0", [], "failed")], "all")
    settle(mixed, {"g0"}, NOW)
    assert mixed.status == "failed"
    assert mixed.error is not None
    assert mixed.error["code"] == "io_error"
    canceled = record([ref("a", "g0", [0], "canceled"), ref("b", "g0", [0], "canceled")])
    settle(canceled, {"g0"}, NOW)
    assert canceled.status == "canceled"
    no_shards = record([ref("a", "g0", [], "failed"), ref("b", "g0", [], "succeeded")])
    settle(no_shards, {"g0"}, NOW)
    assert no_shards.status == "succeeded"


def test_logical_counts_come_from_one_complete_group() -> None:
    refs = [
        ref("a", "g0", [0, 1], "succeeded", indexedDocuments=10),
        ref("b", "g0", [0, 1], "succeeded", indexedDocuments=10),
        ref("c", "g1", [0], "succeeded", indexedDocuments=6),
        ref("d", "g1", [1], "failed"),
    ]
    assert logical_count(refs, "indexedDocuments", {"g0", "g1"}) == 10
    task = record(refs, receivedDocuments=10, indexedDocuments=None)
    settle(task, {"g0", "g1"}, NOW)
    assert task.details == {
        "receivedDocuments": 10,
        "indexedDocuments": 10,
        "miroirUnconfirmedNodes": ["d"],
    }


def test_rendering_and_durations() -> None:
    assert iso_duration(0.00933) == "PT0.009330S"
    assert iso_duration(1.0) == "PT1S"
    assert iso_duration(90_000.5) == "P1DT3600.500000S"
    task = record([ref("a", "g0", [0], "succeeded")], receivedDocuments=1, indexedDocuments=None)
    task.extra["customMetadata"] = "batch-1"
    assert summary(task) == {
        "taskUid": 7,
        "indexUid": "books",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "enqueuedAt": "2026-01-02T03:04:05.000000Z",
        "customMetadata": "batch-1",
    }
    settle(task, {"g0"}, NOW)
    shown = render(task)
    assert shown["duration"] == "PT0S"
    assert shown["finishedAt"] == "2026-01-02T03:04:05.678901Z"
    assert POLICY_KEY not in shown
    assert shown["customMetadata"] == "batch-1"


def timed(node: str, started: str, finished: str | None, status: str = "succeeded") -> NodeTaskRef:
    found = ref(node, "g0", [0], status)
    found["startedAt"], found["finishedAt"] = started, finished
    return found


def test_times_come_from_the_node_tasks() -> None:
    # enqueuedAt 03:04:05.000000, NOW 03:04:05.678901; nodes print nanoseconds.
    task = record(
        [
            timed("a", "2026-01-02T03:04:05.100000123Z", "2026-01-02T03:04:05.300000Z"),
            timed("b", "2026-01-02T03:04:05.200000Z", "2026-01-02T03:04:05.400000456Z"),
        ]
    )
    assert settle(task, {"g0"}, NOW)
    shown = render(task)
    assert (shown["startedAt"], shown["finishedAt"], shown["duration"]) == (
        "2026-01-02T03:04:05.100000Z",
        "2026-01-02T03:04:05.400000Z",
        "PT0.300000S",
    )


def test_node_times_before_enqueued_keep_their_span_from_enqueued() -> None:
    # The node tasks ran before the Miroir task was registered (fast nodes).
    task = record(
        [
            timed("a", "2026-01-02T03:04:04.900000Z", "2026-01-02T03:04:04.950000Z"),
            timed("b", "2026-01-02T03:04:04.910000Z", "2026-01-02T03:04:04.990000Z"),
        ]
    )
    assert settle(task, {"g0"}, NOW)
    assert (task.started_at, task.finished_at) == (
        "2026-01-02T03:04:05.000000Z",
        "2026-01-02T03:04:05.090000Z",
    )


def test_a_lost_node_task_ends_the_task_when_it_is_given_up() -> None:
    task = record(
        [
            timed("a", "2026-01-02T03:04:05.100000Z", "2026-01-02T03:04:05.200000Z"),
            timed("b", "2026-01-02T03:04:05.100000Z", None, status="lost"),
        ]
    )
    assert settle(task, {"g0"}, NOW)
    assert (task.started_at, task.finished_at) == (
        "2026-01-02T03:04:05.100000Z",
        "2026-01-02T03:04:05.678901Z",
    )


def _done(node: str, group: str, details: dict[str, Any]) -> NodeTaskRef:
    return NodeTaskRef(
        node=node, group=group, shards=[], uid=1, status="succeeded", error=None, details=details
    )


def test_a_dump_names_the_first_node_dump() -> None:
    task = record(
        [
            _done("a", "g0", {"dumpUid": "20260102-030406120"}),
            _done("b", "g1", {"dumpUid": "20260102-030405990"}),
        ],
        policy="all",
        dumpUid=None,
    )
    assert settle(task, {"g0", "g1"}, NOW)
    assert task.details == {"dumpUid": "20260102-030405990"}


def test_compaction_sizes_are_summed_over_the_nodes() -> None:
    refs = [
        _done("a", "g0", {"preCompactionSize": "1.5 KiB", "postCompactionSize": "512 B"}),
        _done("b", "g0", {"preCompactionSize": "2.5 KiB", "postCompactionSize": "1.01 KB"}),
    ]
    task = record(refs, policy="all")
    task.details = {}
    assert settle(task, {"g0"}, NOW)
    assert task.details == {"preCompactionSize": "4 KiB", "postCompactionSize": "1.486328125 KiB"}


@given(st.integers(min_value=0, max_value=2**50))
def test_rendered_sizes_read_back_within_their_rounding(size: int) -> None:
    text = human_size(size)
    back = parse_size(text)
    assert back is not None
    unit = 1024 ** (["B", "KiB", "MiB", "GiB", "TiB", "PiB"].index(text.split()[1]))
    assert abs(back - size) <= unit * 0.005 + 1


def test_task_sizes_are_written_as_meilisearch_writes_them() -> None:
    # The `byte_unit` crate's own examples, and the edges between units.
    sizes = [0, 512, 999, 1000, 1010, 1024, 10_000, 12_288, 5 * 10**6, 2**30]
    assert [unit_size(size) for size in sizes] == [
        "0 B",
        "512 B",
        "999 B",
        "1 KB",
        "1.01 KB",
        "1 KiB",
        "9.765625 KiB",
        "12 KiB",
        "4.76837158203125 MiB",
        "1 GiB",
    ]


@given(st.integers(min_value=0, max_value=2**50))
def test_task_sizes_read_back_exactly(size: int) -> None:
    assert parse_size(unit_size(size)) == size


def test_sizes_in_other_forms() -> None:
    assert [parse_size(t) for t in (12, "1.5 kB", "2 MB", "3 B", "x KiB", "7 parsecs")] == [
        12,
        1500,
        2_000_000,
        3,
        None,
        None,
    ]


def test_hinted_replicas_complete_a_group_with_one_live_success() -> None:
    # RF=2: one succeeded node task and the other replica's batch stored as a hint.
    task = record([ref("a", "g0", [0, 1], "succeeded"), ref("b", "g0", [0, 1], "hinted")])
    assert settle(task, {"g0"}, NOW) and task.status == "succeeded"
    # RF=3: one success and two hints is enough; one success, one hint, one failure is not.
    three = [ref("a", "g0", [0], "succeeded"), ref("b", "g0", [0], "hinted")]
    task = record([*three, ref("c", "g0", [0], "hinted")])
    assert settle(task, {"g0"}, NOW) and task.status == "succeeded"
    task = record([*three, ref("c", "g0", [0], "failed")])
    assert settle(task, {"g0"}, NOW) and task.status == "failed"
    # Hints alone never make a write.
    task = record([ref("a", "g0", [0], "hinted"), ref("b", "g0", [0], "hinted")])
    assert settle(task, {"g0"}, NOW) and task.status == "failed"
    # A hinted replica waits for no node: the task is terminal once the others are.
    task = record([ref("a", "g0", [0], "enqueued"), ref("b", "g0", [0], "hinted")])
    settle(task, {"g0"}, NOW)
    assert not task.finished


def test_a_held_task_waits_for_its_release_or_its_deadline() -> None:
    held = record([ref("a", "g0", [], "succeeded"), ref("b", "g0", [], "failed")], "all")
    held.extra[HOLD_KEY] = 1_000  # ms once the node tasks finished
    assert settle(held, {"g0"}, NOW)  # started, not finished
    assert held.status == "processing"
    assert held.extra[HOLD_KEY] == "2026-01-02T03:04:06.678901Z"
    assert not settle(held, {"g0"}, NOW)
    later = datetime(2026, 1, 2, 3, 4, 7, tzinfo=UTC)
    assert settle(held, {"g0"}, later)  # the owner never released it: the node tasks decide
    assert held.status == "failed"


def test_a_release_decides_the_outcome() -> None:
    ok = record([ref("a", "g0", [], "succeeded"), ref("b", "g0", [], "failed")], "all")
    ok.extra[HOLD_KEY] = 1_000
    release(ok, {"g0"}, NOW, None)
    assert (ok.status, ok.error, HOLD_KEY in ok.extra) == ("succeeded", None, False)
    rolled = record([ref("a", "g0", [], "succeeded"), ref("b", "g0", [], "failed")], "all")
    error = {"message": "m", "code": "miroir_settings_rolled_back", "type": "system", "link": "l"}
    release(rolled, {"g0"}, NOW, error)
    assert rolled.status == "failed" and rolled.error is not None
    assert rolled.error["code"] == "miroir_settings_rolled_back"
    assert [e["node"] for e in rolled.error["nodeErrors"]] == ["b"]

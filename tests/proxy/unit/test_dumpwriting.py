"""The V6 archive writer (`operations.dumpwriting`) against the test reader that checks
MEILI_DUMP.md's rules, the reader's own refusals, and the operation-task transitions."""

from __future__ import annotations

import gzip
import io
import tarfile
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from miroir_proxy.config import from_mapping
from miroir_proxy.dispatch import taskstatus
from miroir_proxy.operations.dumpexport import dumps_dir
from miroir_proxy.operations.dumpwriting import (
    ArchiveWriter,
    StagedDocuments,
    dump_key,
    dump_uid,
    jsonl,
)
from miroir_proxy.state.store import TaskRecord

from ..dumpcheck import read_v6_dump

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
METADATA = {"dumpVersion": "V6", "dbVersion": "1.13.0", "dumpDate": "2026-01-02T03:04:05.678Z"}


def test_a_dump_uid_is_the_utc_moment_to_the_millisecond() -> None:
    assert dump_uid(NOW) == "20260102-030405678"
    assert dump_uid(NOW.replace(microsecond=999)) == "20260102-030405000"


def test_a_node_key_becomes_a_dump_key_without_its_value() -> None:
    node = {
        "name": None,
        "description": "reads",
        "key": "abc",
        "uid": "7d5c8a56-3c5a-4a8e-9f43-53e2b3f0f0a1",
        "actions": ["search"],
        "indexes": ["books"],
        "expiresAt": None,
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:01Z",
    }
    assert dump_key(node) == {
        "description": "reads",
        "uid": "7d5c8a56-3c5a-4a8e-9f43-53e2b3f0f0a1",
        "actions": ["search"],
        "indexes": ["books"],
        "expires_at": None,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:01Z",
    }


def _skeleton(archive: ArchiveWriter, keys: bytes = b"") -> None:
    archive.add_json("metadata.json", METADATA)
    archive.add_bytes("keys.jsonl", keys)
    archive.directory("tasks")
    archive.add_bytes("tasks/queue.jsonl", b"")
    archive.directory("indexes")


def test_a_dump_without_indexes_is_the_minimal_valid_dump(tmp_path: Path) -> None:
    path = tmp_path / "x.dump"
    with ArchiveWriter(path) as archive:
        _skeleton(archive)
    parsed = read_v6_dump(path.read_bytes())
    assert parsed.indexes == {} and parsed.keys == [] and parsed.tasks == []
    assert parsed.entries[:2] == [".", "metadata.json"]
    assert "indexes" in parsed.entries


def test_staged_documents_are_appended_and_a_rewound_shard_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "x.dump"
    staged = StagedDocuments(tmp_path / "docs.jsonl")
    staged.mark()
    staged.write([{"id": 1, "t": "é"}, {"id": 2}])
    staged.mark()
    staged.write([{"id": 3}])
    staged.rewind()  # the second shard's source failed: read it again elsewhere
    staged.write([{"id": 4}])
    assert staged.count == 3
    with ArchiveWriter(path) as archive:
        _skeleton(archive)
        archive.directory("indexes/books")
        archive.add_json(
            "indexes/books/metadata.json",
            {"uid": "books", "primaryKey": "id", "createdAt": METADATA["dumpDate"]}
            | {"updatedAt": METADATA["dumpDate"]},
        )
        archive.add_json("indexes/books/settings.json", {})
        archive.add_file("indexes/books/documents.jsonl", staged.file)
    staged.close()
    assert not (tmp_path / "docs.jsonl").exists()
    books = read_v6_dump(path.read_bytes()).indexes["books"]
    assert books.documents == [{"id": 1, "t": "é"}, {"id": 2}, {"id": 4}]


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """A GNU tar of `(name, data)`; None data makes a directory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


GOOD: list[tuple[str, bytes | None]] = [
    (".", None),
    ("metadata.json", jsonl([METADATA]).strip()),
    ("keys.jsonl", b""),
    ("tasks/queue.jsonl", b""),
    ("indexes", None),
]


def test_the_reader_accepts_a_hand_made_minimal_dump() -> None:
    assert read_v6_dump(gzip.compress(_tar(GOOD))).indexes == {}


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param([e for e in GOOD if e[0] != "tasks/queue.jsonl"], id="no task queue"),
        pytest.param([e for e in GOOD if e[0] != "keys.jsonl"], id="no keys"),
        pytest.param(
            [*GOOD[:1], ("metadata.json", b'{"dumpVersion":"V5"}'), *GOOD[2:]], id="version"
        ),
        pytest.param(GOOD[1:], id="no ./ first"),
        pytest.param(
            [*GOOD, ("indexes/a/metadata.json", b'{"uid":"a","primaryKey":"id"}')],
            id="index without documents",
        ),
    ],
)
def test_the_reader_refuses_what_meilisearch_cannot_import(broken: Any) -> None:
    with pytest.raises((AssertionError, KeyError)):
        read_v6_dump(gzip.compress(_tar(broken)))


def test_the_reader_refuses_a_second_gzip_member() -> None:
    data = gzip.compress(_tar(GOOD))
    with pytest.raises(AssertionError, match="more than one gzip member"):
        read_v6_dump(data + gzip.compress(b"x"))


def _operation_task() -> TaskRecord:
    return TaskRecord(
        uid=7,
        index_uid=None,
        type="dumpCreation",
        enqueued_at=taskstatus.timestamp(NOW),
        details={"dumpUid": None},
        extra={taskstatus.OPERATION_TASK_KEY: True},
    )


def test_an_operation_task_moves_only_forward() -> None:
    record = _operation_task()
    assert taskstatus.is_operation_task(record)
    # A pod clock behind the store's never makes a task start before it was enqueued.
    assert taskstatus.start_operation_task(record, NOW - timedelta(seconds=1))
    assert (record.status, record.started_at) == ("processing", record.enqueued_at)
    assert not taskstatus.start_operation_task(record, NOW)
    later = NOW + timedelta(seconds=2)
    assert taskstatus.finish_operation_task(
        record, later, details={"dumpUid": "20260102-030405678"}
    )
    assert record.status == "succeeded" and record.error is None
    assert taskstatus.render(record)["duration"] == "PT2S"
    assert "_miroir_operation_task" not in taskstatus.render(record)
    assert not taskstatus.finish_operation_task(record, later, error={"code": "x"})
    assert record.status == "succeeded"


def test_an_operation_task_fails_with_its_error() -> None:
    record = _operation_task()
    error = {"message": "m", "code": "dump_process_failed", "type": "internal", "link": "l"}
    assert taskstatus.finish_operation_task(record, NOW, error=error)
    assert (record.status, record.error, record.details) == ("failed", error, {"dumpUid": None})
    assert record.started_at == record.finished_at == record.enqueued_at


def test_dumps_live_in_the_data_directory_or_with_redis_in_the_temporary_one() -> None:
    base: dict[str, Any] = {
        "replica_groups": [{"id": "g", "nodes": [{"id": "n", "url": "http://n:7700"}]}]
    }
    sqlite = from_mapping({**base, "state_path": "/var/lib/miroir/state.sqlite3"}, env={})
    assert dumps_dir(sqlite) == Path("/var/lib/miroir/dumps")
    redis = from_mapping({**base, "store": "redis://r:6379/0"}, env={})
    assert dumps_dir(redis) == Path(tempfile.gettempdir()) / "miroir-dumps"
    chosen = from_mapping({**base, "store": "redis://r:6379/0", "dumps": {"dir": "/data"}}, env={})
    assert dumps_dir(chosen) == Path("/data")

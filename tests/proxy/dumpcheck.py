"""A reader of Meilisearch V6 dumps for tests, checking the rules of MEILI_DUMP.md.

`read_v6_dump(data)` checks an archive against what Meilisearch's reader needs (not against
what Miroir's writer happens to do) and returns its contents; `cluster_contents(client)`
reads the same contents through a Miroir (or Meilisearch) client API; `assert_same_contents`
compares the two. A Miroir -> Miroir round trip test is: export from one cluster, import
the archive into a cluster of another shape, then
`assert_same_contents(read_v6_dump(archive), await cluster_contents(other))`.
"""

from __future__ import annotations

import io
import re
import tarfile
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

DUMP_FILE_NAME = re.compile(r"^[0-9]{8}-[0-9]{9}\.dump$")
INDEX_UID = re.compile(r"^[A-Za-z0-9_-]{1,400}$")
KEY_FIELDS = {"description", "name", "uid", "actions", "indexes", "expires_at"}
KEY_FIELDS |= {"created_at", "updated_at"}
TASK_REQUIRED = {"uid", "batchUid", "indexUid", "status", "type", "enqueuedAt"}
_GNU_MAGIC = b"ustar  \x00"
_BLOCK = 512


@dataclass
class DumpedIndex:
    metadata: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] | None = None
    documents: list[dict[str, Any]] | None = None


@dataclass
class V6Dump:
    metadata: dict[str, Any]
    keys: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    indexes: dict[str, DumpedIndex]  # by the uid in each index's metadata.json
    entries: list[str]  # in archive order


def _rfc3339(value: Any, what: str) -> datetime:
    assert isinstance(value, str), f"{what}: {value!r} is not an RFC 3339 string"
    # Meilisearch writes nanoseconds; Python parses at most microseconds.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value)
    moment = datetime.fromisoformat(trimmed)
    assert moment.tzinfo is not None, f"{what}: {value!r} has no offset"
    return moment


def _one_gzip_member(data: bytes) -> bytes:
    """The tar stream; Meilisearch decodes only the first gzip member, so there is one."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    tar = decoder.decompress(data) + decoder.flush()
    assert decoder.eof, "the gzip stream is truncated"
    assert decoder.unused_data == b"", "the archive has more than one gzip member"
    return tar


def _check_headers(tar: bytes) -> None:
    """GNU headers, `./` first. tarfile normalizes names, so the raw first header is read."""
    first = tar[:_BLOCK]
    assert first[:100].rstrip(b"\x00") == b"./", f"first entry {first[:100]!r}"
    assert first[257:265] == _GNU_MAGIC, f"not a GNU tar header: {first[257:265]!r}"


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    value = orjson.loads(raw)
    assert isinstance(value, dict), f"{what} is not a JSON object"
    return value


def _jsonl(raw: bytes, what: str) -> list[dict[str, Any]]:
    assert raw == b"" or raw.endswith(b"\n"), f"{what}: the last line has no newline"
    return [_json_object(line, f"a line of {what}") for line in raw.split(b"\n") if line]


def _check_key(key: dict[str, Any]) -> None:
    assert set(key) <= KEY_FIELDS, f"unknown key fields {set(key) - KEY_FIELDS}"
    assert "key" not in key
    uuid.UUID(key["uid"])
    assert isinstance(key["actions"], list) and all(isinstance(a, str) for a in key["actions"])
    assert isinstance(key["indexes"], list) and all(isinstance(i, str) for i in key["indexes"])
    for optional in ("description", "name"):
        assert optional not in key or isinstance(key[optional], str), key
    if key.get("expires_at") is not None:
        _rfc3339(key["expires_at"], "expires_at")
    _rfc3339(key["created_at"], "created_at")
    _rfc3339(key["updated_at"], "updated_at")


def _check_index(directory: str, index: DumpedIndex) -> None:
    meta = index.metadata
    assert set(meta) >= {"uid", "primaryKey", "createdAt", "updatedAt"}, meta
    assert isinstance(meta["uid"], str) and INDEX_UID.match(meta["uid"]), meta
    assert not meta["uid"].startswith(".meili"), "reserved index uid"
    assert meta["primaryKey"] is None or isinstance(meta["primaryKey"], str), meta
    _rfc3339(meta["createdAt"], "createdAt")
    _rfc3339(meta["updatedAt"], "updatedAt")
    assert index.settings is not None, f"{directory}: settings.json is missing"
    assert index.documents is not None, f"{directory}: documents.jsonl is missing"
    primary_key = meta["primaryKey"]
    if index.documents:
        # Any primary-key error aborts Meilisearch's import of the whole index.
        assert primary_key is not None, f"{directory}: documents without a primary key"
        for document in index.documents:
            value = document.get(primary_key)
            assert isinstance(value, str | int) and not isinstance(value, bool), document


def read_v6_dump(data: bytes) -> V6Dump:
    """The contents of a `.dump` archive, after checking MEILI_DUMP.md's rules."""
    tar_bytes = _one_gzip_member(data)
    _check_headers(tar_bytes)
    files: dict[str, bytes] = {}
    directories: set[str] = set()
    entries: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as archive:
        for member in archive:
            entries.append(member.name)
            if member.name != ".":
                assert not member.name.startswith("./"), member.name
            if member.isdir():
                directories.add(member.name.rstrip("/"))
                continue
            assert member.isfile(), f"{member.name}: not a regular file"
            extracted = archive.extractfile(member)
            assert extracted is not None
            files[member.name] = extracted.read()
    assert entries and entries[0] == "."
    metadata = _json_object(files.pop("metadata.json"), "metadata.json")
    assert metadata["dumpVersion"] == "V6", metadata
    assert isinstance(metadata["dbVersion"], str), metadata
    assert _rfc3339(metadata["dumpDate"], "dumpDate").utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    keys = _jsonl(files.pop("keys.jsonl"), "keys.jsonl")
    for key in keys:
        _check_key(key)
    tasks = _jsonl(files.pop("tasks/queue.jsonl"), "tasks/queue.jsonl")
    for task in tasks:
        assert set(task) >= TASK_REQUIRED, task
    assert "indexes" in directories or any(n.startswith("indexes/") for n in files), (
        "no indexes/ directory"
    )
    by_directory: dict[str, DumpedIndex] = {}
    for name, raw in files.items():
        parts = name.split("/")
        if parts[0] != "indexes":
            continue
        assert len(parts) == 3, f"unexpected entry {name}"
        index = by_directory.setdefault(parts[1], DumpedIndex())
        if parts[2] == "metadata.json":
            index.metadata = _json_object(raw, name)
        elif parts[2] == "settings.json":
            index.settings = _json_object(raw, name)
        elif parts[2] == "documents.jsonl":
            index.documents = _jsonl(raw, name)
    indexes: dict[str, DumpedIndex] = {}
    for directory, index in by_directory.items():
        _check_index(directory, index)
        uid = index.metadata["uid"]
        assert uid not in indexes, f"index {uid} twice"
        indexes[uid] = index
    return V6Dump(metadata, keys, tasks, indexes, entries)


# --- the same contents, read through an API -------------------------------------------


class Response(Protocol):
    status: int

    async def json(self) -> Any: ...


class Client(Protocol):
    def get(self, path: str, **kwargs: Any) -> Any: ...


async def _get(client: Client, path: str) -> Any:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return await response.json()


@dataclass
class ClusterContents:
    indexes: dict[str, DumpedIndex]
    keys: list[dict[str, Any]]


async def cluster_contents(client: Client, page: int = 1_000) -> ClusterContents:
    """Indexes (metadata, settings, every document) and keys, as a client sees them."""
    indexes: dict[str, DumpedIndex] = {}
    listed = await _get(client, "/indexes?limit=1000")
    for index in listed["results"]:
        uid = index["uid"]
        settings = await _get(client, f"/indexes/{uid}/settings")
        # A dump carries each document's embeddings: ask for them where there are some.
        vectors = "&retrieveVectors=true" if settings.get("embedders") else ""
        documents: list[dict[str, Any]] = []
        offset = 0
        while True:
            got = await _get(
                client, f"/indexes/{uid}/documents?offset={offset}&limit={page}{vectors}"
            )
            documents.extend(got["results"])
            offset += len(got["results"])
            if offset >= got["total"] or not got["results"]:
                break
        indexes[uid] = DumpedIndex(index, settings, documents)
    keys = (await _get(client, "/keys?limit=1000"))["results"]
    return ClusterContents(indexes, keys)


def by_primary_key(documents: list[dict[str, Any]], primary_key: str) -> dict[Any, Any]:
    found: dict[Any, Any] = {}
    for document in documents:
        key = document[primary_key]
        assert key not in found, f"document {key!r} twice"
        found[key] = document
    return found


def assert_same_contents(dump: V6Dump, cluster: ClusterContents, *, all_keys: bool = True) -> None:
    """The dump holds exactly the cluster's indexes, documents (each once), primary keys,
    settings and keys. Each node has default keys of its own (uids differ between nodes),
    and Miroir lists one node's: without `all_keys`, only the keys every node holds (made
    through Miroir) are compared, without their dates."""
    assert set(dump.indexes) == set(cluster.indexes)
    for uid, held in cluster.indexes.items():
        dumped = dump.indexes[uid]
        primary_key = held.metadata["primaryKey"]
        assert dumped.metadata["primaryKey"] == primary_key, uid
        assert dumped.documents is not None and held.documents is not None
        assert by_primary_key(dumped.documents, primary_key) == by_primary_key(
            held.documents, primary_key
        ), uid
        assert dumped.settings == held.settings, uid
    listed = _keys_by_uid(cluster.keys)
    dumped = {k["uid"]: k for k in dump.keys}
    if not all_keys:
        # ... and each node stamps its own dates on them.
        listed, dumped = _shared_keys(listed), _shared_keys(dumped)
    assert listed == dumped, (listed, dumped)


def _shared_keys(keys: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    dates = ("created_at", "updated_at")
    return {
        uid: {k: v for k, v in key.items() if k not in dates}
        for uid, key in keys.items()
        if not str(key.get("name", "")).startswith("Default ")
    }


def _keys_by_uid(keys: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """API keys (camelCase, with values) as a dump holds them."""
    out = {}
    for key in keys:
        dumped: dict[str, Any] = {
            f: key[f] for f in ("description", "name") if key.get(f) is not None
        }
        dumped.update(
            uid=key["uid"],
            actions=key["actions"],
            indexes=key["indexes"],
            expires_at=key["expiresAt"],
            created_at=key["createdAt"],
            updated_at=key["updatedAt"],
        )
        out[key["uid"]] = dumped
    return out

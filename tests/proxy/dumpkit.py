"""Meilisearch V6 dumps built from the documented format (../shared/MEILI_DUMP.md), with
the entries in whatever order a test asks for: a gzip stream wrapping a GNU tar, first
entry `./`, `indexes/<uid>/{metadata.json,documents.jsonl,settings.json}`, `keys.jsonl`,
`tasks/queue.jsonl`, and the top-level `metadata.json`."""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

DATE = "2025-02-04T10:22:31.331764736Z"


@dataclasses.dataclass
class DumpIndex:
    uid: str
    primary_key: str | None
    documents: Iterable[dict[str, Any]] | bytes
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


def key(uid: str, actions: Sequence[str], indexes: Sequence[str], name: str) -> dict[str, Any]:
    return {
        "description": f"{name} key",
        "name": name,
        "uid": uid,
        "actions": list(actions),
        "indexes": list(indexes),
        "expires_at": None,
        "created_at": DATE,
        "updated_at": DATE,
    }


def _jsonl(items: Iterable[dict[str, Any]] | bytes) -> Iterator[bytes]:
    if isinstance(items, bytes):
        yield items
        return
    for item in items:
        yield orjson.dumps(item) + b"\n"


def entries(
    indexes: Sequence[DumpIndex], keys: Sequence[dict[str, Any]], version: str = "V6"
) -> dict[str, Iterable[bytes]]:
    """Every entry of the dump by path (contents as pieces, so big ones stream)."""
    found: dict[str, Iterable[bytes]] = {
        "metadata.json": [
            orjson.dumps({"dumpVersion": version, "dbVersion": "1.13.0", "dumpDate": DATE})
        ],
        "keys.jsonl": [b"".join(orjson.dumps(k) + b"\n" for k in keys)],
        "tasks/queue.jsonl": [b""],
        "instance_uid.uuid": [b"9a3ac1b8-54f8-4d45-9a71-2a1b4a2c6b0e"],
    }
    for index in indexes:
        meta = {"uid": index.uid, "primaryKey": index.primary_key}
        meta |= {"createdAt": DATE, "updatedAt": DATE}
        found[f"indexes/{index.uid}/metadata.json"] = [orjson.dumps(meta)]
        found[f"indexes/{index.uid}/settings.json"] = [orjson.dumps(index.settings)]
        found[f"indexes/{index.uid}/documents.jsonl"] = _jsonl(index.documents)
    return found


def unhelpful_order(paths: Iterable[str]) -> list[str]:
    """Documents first, then settings, index metadata, keys, top-level metadata last."""

    def rank(path: str) -> tuple[int, str]:
        for position, suffix in enumerate(
            ("documents.jsonl", "settings.json", "metadata.json", "keys.jsonl")
        ):
            if path.endswith(suffix) and path != "metadata.json":
                return position, path
        return (9 if path == "metadata.json" else 5), path

    return sorted(paths, key=rank)


def write_dump(
    target: Path,
    indexes: Sequence[DumpIndex],
    keys: Sequence[dict[str, Any]] = (),
    *,
    version: str = "V6",
    order: Sequence[str] | None = None,
) -> Path:
    """Write the dump to `target`, entries in `order` (default: `unhelpful_order`); each
    entry's content is spooled through a temporary file so big dumps never sit in memory."""
    found = entries(indexes, keys, version)
    paths = list(order) if order is not None else unhelpful_order(found)
    with (
        gzip.open(target, "wb", compresslevel=6) as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.GNU_FORMAT) as archive,
    ):
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        archive.addfile(root)
        for path in paths:
            spooled = target.with_suffix(".entry")
            with spooled.open("wb") as out:
                for piece in found[path]:
                    out.write(piece)
            info = tarfile.TarInfo(path)
            info.size = spooled.stat().st_size
            with spooled.open("rb") as content:
                archive.addfile(info, content)
            spooled.unlink()
    return target


def dump_bytes(
    indexes: Sequence[DumpIndex],
    keys: Sequence[dict[str, Any]] = (),
    *,
    version: str = "V6",
    order: Sequence[str] | None = None,
) -> bytes:
    """A small dump in memory (unit tests)."""
    buffer = io.BytesIO()
    found = entries(indexes, keys, version)
    order = order or unhelpful_order(found)
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb") as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.GNU_FORMAT) as archive,
    ):
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        archive.addfile(root)
        for name in order:
            content = b"".join(found[name])
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()

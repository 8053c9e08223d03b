"""The Meilisearch V6 dump archive, written entry by entry (the format: MEILI_DUMP.md).

A dump is a gzip stream wrapping a GNU tar whose first entry is `./`; later paths carry no
`./` prefix. A tar header states its entry's size, so an index's `documents.jsonl` (of
unknown size until its last page is read) is staged in a file next to the archive and
appended once complete: neither the dump nor one index is ever held in memory. Every call
here is blocking file I/O and compression, meant to run in a worker thread.

The minimal dump Meilisearch imports: `metadata.json`, `keys.jsonl`, `tasks/queue.jsonl`,
an `indexes/` directory, and per index `metadata.json`, `settings.json` and
`documents.jsonl`. Miroir writes exactly that; its tasks are its own (integer uids over
node tasks) and are not carried over, so `tasks/queue.jsonl` is empty.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import orjson

DUMP_VERSION = "V6"
SUFFIX = ".dump"
# zlib's fastest level: on ~1 KB text documents level 6 (Meilisearch's) compressed at
# ~12 MB per CPU-second, level 1 at ~100, for a file ~15% larger; the proxy's CPU serves
# searches meanwhile.
COMPRESS_LEVEL = 1


def dump_uid(moment: datetime) -> str:
    """Meilisearch's dump uid, `YYYYMMDD-HHMMSSmmm` (UTC, milliseconds)."""
    return moment.strftime("%Y%m%d-%H%M%S") + f"{moment.microsecond // 1000:03d}"


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dump_key(node_key: Mapping[str, Any]) -> dict[str, Any]:
    """A key as a node lists it (camelCase, with its value) as a dump holds it: snake_case
    dates, no value (it follows from the uid and the master key), no null name or
    description (Meilisearch leaves them out)."""
    out: dict[str, Any] = {}
    for field in ("description", "name"):
        if node_key.get(field) is not None:
            out[field] = node_key[field]
    out["uid"] = node_key["uid"]
    out["actions"] = list(node_key.get("actions") or [])
    out["indexes"] = list(node_key.get("indexes") or [])
    out["expires_at"] = node_key.get("expiresAt")
    out["created_at"] = node_key.get("createdAt")
    out["updated_at"] = node_key.get("updatedAt")
    return out


def jsonl(items: Iterable[Any]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


class ArchiveWriter:
    """One `.dump` file being written; `with ArchiveWriter(path) as archive:` closes it."""

    def __init__(self, path: Path) -> None:
        self._mtime = int(time.time())
        self._file = path.open("wb")
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=COMPRESS_LEVEL)
        # Closed by `close()`, with the gzip stream and the file under it.
        self._tar = tarfile.open(  # noqa: SIM115
            fileobj=self._gzip, mode="w|", format=tarfile.GNU_FORMAT
        )
        self.directory(".")

    def _info(self, name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime = kind, mode, size, self._mtime
        return info

    def directory(self, name: str) -> None:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, 0o755))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._tar.addfile(self._info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))

    def add_json(self, name: str, value: Any) -> None:
        self.add_bytes(name, orjson.dumps(value))

    def add_file(self, name: str, source: IO[bytes]) -> None:
        """Append `source` (a staged file, read from its start) as entry `name`."""
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        self._tar.addfile(self._info(name, tarfile.REGTYPE, 0o644, size), source)

    def close(self) -> None:
        self._tar.close()
        self._gzip.close()
        self._file.flush()
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # Closed in order even on an error, or the tar stream would try again when
        # collected, on a closed file. The truncated archive is the caller's to delete.
        try:
            self.close()
        except (OSError, ValueError):
            self._file.close()


class StagedDocuments:
    """One index's `documents.jsonl` being written, page by page, to a staging file.

    `mark()` remembers where a shard starts, so a shard whose source dies mid-way is read
    again from another replica after `rewind()` (replicas may order a shard differently,
    so its pages cannot be resumed across them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("w+b")
        self.count = 0
        self._mark = (0, 0)

    def write(self, documents: list[dict[str, Any]]) -> None:
        self.file.write(jsonl(documents))
        self.count += len(documents)

    def mark(self) -> None:
        self._mark = (self.file.tell(), self.count)

    def rewind(self) -> None:
        position, self.count = self._mark
        self.file.seek(position)
        self.file.truncate()

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)

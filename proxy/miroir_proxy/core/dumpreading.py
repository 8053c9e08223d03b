"""Reading a Meilisearch V6 dump (MEILI_DUMP.md) as a stream of bytes, without I/O.

A dump is a gzip stream (only its first member counts, as in Meilisearch) wrapping a tar
archive. `ArchiveReader` is fed the compressed bytes in pieces of any size and hands each
entry's content to the consumer its `open` callback chose, so neither the archive nor an
entry is ever held whole: memory stays bounded by the largest piece fed plus one small
entry. Two decisions a newcomer would otherwise get wrong:

- Entry order is not guaranteed (it follows `readdir`): an index's `documents.jsonl` may
  come before its `metadata.json`. Everything is keyed by the index *directory* while
  reading and resolved to the uid from `metadata.json` at the end (`DumpScan.summary`), and
  the documents are read in a second pass over the same bytes (`document_lines`).
- Positions inside `documents.jsonl` are physical line numbers (blank lines count), so a
  range `[start, end)` names the same documents in every pass.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import orjson

from .errors import MiroirError

BLOCK = 512
# Output of one zlib call, so a highly compressed piece never expands all at once.
INFLATE_STEP = 1 << 20
# The most a metadata, settings or keys entry (or a first document) may take in memory.
MAX_SMALL_ENTRY = 64 << 20
SUPPORTED_VERSION = "V6"
_INDEX_ENTRY = re.compile(r"^indexes/([^/]+)/(metadata\.json|settings\.json|documents\.jsonl)$")


def invalid_dump(message: str) -> MiroirError:
    return MiroirError("miroir_invalid_dump", message)


class Consumer(Protocol):
    def feed(self, data: bytes) -> None: ...

    def close(self) -> None: ...


Opener = Callable[[str, int], Consumer | None]


class ArchiveReader:
    """gzip -> tar, pushed. `open(name, size)` returns the consumer of the entry's content,
    or None to skip it; `close()` raises `miroir_invalid_dump` on a truncated archive."""

    def __init__(self, open_entry: Opener) -> None:
        self._open = open_entry
        self._inflate = zlib.decompressobj(wbits=31)
        self._gzip_done = False
        self._buffer = bytearray()  # a header (or a long-name entry) being assembled
        self._consumer: Consumer | None = None
        self._remaining = 0  # content bytes of the current entry still to come
        self._padding = 0  # bytes after the content up to the next block
        self._special: str | None = None  # "L" (GNU long name) or "x" (pax) being read
        self._next_name: str | None = None
        self._ended = False  # the end-of-archive block was seen
        self.compressed_bytes = 0

    @property
    def finished(self) -> bool:
        return self._ended

    def feed(self, data: bytes) -> None:
        self.compressed_bytes += len(data)
        if self._gzip_done:
            return
        try:
            self._tar(self._inflate.decompress(data, INFLATE_STEP))
            while self._inflate.unconsumed_tail:
                self._tar(self._inflate.decompress(self._inflate.unconsumed_tail, INFLATE_STEP))
        except zlib.error as e:
            raise invalid_dump(f"The dump is not a valid gzip stream: {e}.") from e
        # Later gzip members are ignored, as Meilisearch does; the end of the first one is
        # checked (length and CRC), so a dump cut anywhere is refused.
        self._gzip_done = self._inflate.eof

    def close(self) -> None:
        if not self._gzip_done:
            raise invalid_dump("The dump is truncated: its gzip stream ends early.")
        if self._ended:
            return
        # Meilisearch's and Python's tar readers accept an archive without the end blocks,
        # but not one cut inside an entry.
        if self._buffer or self._remaining or self._padding or self._special:
            raise invalid_dump("The dump is truncated: its tar archive ends inside an entry.")
        self._ended = True

    # --- tar ------------------------------------------------------------------------

    def _tar(self, data: bytes) -> None:
        if self._ended:
            return  # the zero blocks after the end of the archive
        view = memoryview(data)
        position = 0
        while position < len(view) and not self._ended:
            if self._remaining:
                take = min(self._remaining, len(view) - position)
                piece = bytes(view[position : position + take])
                if self._special is not None:
                    self._buffer += piece
                elif self._consumer is not None:
                    self._consumer.feed(piece)
                self._remaining -= take
                position += take
                if not self._remaining:
                    self._entry_done()
            elif self._padding:
                take = min(self._padding, len(view) - position)
                self._padding -= take
                position += take
            else:
                take = min(BLOCK - len(self._buffer), len(view) - position)
                self._buffer += view[position : position + take]
                position += take
                if len(self._buffer) == BLOCK:
                    header = bytes(self._buffer)
                    self._buffer.clear()
                    self._header(header)

    def _header(self, header: bytes) -> None:
        if header == bytes(BLOCK):
            self._ended = True
            return
        stored = _number(header[148:156])
        computed = sum(header[:148]) + 32 * 8 + sum(header[156:])
        if stored != computed:
            raise invalid_dump("The dump is corrupt: a tar header's checksum does not match.")
        size = _number(header[124:136])
        flag = chr(header[156]) if header[156] else "0"
        name = self._next_name or _header_name(header)
        self._next_name = None
        self._remaining = size
        self._padding = -size % BLOCK
        if flag in ("L", "x"):
            if size > MAX_SMALL_ENTRY:
                raise invalid_dump("The dump is corrupt: a tar long-name entry is too large.")
            self._special = flag
        elif flag in ("0", "7"):
            self._consumer = self._open(_normalized(name), size)
        else:
            self._consumer = None  # directories, links, global pax headers: nothing to read
        if not size:
            self._entry_done()

    def _entry_done(self) -> None:
        if self._special == "L":
            self._next_name = bytes(self._buffer).rstrip(b"\0").decode("utf-8", "replace")
        elif self._special == "x":
            self._next_name = _pax_path(bytes(self._buffer)) or self._next_name
        self._buffer.clear()
        self._special = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()


def _number(field: bytes) -> int:
    if field[0] & 0x80:  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.rstrip(b"\0 ").lstrip(b" ").decode("ascii", "replace")
    try:
        return int(text or "0", 8)
    except ValueError as e:
        raise invalid_dump("The dump is corrupt: a tar header holds no valid number.") from e


def _header_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0":  # POSIX: the prefix field extends the name
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "replace")


def _pax_path(records: bytes) -> str | None:
    path = None
    while records:
        length_text = records.partition(b" ")[0]
        try:
            length = int(length_text)
        except ValueError:
            return path
        record = records[len(length_text) + 1 : length].rstrip(b"\n")
        key, _, value = record.partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "replace")
        records = records[length:] if length > 0 else b""
    return path


def _normalized(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


# --- the V6 layout ------------------------------------------------------------------


class _Bytes:
    """A small entry, kept whole up to `MAX_SMALL_ENTRY`."""

    def __init__(self, name: str, done: Callable[[bytes], None]) -> None:
        self._name = name
        self._parts: list[bytes] = []
        self._size = 0
        self._done = done

    def feed(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_SMALL_ENTRY:
            raise invalid_dump(f"The dump's `{self._name}` is larger than Miroir reads.")
        self._parts.append(data)

    def close(self) -> None:
        self._done(b"".join(self._parts))


class _LineCounter:
    """Counts the lines of a `documents.jsonl` and keeps its first non-blank line."""

    def __init__(self) -> None:
        self.lines = 0
        self.first: bytes | None = None
        self._head = bytearray()
        self._last = b"\n"

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.lines += data.count(b"\n")
        self._last = data[-1:]
        if self.first is None:
            self._head += data
            for line in bytes(self._head).split(b"\n")[:-1]:
                if line.strip():
                    self.first = line
                    break
            else:
                if len(self._head) > MAX_SMALL_ENTRY:
                    raise invalid_dump("The dump holds a document larger than Miroir reads.")
                return
            self._head.clear()

    def close(self) -> None:
        if self._last != b"\n":
            self.lines += 1
        if self.first is None and self._head.strip():
            self.first = bytes(self._head)


@dataclasses.dataclass(frozen=True, slots=True)
class DumpIndex:
    directory: str
    uid: str
    primary_key: str | None
    settings: dict[str, Any]
    lines: int  # physical lines of documents.jsonl (the documents, blank lines aside)
    first_document: dict[str, Any] | None
    created_at: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class DumpSummary:
    db_version: str
    dump_date: str
    indexes: tuple[DumpIndex, ...]
    keys: tuple[dict[str, Any], ...]

    @property
    def documents(self) -> int:
        return sum(index.lines for index in self.indexes)


class DumpScan:
    """The first pass: everything but the documents, which are only counted."""

    def __init__(self) -> None:
        self._metadata: dict[str, Any] | None = None
        self._keys: list[dict[str, Any]] = []
        self._index_meta: dict[str, dict[str, Any]] = {}
        self._settings: dict[str, dict[str, Any]] = {}
        self._documents: dict[str, _LineCounter] = {}
        self.reader = ArchiveReader(self._open)

    def feed(self, data: bytes) -> None:
        self.reader.feed(data)

    def _open(self, name: str, size: int) -> Consumer | None:
        if name == "metadata.json":
            return _Bytes(name, self._take_metadata)
        if name == "keys.jsonl":
            return _Bytes(name, self._take_keys)
        found = _INDEX_ENTRY.match(name)
        if found is None:
            return None  # tasks, batches, features, network, webhooks: not imported
        directory, file = found.groups()
        if file == "documents.jsonl":
            counter = self._documents[directory] = _LineCounter()
            return counter
        target = self._index_meta if file == "metadata.json" else self._settings
        return _Bytes(name, lambda raw: target.__setitem__(directory, _object(name, raw)))

    def _take_metadata(self, raw: bytes) -> None:
        self._metadata = _object("metadata.json", raw)

    def _take_keys(self, raw: bytes) -> None:
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if line.strip():
                self._keys.append(_object(f"keys.jsonl line {number}", line))

    def summary(self) -> DumpSummary:
        """Close the archive and check the layout; `miroir_invalid_dump` says what is wrong."""
        self.reader.close()
        metadata = self._metadata
        if metadata is None:
            raise invalid_dump("The dump has no `metadata.json`: it is not a Meilisearch dump.")
        version = metadata.get("dumpVersion")
        if version != SUPPORTED_VERSION:
            raise invalid_dump(
                f"The dump version `{version}` is not supported: Miroir imports "
                f"`{SUPPORTED_VERSION}` dumps (Meilisearch 1.0 and later)."
            )
        indexes = []
        for directory in sorted({*self._index_meta, *self._settings, *self._documents}):
            meta = self._index_meta.get(directory)
            if meta is None:
                raise invalid_dump(f"The dump's index `{directory}` has no `metadata.json`.")
            indexes.append(self._index(directory, meta))
        uids = [index.uid for index in indexes]
        if len(set(uids)) != len(uids):
            raise invalid_dump("The dump holds two indexes with the same uid.")
        return DumpSummary(
            db_version=str(metadata.get("dbVersion", "")),
            dump_date=str(metadata.get("dumpDate", "")),
            indexes=tuple(indexes),
            keys=tuple(self._keys),
        )

    def _index(self, directory: str, meta: dict[str, Any]) -> DumpIndex:
        uid, primary_key = meta.get("uid"), meta.get("primaryKey")
        if not isinstance(uid, str) or not uid:
            raise invalid_dump(f"The dump's index `{directory}` has no valid `uid`.")
        if primary_key is not None and not isinstance(primary_key, str):
            raise invalid_dump(f"The dump's index `{uid}` has an invalid `primaryKey`.")
        counter = self._documents.get(directory)
        first = None
        if counter is not None and counter.first is not None:
            first = _object(f"the first document of index `{uid}`", counter.first)
        created = meta.get("createdAt")
        return DumpIndex(
            directory=directory,
            uid=uid,
            primary_key=primary_key,
            settings=self._settings.get(directory, {}),
            lines=counter.lines if counter is not None else 0,
            first_document=first,
            created_at=created if isinstance(created, str) else None,
        )


def _object(what: str, raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise invalid_dump(f"The dump's {what} is not valid JSON: {e}.") from e
    if not isinstance(value, dict):
        raise invalid_dump(f"The dump's {what} is not a JSON object.")
    return value


# --- the second pass: one index's documents -------------------------------------------


class _LineRange:
    """The lines `[start, end)` of one entry, collected as they stream past."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.line = 0  # number of the line the next byte belongs to
        self.ready: list[tuple[int, bytes]] = []
        self.done = False
        self._partial = bytearray()

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        newlines = data.count(b"\n")
        if self.line + newlines < self.start:
            self.line += newlines  # wholly before the range: counted, never split
            return
        pieces = data.split(b"\n")
        for piece in pieces[:-1]:
            if self.start <= self.line < self.end:
                self._partial += piece
                self.ready.append((self.line, bytes(self._partial)))
            self._partial.clear()
            self.line += 1
            if self.line >= self.end:
                self.done = True
                return
        if self.start <= self.line < self.end:
            self._partial += pieces[-1]

    def close(self) -> None:
        if not self.done and self._partial and self.start <= self.line < self.end:
            self.ready.append((self.line, bytes(self._partial)))
        self._partial.clear()
        self.done = True


def document_lines(
    read: Callable[[int], bytes],
    directory: str,
    start: int,
    end: int,
    batch: int,
    piece_bytes: int = 1 << 16,
) -> Iterator[list[tuple[int, bytes]]]:
    """Batches of `(line number, line)` of `indexes/<directory>/documents.jsonl`, lines
    `[start, end)`, from a dump read with `read(n)` from its first byte. Reading stops
    once the range is passed."""
    target = f"indexes/{directory}/documents.jsonl"
    lines = _LineRange(start, end)
    reader = ArchiveReader(lambda name, size: lines if name == target else None)
    while not lines.done:
        piece = read(piece_bytes)
        if not piece:
            reader.close()
            break
        reader.feed(piece)
        while len(lines.ready) >= batch:
            ready, lines.ready = lines.ready[:batch], lines.ready[batch:]
            yield ready
    if lines.ready:
        yield lines.ready

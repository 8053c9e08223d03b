"""The streaming dump reader (`core.dumpreading`) on dumps built from the documented format:
whatever the entry order and however the bytes are cut, the summary and the documents are
the same; corrupt, truncated and unknown-version dumps are refused with `miroir_invalid_dump`."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from miroir_proxy.core.dumpreading import DumpScan, DumpSummary, document_lines
from miroir_proxy.core.errors import MiroirError

from ..dumpkit import DumpIndex, dump_bytes, entries, key

MOVIES = [{"id": i, "title": f"movie {i}", "genre": ["a", "b"][i % 2]} for i in range(57)]
BOOKS = [{"isbn": f"b-{i}", "pages": i} for i in range(23)]
SETTINGS = {"filterableAttributes": ["genre"], "distinctAttribute": None, "searchCutoffMs": None}
INDEXES = [
    DumpIndex("movies", "id", MOVIES, SETTINGS),
    DumpIndex("books", None, BOOKS),
]
KEYS = [key("6062abda-a5aa-4414-ac91-ecd7944c0f8d", ["search"], ["movies"], "search")]


def scan(data: bytes, piece: int = 1000) -> DumpSummary:
    reader = DumpScan()
    for start in range(0, len(data), piece):
        reader.feed(data[start : start + piece])
    return reader.summary()


def lines_of(data: bytes, directory: str, start: int, end: int, batch: int = 10) -> list[bytes]:
    stream = io.BytesIO(data)
    return [
        line
        for chunk in document_lines(stream.read, directory, start, end, batch, piece_bytes=333)
        for _, line in chunk
    ]


def test_the_summary_has_indexes_settings_keys_and_counts() -> None:
    summary = scan(dump_bytes(INDEXES, KEYS))
    by_uid = {index.uid: index for index in summary.indexes}
    assert by_uid["movies"].primary_key == "id"
    assert by_uid["movies"].settings == SETTINGS
    assert by_uid["movies"].lines == len(MOVIES)
    assert by_uid["movies"].first_document == MOVIES[0]
    assert by_uid["books"].primary_key is None
    assert by_uid["books"].first_document == BOOKS[0]
    assert summary.keys == tuple(KEYS)
    assert summary.documents == len(MOVIES) + len(BOOKS)
    assert summary.db_version == "1.13.0"


@given(
    order=st.permutations(sorted(entries(INDEXES, KEYS))),
    piece=st.integers(min_value=1, max_value=5000),
)
def test_entry_order_and_piece_size_change_nothing(order: list[str], piece: int) -> None:
    assert scan(dump_bytes(INDEXES, KEYS, order=order), piece) == scan(dump_bytes(INDEXES, KEYS))


@given(st.integers(min_value=0, max_value=len(MOVIES)), st.integers(min_value=1, max_value=30))
def test_line_ranges_cut_the_documents_without_gap_or_overlap(cut: int, batch: int) -> None:
    data = dump_bytes(INDEXES, KEYS)
    first = lines_of(data, "movies", 0, cut, batch)
    rest = lines_of(data, "movies", cut, len(MOVIES), batch)
    assert [orjson.loads(line) for line in first + rest] == MOVIES


def test_a_uid_comes_from_the_index_metadata_not_the_directory() -> None:
    data = dump_bytes([DumpIndex("movies", "id", MOVIES[:3])])
    renamed = _retar(data, lambda name: name.replace("indexes/movies/", "indexes/dir-x/"))
    (index,) = scan(renamed).indexes
    assert (index.uid, index.directory, index.lines) == ("movies", "dir-x", 3)


def test_long_entry_names_use_gnu_long_name_entries() -> None:
    uid = "u" * 150
    (index,) = scan(dump_bytes([DumpIndex(uid, "id", MOVIES[:5])])).indexes
    assert (index.uid, index.lines) == (uid, 5)


def test_an_unknown_dump_version_is_refused() -> None:
    with pytest.raises(MiroirError) as raised:
        scan(dump_bytes(INDEXES, KEYS, version="V7"))
    assert raised.value.code == "miroir_invalid_dump"
    assert "`V7`" in raised.value.message


@pytest.mark.parametrize("cut", [10, 200, 700, -30, -9, -1])
def test_a_truncated_dump_is_refused(cut: int) -> None:
    data = dump_bytes(INDEXES, KEYS)
    with pytest.raises(MiroirError) as raised:
        scan(data[:cut])
    assert raised.value.code == "miroir_invalid_dump"
    assert "truncated" in raised.value.message


def test_corrupt_bytes_are_refused() -> None:
    data = bytearray(dump_bytes(INDEXES, KEYS))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(MiroirError) as raised:
        scan(bytes(data))
    assert raised.value.code == "miroir_invalid_dump"


def test_something_not_gzip_is_refused() -> None:
    with pytest.raises(MiroirError) as raised:
        scan(b'{"dumpVersion": "V6"}' * 100)
    assert raised.value.code == "miroir_invalid_dump"
    assert "gzip" in raised.value.message


def test_an_index_without_metadata_is_refused() -> None:
    found = entries(INDEXES, KEYS)
    order = [name for name in found if name != "indexes/books/metadata.json"]
    with pytest.raises(MiroirError) as raised:
        scan(dump_bytes(INDEXES, KEYS, order=order))
    assert "`books` has no `metadata.json`" in raised.value.message


def _retar(data: bytes, rename: Callable[[str], str]) -> bytes:
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as source,
        gzip.GzipFile(fileobj=out, mode="wb") as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.GNU_FORMAT) as target,
    ):
        for member in source.getmembers():
            content = source.extractfile(member) if member.isfile() else None
            member.name = rename(member.name)
            target.addfile(member, content)
    return out.getvalue()

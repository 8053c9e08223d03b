"""Documents through the official SDK: adds (JSON, NDJSON, CSV), primary-key inference, reads
(one, list, fetch with fields/filter/ids/offset/limit), replace vs update, and deletions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import meilisearch
import pytest
from meilisearch.errors import MeilisearchApiError
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

Wait = Callable[[TaskInfo | int], Task]
MakeIndex = Callable[..., Index]

BOOKS: list[dict[str, Any]] = [
    {"id": 1, "title": "Dune", "genre": "scifi", "year": 1965},
    {"id": 2, "title": "Emma", "genre": "romance", "year": 1815},
    {"id": 3, "title": "Hyperion", "genre": "scifi", "year": 1989},
    {"id": 4, "title": "Ulysses", "genre": "classic", "year": 1922},
    {"id": 5, "title": "Solaris", "genre": "scifi", "year": 1961},
]


def _ids(documents: Any) -> list[Any]:
    return sorted(dict(doc)["id"] for doc in documents)


def test_add_with_explicit_primary_key(client: meilisearch.Client, wait_task: Wait) -> None:
    index = client.index("books")
    info = index.add_documents(
        [{"isbn": "978-0441", "ref": 7, "title": "Dune"}], primary_key="isbn"
    )
    assert isinstance(info.task_uid, int)
    assert info.type == "documentAdditionOrUpdate"
    task = client.wait_for_task(info.task_uid)
    assert task.uid == info.task_uid
    assert task.status == "succeeded"
    assert task.details == {"receivedDocuments": 1, "indexedDocuments": 1}
    assert client.get_index("books").primary_key == "isbn"
    assert dict(index.get_document("978-0441")) == {
        "isbn": "978-0441",
        "ref": 7,
        "title": "Dune",
    }


def test_add_infers_the_primary_key_from_the_first_document(
    client: meilisearch.Client, wait_task: Wait
) -> None:
    index = client.index("books")
    wait_task(index.add_documents([{"title": "Dune", "book_id": 12}]))
    assert client.get_index("books").primary_key == "book_id"
    assert dict(index.get_document(12))["title"] == "Dune"


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"title": "Dune"}, "index_primary_key_no_candidate_found"),
        ({"id": 1, "book_id": 2}, "index_primary_key_multiple_candidates_found"),
    ],
)
def test_primary_key_inference_failures(
    client: meilisearch.Client, document: dict[str, Any], code: str
) -> None:
    task = client.wait_for_task(client.index("books").add_documents([document]).task_uid)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error["code"] == code
    assert task.details == {"receivedDocuments": 1, "indexedDocuments": 0}


def test_invalid_document_id_fails_the_task(client: meilisearch.Client, wait_task: Wait) -> None:
    wait_task(client.create_index("books", {"primaryKey": "id"}))
    task = client.wait_for_task(
        client.index("books").add_documents([{"id": "a b&c", "title": "x"}]).task_uid
    )
    assert task.status == "failed"
    assert task.error is not None
    assert task.error["code"] == "invalid_document_id"


def test_get_one_document_with_fields(make_index: MakeIndex) -> None:
    index = make_index("books", BOOKS)
    assert dict(index.get_document(3)) == BOOKS[2]
    assert dict(index.get_document(3, {"fields": ["title", "year"]})) == {
        "title": "Hyperion",
        "year": 1989,
    }


def test_get_documents_offset_limit_and_fields(make_index: MakeIndex) -> None:
    index = make_index("books", BOOKS)
    everything = index.get_documents()
    assert everything.total == 5
    assert everything.offset == 0
    assert everything.limit == 20
    assert _ids(everything.results) == [1, 2, 3, 4, 5]

    first = index.get_documents({"limit": 2})
    rest = index.get_documents({"offset": 2, "limit": 10})
    assert len(first.results) == 2
    assert first.total == 5
    assert _ids(first.results + rest.results) == [1, 2, 3, 4, 5]

    slim = index.get_documents({"fields": ["title"], "limit": 1})
    assert [dict(doc) for doc in slim.results] == [{"title": dict(first.results[0])["title"]}]


def test_get_documents_with_filter_and_ids(make_index: MakeIndex) -> None:
    index = make_index("books", BOOKS, settings={"filterableAttributes": ["genre", "year"]})
    scifi = index.get_documents({"filter": "genre = scifi AND year > 1962"})
    assert _ids(scifi.results) == [1, 3]
    assert scifi.total == 2

    chosen = index.get_documents({"ids": ["2", "4"]})
    assert _ids(chosen.results) == [2, 4]

    raw = index.http.get("indexes/books/documents?limit=2&offset=1&fields=id")
    assert raw["total"] == 5
    assert raw["limit"] == 2
    assert raw["offset"] == 1
    assert all(set(doc) == {"id"} for doc in raw["results"])


def test_get_documents_sorted(make_index: MakeIndex) -> None:
    index = make_index("books", BOOKS, settings={"sortableAttributes": ["year"]})
    newest_first = index.get_documents({"sort": ["year:desc"], "fields": ["year"]})
    assert [dict(doc)["year"] for doc in newest_first.results] == [1989, 1965, 1961, 1922, 1815]


def test_post_replaces_and_put_merges(make_index: MakeIndex, wait_task: Wait) -> None:
    index = make_index("books", BOOKS)
    wait_task(index.add_documents([{"id": 1, "title": "Dune Messiah"}]))
    assert dict(index.get_document(1)) == {"id": 1, "title": "Dune Messiah"}

    wait_task(index.update_documents([{"id": 2, "pages": 474}]))
    assert dict(index.get_document(2)) == {**BOOKS[1], "pages": 474}


def test_delete_one_batch_filter_and_all(
    client: meilisearch.Client, make_index: MakeIndex, wait_task: Wait
) -> None:
    index = make_index("books", BOOKS, settings={"filterableAttributes": ["genre"]})

    done = wait_task(index.delete_document(1))
    assert done.type == "documentDeletion"
    assert done.details is not None
    assert done.details["deletedDocuments"] == 1
    with pytest.raises(MeilisearchApiError) as err:
        index.get_document(1)
    assert err.value.code == "document_not_found"

    with pytest.warns(DeprecationWarning, match="depreciated"):
        batch = index.delete_documents(["2", "4"])
    done = wait_task(batch)
    assert done.details == {"providedIds": 2, "deletedDocuments": 2, "originalFilter": None}
    assert _ids(index.get_documents().results) == [3, 5]

    done = wait_task(index.delete_documents(filter="genre = scifi"))
    assert done.details == {
        "providedIds": 0,
        "deletedDocuments": 2,
        "originalFilter": '"genre = scifi"',
    }
    assert index.get_documents().total == 0

    wait_task(index.add_documents(BOOKS))
    done = wait_task(index.delete_all_documents())
    assert done.type == "documentDeletion"
    assert done.details == {"deletedDocuments": 5}
    assert index.get_stats().number_of_documents == 0
    assert client.get_index("books").primary_key == "id"


def test_ndjson_and_csv_adds(make_index: MakeIndex, wait_task: Wait) -> None:
    index = make_index("books")
    ndjson = b'{"id": 10, "title": "Dune"}\n{"id": 11, "title": "Emma", "year": 1815}\n'
    done = wait_task(index.add_documents_ndjson(ndjson))
    assert done.details == {"receivedDocuments": 2, "indexedDocuments": 2}
    assert dict(index.get_document(11)) == {"id": 11, "title": "Emma", "year": 1815}

    csv = b'id,title,pages:number\n20,"Ulysses, annotated",730\n21,Solaris,204\n'
    done = wait_task(index.add_documents_csv(csv))
    assert done.details == {"receivedDocuments": 2, "indexedDocuments": 2}
    assert dict(index.get_document(20)) == {
        "id": "20",
        "title": "Ulysses, annotated",
        "pages": 730,
    }

    semicolons = b"id;title\n30;Emma\n"
    wait_task(index.add_documents_csv(semicolons, csv_delimiter=";"))
    assert dict(index.get_document(30)) == {"id": "30", "title": "Emma"}
    assert index.get_documents().total == 5

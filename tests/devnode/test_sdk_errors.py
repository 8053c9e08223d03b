"""Error objects for the common failures: HTTP status, `code`, `type`, `link` and, where
Meilisearch's wording is part of the contract, the message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import meilisearch
import pytest
import requests
from meilisearch.errors import MeilisearchApiError
from meilisearch.index import Index

MakeIndex = Callable[..., Index]
ApiCall = Callable[..., requests.Response]

LINK = "https://docs.meilisearch.com/errors#"


@pytest.fixture
def books(make_index: MakeIndex) -> Index:
    return make_index("books", [{"id": 1, "title": "Dune", "genre": "scifi"}])


# (name, method, path, request kwargs, status, code, type, exact message or None)
CASES: list[tuple[str, str, str, dict[str, Any], int, str, str, str | None]] = [
    ("index", "GET", "/indexes/nope", {}, 404, "index_not_found", "invalid_request",
     "Index `nope` not found."),
    ("document", "GET", "/indexes/books/documents/99", {}, 404, "document_not_found",
     "invalid_request", "Document `99` not found."),
    ("task", "GET", "/tasks/999999", {}, 404, "task_not_found", "invalid_request",
     "Task `999999` not found."),
    ("filter", "POST", "/indexes/books/search", {"json": {"filter": "genre = x"}}, 400,
     "invalid_search_filter", "invalid_request",
     "Index `books`: Attribute `genre` is not filterable. This index does not have configured "
     "filterable attributes.\n1:6 genre = x"),
    ("documents-filter", "POST", "/indexes/books/documents/fetch",
     {"json": {"filter": "genre = x"}}, 400, "invalid_document_filter", "invalid_request",
     "Attribute `genre` is not filterable. This index does not have configured filterable "
     "attributes.\n1:6 genre = x"),
    ("filter-syntax", "POST", "/indexes/books/search", {"json": {"filter": "title = "}}, 400,
     "invalid_search_filter", "invalid_request", None),
    ("sort", "POST", "/indexes/books/search", {"json": {"sort": ["title:asc"]}}, 400,
     "invalid_search_sort", "invalid_request", None),
    ("limit", "POST", "/indexes/books/search", {"json": {"limit": "ten"}}, 400,
     "invalid_search_limit", "invalid_request", None),
    ("unknown-field", "POST", "/indexes/books/search", {"json": {"query": "x"}}, 400,
     "bad_request", "invalid_request", None),
    ("index-uid", "POST", "/indexes", {"json": {"uid": "bad uid!"}}, 400, "invalid_index_uid",
     "invalid_request", None),
    ("index-uid-missing", "POST", "/indexes", {"json": {"primaryKey": "id"}}, 400,
     "missing_index_uid", "invalid_request", None),
    ("missing-payload", "POST", "/indexes/books/documents",
     {"data": b"", "headers": {"Content-Type": "application/json"}}, 400, "missing_payload",
     "invalid_request", "A json payload is missing."),
    ("malformed-payload", "POST", "/indexes/books/documents",
     {"data": b"[{not json", "headers": {"Content-Type": "application/json"}}, 400,
     "malformed_payload", "invalid_request", None),
    ("missing-ndjson", "POST", "/indexes/books/documents",
     {"data": b"", "headers": {"Content-Type": "application/x-ndjson"}}, 400, "missing_payload",
     "invalid_request", "A ndjson payload is missing."),
    ("malformed-ndjson", "POST", "/indexes/books/documents",
     {"data": b'{"id": 1}\n{"id": ', "headers": {"Content-Type": "application/x-ndjson"}}, 400,
     "malformed_payload", "invalid_request", None),
    ("missing-csv", "POST", "/indexes/books/documents",
     {"data": b"", "headers": {"Content-Type": "text/csv"}}, 400, "missing_payload",
     "invalid_request", "A csv payload is missing."),
    ("missing-content-type", "POST", "/indexes/books/documents", {"data": b"[]"}, 415,
     "missing_content_type", "invalid_request", None),
    ("invalid-content-type", "POST", "/indexes", {"data": b"{}",
     "headers": {"Content-Type": "text/plain"}}, 415, "invalid_content_type", "invalid_request",
     "The Content-Type `text/plain` is invalid. Accepted values for the Content-Type header "
     "are: `application/json`"),
    ("documents-content-type", "POST", "/indexes/books/documents", {"data": b"<a/>",
     "headers": {"Content-Type": "application/xml"}}, 415, "invalid_content_type",
     "invalid_request", None),
    ("wrong-key", "GET", "/indexes", {"key": "wrong"}, 403, "invalid_api_key", "auth",
     "The provided API key is invalid."),
    ("no-key", "GET", "/indexes", {"key": None}, 401, "missing_authorization_header", "auth",
     "The Authorization header is missing. It must use the bearer authorization method."),
    ("task-filters", "DELETE", "/tasks", {}, 400, "missing_task_filters", "invalid_request",
     None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "type_", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
@pytest.mark.usefixtures("books")
def test_error_object(
    api: ApiCall,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    type_: str,
    message: str | None,
) -> None:
    response = api(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()
    assert set(error) == {"message", "code", "type", "link"}
    assert error["code"] == code
    assert error["type"] == type_
    assert error["link"] == LINK + code
    assert error["message"]
    if message is not None:
        assert error["message"] == message


def test_sdk_surfaces_the_error_object(client: meilisearch.Client) -> None:
    with pytest.raises(MeilisearchApiError) as err:
        client.get_index("nope")
    assert err.value.status_code == 404
    assert err.value.code == "index_not_found"
    assert err.value.type == "invalid_request"
    assert err.value.link == LINK + "index_not_found"
    assert err.value.message == "Index `nope` not found."


def test_failed_task_carries_an_error_object(client: meilisearch.Client, books: Index) -> None:
    task = client.wait_for_task(books.delete_documents(filter="genre = scifi").task_uid)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error["code"] == "invalid_document_filter"
    assert task.error["type"] == "invalid_request"
    assert task.error["link"] == LINK + "invalid_document_filter"


def test_deleting_a_missing_index_fails_in_the_task(client: meilisearch.Client) -> None:
    task = client.wait_for_task(client.delete_index("ghost").task_uid)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error["code"] == "index_not_found"
    assert task.error["message"] == "Index `ghost` not found."

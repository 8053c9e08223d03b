"""Document payloads: JSON / NDJSON / CSV parsing, content-type rules, primary-key inference,
document ids and replace/merge preparation."""

from __future__ import annotations

from typing import Any

import pytest

from miroir_devnode.documents import (
    CSV,
    JSON,
    NDJSON,
    csv_delimiter,
    document_id,
    infer_primary_key,
    parse_documents,
    payload_format,
    prepare_documents,
)
from miroir_devnode.errors import MeiliError


def _code(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(MeiliError) as caught:
        call(*args, **kwargs)
    return caught.value.code, caught.value.message


def test_json_object_or_array_of_objects() -> None:
    assert parse_documents(b'{"id": 1}', JSON) == [{"id": 1}]
    assert parse_documents(b'[{"id": 1}, {"id": "a"}]', JSON) == [{"id": 1}, {"id": "a"}]
    assert parse_documents(b"[]", JSON) == []


def test_json_errors() -> None:
    assert _code(parse_documents, b"  ", JSON) == ("missing_payload", "A json payload is missing.")
    code, message = _code(parse_documents, b"[1, 2]", JSON)
    assert code == "malformed_payload"
    assert message == (
        "The `json` payload provided is malformed. `Couldn't serialize document value: data are "
        "neither an object nor a list of objects`."
    )
    assert _code(parse_documents, b'[{"id": 1}', JSON)[0] == "malformed_payload"


def test_ndjson_skips_blank_lines_and_reports_bad_ones() -> None:
    assert parse_documents(b'{"id": 1}\n\n{"id": 2}\n', NDJSON) == [{"id": 1}, {"id": 2}]
    code, message = _code(parse_documents, b'{"id": 1}\n{oops\n', NDJSON)
    assert code == "malformed_payload"
    assert message.startswith("The `ndjson` payload provided is malformed.")
    assert _code(parse_documents, b"", NDJSON)[1] == "A ndjson payload is missing."


def test_csv_typed_headers_empty_cells_and_delimiter() -> None:
    body = (
        b"id,price:number,available:boolean,name:string,note:unknown\n"
        b"1,9.5,true,Ann,x\n2,,false,,\n3,7,,Bo,y\n"
    )
    assert parse_documents(body, CSV) == [
        {"id": "1", "price": 9.5, "available": True, "name": "Ann", "note:unknown": "x"},
        {"id": "2", "price": None, "available": False, "name": None, "note:unknown": None},
        {"id": "3", "price": 7, "available": None, "name": "Bo", "note:unknown": "y"},
    ]
    assert parse_documents(b"id;title\n1;a,b\n", CSV, ";") == [{"id": "1", "title": "a,b"}]


def test_csv_errors() -> None:
    code, message = _code(parse_documents, b"id,price:number\n1,cheap\n", CSV)
    assert code == "malformed_payload"
    assert 'Error parsing number "cheap" at line 2' in message
    assert _code(parse_documents, b"id,a\n1,2,3\n", CSV)[0] == "malformed_payload"
    assert _code(parse_documents, b"id,ok:boolean\n1,yes\n", CSV)[0] == "malformed_payload"


def test_content_type_rules() -> None:
    assert payload_format("application/json; charset=utf-8", JSON, False) == JSON
    assert _code(payload_format, None, "", False)[0] == "missing_content_type"
    code, message = _code(payload_format, "text/plain", "text/plain", False)
    assert code == "invalid_content_type"
    assert message == (
        "The Content-Type `text/plain` is invalid. Accepted values for the Content-Type header "
        "are: `application/json`, `application/x-ndjson`, `text/csv`"
    )
    assert _code(payload_format, "application/json", JSON, True)[0] == "invalid_content_type"
    assert payload_format("text/csv", CSV, True) == CSV


def test_csv_delimiter_must_be_one_ascii_character() -> None:
    assert csv_delimiter(None) == ","
    assert csv_delimiter("|") == "|"
    assert _code(csv_delimiter, ";;")[0] == "invalid_document_csv_delimiter"
    assert _code(csv_delimiter, "é")[0] == "invalid_document_csv_delimiter"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"title": "x", "id": 1}, "id"),
        ({"movie_id": 1, "title": "x"}, "movie_id"),
        ({"ID": 1}, "ID"),
        ({"Uid": "a", "name": "n"}, "Uid"),
    ],
)
def test_primary_key_inference(doc: dict[str, Any], expected: str) -> None:
    assert infer_primary_key(doc) == expected


def test_primary_key_inference_failures() -> None:
    code, message = _code(infer_primary_key, {"title": "x"})
    assert code == "index_primary_key_no_candidate_found"
    assert "did not find any field ending with `id`" in message
    code, message = _code(infer_primary_key, {"id": 1, "product_id": 2})
    assert code == "index_primary_key_multiple_candidates_found"
    assert "found 2 fields ending with `id` in their names: 'id' and 'product_id'" in message


def test_document_ids() -> None:
    assert document_id({"id": 12}, "id") == "12"
    assert document_id({"id": -3}, "id") == "-3"
    assert document_id({"id": "ab_C-9"}, "id") == "ab_C-9"
    assert document_id({"a": {"b": "x"}}, "a.b") == "x"
    assert document_id({"a.b": "y"}, "a.b") == "y"
    for bad in ("foo & bar", "", 1.5, True, None, "x" * 512):
        code, _ = _code(document_id, {"id": bad}, "id")
        assert code == "invalid_document_id"
    code, message = _code(document_id, {"title": "t"}, "docid")
    assert code == "missing_document_id"
    assert message == 'Document doesn\'t have a `docid` attribute: `{"title":"t"}`.'
    assert _code(document_id, {"id": "foo & bar"}, "id")[1].startswith(
        'Document identifier `"foo & bar"` is invalid.'
    )


def test_prepare_replace_merge_and_skip_creation() -> None:
    stored: dict[str, dict[str, Any]] = {"1": {"id": 1, "title": "old", "year": 2000}}
    docs: list[dict[str, Any]] = [
        {"id": 1, "title": "new"},
        {"id": "2", "title": "b"},
        {"id": 2, "year": 1},
    ]
    replaced = prepare_documents(docs, "id", merge=False, skip_creation=False, existing=stored.get)
    assert replaced == {"1": {"id": 1, "title": "new"}, "2": {"id": 2, "year": 1}}
    merged = prepare_documents(docs, "id", merge=True, skip_creation=False, existing=stored.get)
    assert merged == {
        "1": {"id": 1, "title": "new", "year": 2000},
        "2": {"id": 2, "title": "b", "year": 1},
    }
    only_existing = prepare_documents(
        docs, "id", merge=True, skip_creation=True, existing=stored.get
    )
    assert only_existing == {"1": {"id": 1, "title": "new", "year": 2000}}

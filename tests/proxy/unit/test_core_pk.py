import pytest

from miroir_proxy.core.pk import (
    DocumentError,
    check_reserved_fields,
    document_id,
    infer_primary_key,
    is_reserved,
    reserved_fields,
    resolve_primary_key,
    validate_document_id,
)

INVALID_ID_TAIL = (
    " is invalid. A document identifier can be of type integer or string, only composed of "
    "alphanumeric characters (a-z A-Z 0-9), hyphens (-) and underscores (_), and can not be "
    "more than 511 bytes."
)


def error_of(call: object, *args: object) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        call(*args)  # type: ignore[operator]
    return info.value


def test_inference_picks_the_single_field_ending_with_id() -> None:
    assert infer_primary_key({"title": "x", "movieId": 3}) == "movieId"
    assert infer_primary_key({"ID": 1, "name": "n"}) == "ID"
    assert infer_primary_key({"nested": {"id": 1}, "uid": "u"}) == "uid"


def test_inference_without_candidates() -> None:
    error = error_of(infer_primary_key, {"title": "x", "identity": 1})
    assert error.code == "index_primary_key_no_candidate_found"
    assert error.message == (
        "The primary key inference failed as the engine did not find any field ending with "
        "`id` in its name. Please specify the primary key manually using the `primaryKey` "
        "query parameter."
    )
    assert error.status == 400


def test_inference_with_several_candidates_names_the_first_two_sorted() -> None:
    error = error_of(infer_primary_key, {"object_id": 1, "title": "t", "id": 2, "userId": 3})
    assert error.code == "index_primary_key_multiple_candidates_found"
    assert error.message == (
        "The primary key inference failed as the engine found 3 fields ending with `id` in "
        "their names: 'id' and 'object_id'. Please specify the primary key manually using the "
        "`primaryKey` query parameter."
    )


def test_resolution_order() -> None:
    assert resolve_primary_key("sku", "other", {"id": 1}) == "sku"
    assert resolve_primary_key(None, "other", {"id": 1}) == "other"
    assert resolve_primary_key(None, None, {"id": 1}) == "id"
    assert resolve_primary_key(None, None, None) is None


@pytest.mark.parametrize(
    ("document", "key", "expected"),
    [
        ({"id": 7}, "id", 7),
        ({"id": "a-B_9"}, "id", "a-B_9"),
        ({"a": {"b": "x1"}}, "a.b", "x1"),
        ({"a.b": "lit"}, "a.b", "lit"),
        ({"a": {"b.c": 5}}, "a.b.c", 5),
        ({"a.b": {"c": 6}}, "a.b.c", 6),
        ({"id": -3}, "id", -3),
    ],
)
def test_document_ids_are_found_and_validated(
    document: dict[str, object], key: str, expected: object
) -> None:
    assert document_id(document, key) == expected


def test_missing_id_message_embeds_the_document_as_compact_json() -> None:
    error = error_of(document_id, {"title": "Ça", "n": 1}, "docid")
    assert error.code == "missing_document_id"
    assert error.message == 'Document doesn\'t have a `docid` attribute: `{"title":"Ça","n":1}`.'
    assert error_of(document_id, {"a": {"c": 1}}, "a.b").code == "missing_document_id"


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("foo & bar", '"foo & bar"'),
        ("", '""'),
        (1.5, "1.5"),
        (True, "true"),
        (None, "null"),
        ([1], "[1]"),
        ("x" * 512, '"' + "x" * 512 + '"'),
        ("é", '"é"'),
    ],
)
def test_invalid_ids(value: object, rendered: str) -> None:
    error = error_of(validate_document_id, value)
    assert error.code == "invalid_document_id"
    assert error.message == f"Document identifier `{rendered}`{INVALID_ID_TAIL}"


def test_longest_valid_string_id() -> None:
    assert validate_document_id("y" * 511) == "y" * 511
    assert validate_document_id(10**30) == 10**30


def test_reserved_fields_are_detected() -> None:
    document = {"id": 1, "_miroir_shard": 3, "_miroirx": 1, "_miroir_ttl": 2}
    assert reserved_fields(document) == ["_miroir_shard", "_miroir_ttl"]
    assert is_reserved("_miroir_shard") and not is_reserved("miroir_shard")
    error = error_of(check_reserved_fields, document)
    assert error.code == "miroir_reserved_field" and "`_miroir_shard`" in error.message
    check_reserved_fields({"id": 1})

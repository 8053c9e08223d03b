"""Document payload parsing: JSON, NDJSON, CSV (typed headers, delimiters) and their errors."""

import pytest

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch.payloads import (
    CSV,
    JSON,
    NDJSON,
    bool_parameter,
    check_parameters,
    csv_delimiter,
    parse_documents,
    payload_format,
)


def error_of(call: object, *args: object) -> MiroirError:
    with pytest.raises(MiroirError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_json_object_or_array_of_objects() -> None:
    assert parse_documents(b'{"id": 1}', JSON) == [{"id": 1}]
    assert parse_documents(b'[{"id": 1}, {"id": "a", "n": {"x": [1]}}]', JSON) == [
        {"id": 1},
        {"id": "a", "n": {"x": [1]}},
    ]
    assert parse_documents(b"[]", JSON) == []


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b'[{"id": 1}, 3]'])
def test_json_that_is_not_documents_is_malformed(body: bytes) -> None:
    error = error_of(parse_documents, body, JSON)
    assert error.code == "malformed_payload"
    assert error.message == (
        "The `json` payload provided is malformed. `Couldn't serialize document value: data "
        "are neither an object nor a list of objects`."
    )


def test_broken_json_and_empty_payloads() -> None:
    broken = error_of(parse_documents, b'[{"id": 1', JSON)
    assert broken.code == "malformed_payload"
    assert broken.message.startswith("The `json` payload provided is malformed. `")
    for fmt, name in ((JSON, "json"), (NDJSON, "ndjson"), (CSV, "csv")):
        empty = error_of(parse_documents, b"  \n", fmt)
        assert (empty.code, empty.message) == ("missing_payload", f"A {name} payload is missing.")


def test_ndjson_skips_blank_lines_and_names_the_bad_line() -> None:
    assert parse_documents(b'{"id": 1}\n\n{"id": 2}\n', NDJSON) == [{"id": 1}, {"id": 2}]
    error = error_of(parse_documents, b'{"id": 1}\n{"id": \n', NDJSON)
    assert error.code == "malformed_payload"
    assert "at line 2" in error.message
    assert error_of(parse_documents, b'{"id": 1}\n[1]\n', NDJSON).code == "malformed_payload"


def test_csv_untyped_columns_are_strings_and_empty_cells_null() -> None:
    body = b'id,title,price\n1,"Dune, part 1",10\n2,,\n'
    assert parse_documents(body, CSV) == [
        {"id": "1", "title": "Dune, part 1", "price": "10"},
        {"id": "2", "title": None, "price": None},
    ]


def test_csv_typed_headers() -> None:
    body = (
        b"id:number,price:number,sold:boolean,code:string,ratio:unknown\n"
        b"1,10.5,true,007,a\n"
        b"-2,3,false,,b\n"
        b"3, ,,x,c\n"
    )
    assert parse_documents(body, CSV) == [
        {"id": 1, "price": 10.5, "sold": True, "code": "007", "ratio:unknown": "a"},
        {"id": -2, "price": 3, "sold": False, "code": None, "ratio:unknown": "b"},
        {"id": 3, "price": None, "sold": None, "code": "x", "ratio:unknown": "c"},
    ]


def test_csv_bad_typed_values_are_malformed() -> None:
    number = error_of(parse_documents, b"id:number\nabc\n", CSV)
    assert number.code == "malformed_payload"
    assert number.message == (
        'The `csv` payload provided is malformed. `Error parsing number "abc" at line 2: '
        "invalid float literal`."
    )
    boolean = error_of(parse_documents, b"id,ok:boolean\n1,yes\n", CSV)
    assert "Error parsing boolean" in boolean.message
    ragged = error_of(parse_documents, b"id,a\n1,2\n3\n", CSV)
    assert "found record with 1 fields" in ragged.message


def test_csv_custom_delimiter_and_bom() -> None:
    body = "\ufeffid;name\n1;a,b\n".encode()
    assert parse_documents(body, CSV, csv_delimiter(";")) == [{"id": "1", "name": "a,b"}]


def test_csv_delimiter_validation() -> None:
    assert csv_delimiter(None) == ","
    too_long = error_of(csv_delimiter, ";;")
    assert too_long.code == "invalid_document_csv_delimiter"
    assert too_long.message == (
        "Invalid value in parameter `csvDelimiter`: expected a string of one character, but "
        "found the following string of 2 characters: `;;`"
    )
    assert error_of(csv_delimiter, "é").code == "invalid_document_csv_delimiter"


def test_content_type_checks() -> None:
    assert payload_format("application/json; charset=utf-8", JSON, False) == JSON
    missing = error_of(payload_format, None, "application/octet-stream", False)
    assert missing.code == "missing_content_type"
    assert missing.status == 415
    invalid = error_of(payload_format, "text/plain", "text/plain", False)
    assert invalid.code == "invalid_content_type"
    assert invalid.message == (
        "The Content-Type `text/plain` is invalid. Accepted values for the Content-Type header "
        "are: `application/json`, `application/x-ndjson`, `text/csv`"
    )
    delimiter = error_of(payload_format, "application/json", JSON, True)
    assert delimiter.code == "invalid_content_type"
    assert "does not support the use of a csv delimiter" in delimiter.message


def test_query_parameter_checks() -> None:
    check_parameters({"primaryKey": "id"}, ("primaryKey", "skipCreation"))
    unknown = error_of(check_parameters, {"primarykey": "id"}, ("primaryKey",))
    assert unknown.code == "bad_request"
    assert unknown.message == "Unknown parameter `primarykey`: expected one of `primaryKey`"
    assert bool_parameter({"skipCreation": "true"}, "skipCreation", "invalid_skip_creation")
    assert not bool_parameter({}, "skipCreation", "invalid_skip_creation")
    bad = error_of(bool_parameter, {"skipCreation": "yes"}, "skipCreation", "invalid_skip_creation")
    assert bad.code == "invalid_skip_creation"


def test_csv_numbers_follow_rusts_grammar() -> None:
    """An `i64` when the cell is one, else an `f64`; `_` separators, NaN and infinities are
    not numbers (Rust's parsers refuse the first, JSON cannot carry the others)."""
    body = b"id,n:number\n1,99999999999999999999\n2,+7\n3,.5\n4,1e3\n"
    assert [d["n"] for d in parse_documents(body, CSV)] == [1e20, 7, 0.5, 1000.0]
    for cell in ("1_0", "nan", "inf", "0x10"):
        error = error_of(parse_documents, f"id,n:number\n1,{cell}\n".encode(), CSV)
        assert error.message == (
            "The `csv` payload provided is malformed. "
            f'`Error parsing number "{cell}" at line 2: invalid float literal`.'
        )

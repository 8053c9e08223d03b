"""`engine.vectors`: `_vectors` in documents and the embedders setting (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from miroir_devnode.engine.vectors import (
    apply_embedders,
    check_embedders_when_applied,
    f32,
    parse_document,
    rank,
    shown_vectors,
    validate_embedders,
)
from miroir_devnode.errors import MeiliError

MANUAL = {"manual": {"source": "userProvided", "dimensions": 2}}


def error(call: Any, *args: Any) -> tuple[str, str]:
    with pytest.raises(MeiliError) as caught:
        call(*args)
    return caught.value.code, caught.value.message


def test_every_accepted_form_of_vectors() -> None:
    forms: list[tuple[Any, list[list[float]]]] = [
        ([1, 2], [[1.0, 2.0]]),
        ([[1, 2], [3, 4.5]], [[1.0, 2.0], [3.0, 4.5]]),
        ({"regenerate": False, "embeddings": [1, 2]}, [[1.0, 2.0]]),
        ({"regenerate": True, "embeddings": [[1, 2]]}, [[1.0, 2.0]]),
        ({"regenerate": False}, []),
        ({"regenerate": False, "embeddings": None}, []),
        (None, []),
        ([], []),
    ]
    for value, expected in forms:
        assert parse_document("1", {"_vectors": {"manual": value}}, MANUAL) == {"manual": expected}
    # Other embedders' entries and documents without `_vectors` are left alone.
    assert parse_document("1", {"_vectors": {"other": "x"}}, MANUAL) == {}
    assert parse_document("1", {"title": "x"}, MANUAL) == {}


def test_malformed_vectors_are_worded_as_meilisearch() -> None:
    prefix = "Bad embedder configuration in the document with id: `7`. "
    cases: list[tuple[Any, str]] = [
        (
            "abc",
            prefix + "Expected `._vectors.manual` to be an array of floats, an array of arrays "
            "of floats, or an object with at least the field `regenerate`, but got the string "
            "`abc`",
        ),
        (
            {"regenerate": False, "what": 1},
            prefix + "Unexpected field `._vectors.manual.what`\n"
            "  - note: the allowed fields are `regenerate` and `embeddings`",
        ),
        (
            [True],
            prefix + "Invalid value type at `._vectors.manual[0]`: expected a number or an "
            "array, but found a boolean: `true`",
        ),
        (
            {"regenerate": False, "embeddings": True},
            prefix + "Invalid value type at `._vectors.manual.embeddings`: expected null or an "
            "array, but found a boolean: `true`",
        ),
    ]
    for value, message in cases:
        found = error(parse_document, "7", {"_vectors": {"manual": value}}, MANUAL)
        assert found == ("invalid_vectors_type", message)
    code, message = error(parse_document, "7", {"_vectors": [1, 2]}, MANUAL)
    assert code == "invalid_vectors_type"
    assert message.startswith("The `_vectors` field in the document with id: `7` is not an object")


def test_embedders_setting_is_validated_and_merged() -> None:
    assert validate_embedders("invalid_settings_embedders", ".embedders", MANUAL) == MANUAL
    code, message = error(
        validate_embedders, "c", ".embedders", {"manual": {"source": "openAi", "model": "x"}}
    )
    assert code == "invalid_settings_embedders"
    assert "only supports `userProvided`" in message
    code, message = error(validate_embedders, "c", ".embedders", {"manual": {"dimension": 2}})
    assert message.startswith("Unknown field `dimension` inside `.embedders.manual`")
    merged = apply_embedders(MANUAL, {"manual": {"dimensions": 3}, "other": None})
    assert merged == {"manual": {"source": "userProvided", "dimensions": 3}}
    assert apply_embedders(merged, {"manual": None}) == {}
    # A new embedder without a source is an openAi one, which the devnode cannot run.
    assert error(check_embedders_when_applied, {"new": {"dimensions": 2}})[0] == (
        "invalid_settings_embedders"
    )


def test_similarity_is_milli_cosine_score_at_single_precision() -> None:
    ranked = rank(
        [1.0, 0.0], {1: [[0.0, 1.0]], 2: [[1.0, 0.0], [-1.0, 0.0]], 3: [[-1.0, 0.0]]}, [1, 2, 3, 4]
    )
    assert ranked == [(2, 1.0), (1, 0.5), (3, 0.0), (4, None)]
    close = rank([1.0, 0.1], {1: [[1.0, 0.0]]}, [1])[0][1]
    assert close == f32(close) and 0.99 < close < 1.0


def test_shown_vectors() -> None:
    document = {"_vectors": {"manual": [1, 2], "other": {"x": 1}}}
    assert shown_vectors(document, MANUAL) == {
        "manual": {"embeddings": [[1.0, 2.0]], "regenerate": False},
        "other": {"x": 1},
    }
    assert shown_vectors({"title": "x"}, MANUAL) == {
        "manual": {"embeddings": [], "regenerate": False}
    }
    assert shown_vectors({"title": "x"}, {}) is None

"""Hit formatting: `_formatted` (highlight, crop, numbers as strings, nested values),
`_matchesPosition` (UTF-8 byte offsets, array indices) and attribute selection."""

from __future__ import annotations

from typing import Any

from miroir_devnode.engine.formatting import number_text, select_values
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.search import search
from miroir_devnode.settings import defaults

DOCS = [
    {
        "id": 852,
        "title": "Le Petit Prince",
        "overview": (
            "The narrator is a pilot stranded in the desert. A little prince visits him. "
            "They talk about roses, baobabs and a fox that wants to be tamed."
        ),
        "author": {"name": "Antoine de Saint-Exupéry", "born": 1900},
        "tags": ["classic", "prince", "aviation"],
        "rating": 4.5,
        "available": True,
    },
    {"id": 7, "title": "Crème brûlée prince", "overview": "Dessert.", "tags": []},
]


def index(**settings: Any) -> Index:
    full = defaults()
    full.update(settings)
    idx = Index("books", "id", full)
    idx.upsert((str(doc["id"]), doc) for doc in DOCS)
    return idx


def first_hit(idx: Index, body: dict[str, Any]) -> dict[str, Any]:
    hits: list[dict[str, Any]] = search(idx, body)["hits"]
    return next(h for h in hits if h["id"] == 852)


def test_highlight_all_renders_every_displayed_attribute_and_numbers_as_strings() -> None:
    hit = first_hit(index(), {"q": "prince", "attributesToHighlight": ["*"]})
    formatted = hit["_formatted"]
    assert formatted["title"] == "Le Petit <em>Prince</em>"
    assert formatted["id"] == "852"
    assert formatted["rating"] == "4.5"
    assert formatted["available"] is True
    assert formatted["author"] == {"name": "Antoine de Saint-Exupéry", "born": "1900"}
    assert formatted["tags"] == ["classic", "<em>prince</em>", "aviation"]
    assert "little <em>prince</em> visits" in formatted["overview"]
    assert hit["id"] == 852
    assert hit["author"]["born"] == 1900


def test_formatted_holds_retrieved_plus_highlighted_attributes() -> None:
    hit = first_hit(
        index(),
        {"q": "prince", "attributesToRetrieve": ["id"], "attributesToHighlight": ["title"]},
    )
    assert hit == {"id": 852, "_formatted": {"id": "852", "title": "Le Petit <em>Prince</em>"}}
    plain = first_hit(index(), {"q": "prince", "attributesToRetrieve": ["id"]})
    assert "_formatted" not in plain


def test_hidden_and_unknown_attributes_are_never_formatted() -> None:
    idx = index(displayedAttributes=["id", "title"])
    hit = first_hit(idx, {"q": "prince", "attributesToHighlight": ["overview", "nope"]})
    assert "_formatted" not in hit
    hit = first_hit(idx, {"q": "prince", "attributesToHighlight": ["*"]})
    assert hit["_formatted"] == {"id": "852", "title": "Le Petit <em>Prince</em>"}


def test_prefix_match_highlights_only_the_typed_part_with_custom_tags() -> None:
    hit = first_hit(
        index(),
        {
            "q": "pri",
            "attributesToHighlight": ["title"],
            "highlightPreTag": "[",
            "highlightPostTag": "]",
        },
    )
    assert hit["_formatted"]["title"] == "Le Petit [Pri]nce"


def test_crop_centers_on_matches_and_marks_cut_ends() -> None:
    body = {"q": "fox", "attributesToCrop": ["overview"], "cropLength": 5}
    # The window grows left first, one word per side: "a", "that", "and", "wants".
    assert first_hit(index(), body)["_formatted"]["overview"] == "…and a fox that wants…"
    body = {"q": "fox", "attributesToCrop": ["overview:3"], "cropMarker": "[…]"}
    assert first_hit(index(), body)["_formatted"]["overview"] == "[…]a fox that[…]"
    body = {
        "q": "narrator",
        "attributesToCrop": ["overview:4"],
        "attributesToHighlight": ["overview"],
    }
    assert first_hit(index(), body)["_formatted"]["overview"] == "The <em>narrator</em> is a…"
    no_match = {"q": "classic", "attributesToCrop": ["overview:2"], "cropMarker": ""}
    assert first_hit(index(), no_match)["_formatted"]["overview"] == "The narrator"


def test_crop_window_prefers_the_interval_with_most_distinct_terms() -> None:
    body = {
        "q": "desert fox tamed",
        "attributesToCrop": ["overview:6"],
        "attributesToHighlight": ["overview"],
    }
    cropped = first_hit(index(), body)["_formatted"]["overview"]
    # "fox … tamed" (2 terms in 6 words) beats "desert" alone; the final "." is cut off.
    assert cropped == "…<em>fox</em> that wants to be <em>tamed</em>…"


def test_matches_position_counts_bytes_and_array_indices() -> None:
    hit = search(index(), {"q": "prince", "showMatchesPosition": True})["hits"]
    positions = {h["id"]: h["_matchesPosition"] for h in hit}
    assert positions[852]["title"] == [{"start": 9, "length": 6}]
    assert positions[852]["tags"] == [{"start": 0, "length": 6, "indices": [1]}]
    assert list(positions[852]) == sorted(positions[852])
    # "Crème brûlée " is 13 characters but 16 bytes in UTF-8.
    assert positions[7]["title"] == [{"start": 16, "length": 6}]
    assert "_formatted" not in hit[0]


def test_nested_highlight_and_placeholder_search() -> None:
    hit = first_hit(index(), {"q": "antoine", "attributesToHighlight": ["author.name"]})
    assert hit["_formatted"]["author"]["name"] == "<em>Antoine</em> de Saint-Exupéry"
    placeholder = first_hit(
        index(), {"attributesToHighlight": ["title"], "showMatchesPosition": True}
    )
    assert placeholder["_formatted"]["title"] == "Le Petit Prince"
    assert placeholder["_matchesPosition"] == {}


def test_select_values_and_number_text() -> None:
    doc = {"a": {"b": 1, "c": 2}, "d": [{"b": 3, "e": 4}, 5], "a.b": 9}
    assert select_values(doc, ["a.b"]) == {"a": {"b": 1}, "a.b": 9}
    assert select_values(doc, ["d.b"]) == {"d": [{"b": 3}]}
    assert select_values(doc, ["*"]) == doc
    assert select_values(doc, ["a"]) == {"a": {"b": 1, "c": 2}, "a.b": 9}
    assert [number_text(v) for v in (3, -2, 4.5, 1e20, 3.0)] == ["3", "-2", "4.5", "1e20", "3.0"]

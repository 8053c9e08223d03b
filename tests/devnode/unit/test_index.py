"""Document storage, inverted index maintenance and settings changes of the devnode Index."""

from __future__ import annotations

from typing import Any

from miroir_devnode.engine.index import Index
from miroir_devnode.engine.ranking import SortRule
from miroir_devnode.settings import defaults


def settings(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(defaults())
    base.update(overrides)
    return base


def make(docs: list[dict[str, Any]], **overrides: Any) -> Index:
    index = Index("test", "id", settings(**overrides))
    index.upsert((str(d["id"]), d) for d in docs)
    return index


def internal(index: Index, external: str) -> int:
    found = index.internal_id(external)
    assert found is not None
    return found


def order(index: Index, q: str | None, **kwargs: Any) -> list[str]:
    return [index.external_id(h.internal_id) for h in index.query(q, **kwargs).ranked]


def ids(index: Index, q: str | None, **kwargs: Any) -> set[str]:
    return set(order(index, q, want=1000, **kwargs))


def test_upsert_get_replace_keeps_internal_id_and_order() -> None:
    index = make([{"id": 1, "t": "alpha"}, {"id": 2, "t": "beta"}, {"id": 3, "t": "gamma"}])
    first = internal(index, "1")
    index.upsert([("1", {"id": 1, "t": "delta"}), ("4", {"id": 4, "t": "alpha"})])
    assert index.internal_id("1") == first
    assert list(index.ids()) == ["1", "2", "3", "4"]
    assert index.get("1") == {"id": 1, "t": "delta"}
    assert index.get("9") is None
    assert index.document(first) == {"id": 1, "t": "delta"}
    assert len(index) == 4
    # the replaced document no longer matches its old words
    assert ids(index, "alpha ") == {"4"}
    assert ids(index, "delta ") == {"1"}


def test_delete_and_clear() -> None:
    index = make([{"id": i, "t": "word"} for i in range(5)])
    assert index.delete(["1", "3", "99", "1"]) == 2
    assert list(index.ids()) == ["0", "2", "4"]
    assert ids(index, "word") == {"0", "2", "4"}
    assert set(index.all_internal()) == {index.internal_id(i) for i in ("0", "2", "4")}
    assert index.clear() == 3
    assert len(index) == 0 and list(index.ids()) == []
    assert index.query("word").total == 0
    index.upsert([("7", {"id": 7, "t": "word"})])
    assert ids(index, "word") == {"7"}


def test_field_distribution_counts_top_level_fields() -> None:
    index = make([{"id": 1, "a": {"b": 1}, "c": None}, {"id": 2, "a": 3}])
    assert index.field_distribution() == {"a": 2, "c": 1, "id": 2}
    index.delete(["1"])
    assert index.field_distribution() == {"a": 1, "id": 1}


def test_numbers_nested_fields_and_arrays_are_searchable() -> None:
    index = make(
        [
            {"id": 1, "info": {"city": "Paris", "zip": 75001}},
            {"id": 2, "tags": ["red", "blue sky"]},
            {"id": 3, "flag": True},
        ]
    )
    assert ids(index, "paris ") == {"1"}
    assert ids(index, "75001 ") == {"1"}
    assert ids(index, "sky ") == {"2"}
    assert ids(index, "true ") == {"3"}
    nested = make(
        [{"id": 1, "info": {"city": "Paris"}, "other": "paris"}], searchableAttributes=["info"]
    )
    assert details_order(nested, "paris ") == "1"
    assert ids(nested, "paris ", search_on=["other"]) == set()


def details_order(index: Index, q: str) -> str:
    hits = index.query(q).ranked
    return ",".join(index.external_id(h.internal_id) for h in hits)


def test_array_items_are_not_close_to_each_other() -> None:
    index = make([{"id": 1, "tags": ["new", "york"]}, {"id": 2, "tags": ["new york"]}])
    assert order(index, "new york ") == ["2", "1"]


def test_searchable_attributes_change_reindexes() -> None:
    index = make([{"id": 1, "title": "moon", "body": "sun"}])
    assert ids(index, "sun ") == {"1"}
    index.replace_settings(settings(searchableAttributes=["title"]))
    assert ids(index, "sun ") == set()
    assert ids(index, "moon ") == {"1"}
    index.replace_settings(settings())
    assert ids(index, "sun ") == {"1"}


def test_stop_words_synonyms_and_typo_settings_apply_without_reindex() -> None:
    index = make([{"id": 1, "t": "the house"}, {"id": 2, "t": "a home"}])
    index.replace_settings(settings(stopWords=["the"], synonyms={"house": ["home"]}))
    assert ids(index, "the house ") == {"1", "2"}
    index.replace_settings(
        settings(
            typoTolerance={
                "enabled": True,
                "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9},
                "disableOnWords": ["house"],
                "disableOnAttributes": [],
                "disableOnNumbers": False,
            }
        )
    )
    assert ids(index, "housr ") == {"1"}  # "housr" may still be a typo of "house"
    assert ids(index, "house ") == {"1"}


def test_disable_on_attributes_blocks_typos_in_those_fields() -> None:
    typo = {
        "enabled": True,
        "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9},
        "disableOnWords": [],
        "disableOnAttributes": ["code"],
        "disableOnNumbers": False,
    }
    index = make([{"id": 1, "code": "abcdef"}, {"id": 2, "name": "abcdef"}], typoTolerance=typo)
    assert ids(index, "abcdeg ") == {"2"}
    assert ids(index, "abcdef ") == {"1", "2"}


def test_facet_index_follows_filterable_settings() -> None:
    index = make([{"id": 1, "color": "Red"}, {"id": 2, "color": "blue"}])
    everything = set(index.all_internal())
    assert index.facets.distribution("color", everything, max_values=10, sort_by="alpha") == {}
    index.replace_settings(settings(filterableAttributes=["color"]))
    assert index.facets.distribution("color", everything, max_values=10, sort_by="alpha") == {
        "blue": 1,
        "Red": 1,
    }
    index.delete(["2"])
    assert index.facets.distribution(
        "color", set(index.all_internal()), max_values=10, sort_by="alpha"
    ) == {"Red": 1}


def test_sortable_settings_change_rebuilds_columns() -> None:
    index = make([{"id": 1, "n": 2}, {"id": 2, "n": 1}])
    index.replace_settings(settings(sortableAttributes=["n"]))
    assert order(index, None, sort=[SortRule("n", True)]) == ["2", "1"]


def test_query_terms_tell_the_highlighter_what_matched() -> None:
    index = make([{"id": 1, "t": "hello world wonderful"}])
    terms = index.query("helo wonde").query_terms
    assert terms.match("world") is None
    assert terms.match("helo") is not None
    prefix = terms.match("wonderful")
    assert prefix is not None and prefix.is_prefix and prefix.matched_chars == 5
    placeholder = index.query(None).query_terms
    assert placeholder.is_empty


def test_prefix_search_can_be_disabled() -> None:
    index = make([{"id": 1, "t": "wonderful"}])
    assert ids(index, "wonder") == {"1"}
    index.replace_settings(settings(prefixSearch="disabled"))
    assert ids(index, "wonder") == set()


def test_typo_matches_are_reported_with_their_length() -> None:
    index = make([{"id": 1, "t": "hallo"}])
    terms = index.query("hello ").query_terms
    found = terms.match("hallo")
    assert found is not None and found.typos == 1 and found.matched_chars == 5

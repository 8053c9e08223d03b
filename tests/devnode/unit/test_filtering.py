"""Filter grammar, error texts and evaluation; expected texts come from Meilisearch's own
`filter-parser` and milli snapshot tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from miroir_devnode.engine.facets import FacetIndex
from miroir_devnode.engine.filter_syntax import And, Cond, GeoBox, GeoRadius, In, Node, Not, Or
from miroir_devnode.engine.filtering import Filter, FilterError, and_filters, parse_filter

PRIMARY = (
    "Was expecting an operation `=`, `!=`, `>=`, `>`, `<=`, `<`, `IN`, `NOT IN`, `TO`, `EXISTS`, "
    "`NOT EXISTS`, `IS NULL`, `IS NOT NULL`, `IS EMPTY`, `IS NOT EMPTY`, `CONTAINS`, "
    "`NOT CONTAINS`, `STARTS WITH`, `NOT STARTS WITH`, `_geoRadius`, or `_geoBoundingBox`"
)
RESERVED_GEO = (
    "is a reserved keyword and thus can't be used as a filter expression. Use the "
    "`_geoRadius(latitude, longitude, distance)` or `_geoBoundingBox([latitude, longitude], "
    "[latitude, longitude])` built-in rules to filter on `_geo` coordinates."
)


def show(node: Node) -> str:
    """The crate's Display of a FilterCondition, so its snapshots can be reused verbatim."""
    if isinstance(node, Not):
        return f"NOT ({show(node.child)})"
    if isinstance(node, And | Or):
        name = "AND" if isinstance(node, And) else "OR"
        return f"{name}[" + "".join(f"{show(c)}, " for c in node.children) + "]"
    if isinstance(node, In):
        return f"{{{node.fid.value}}} IN[" + "".join(f"{{{v.value}}}, " for v in node.values) + "]"
    if isinstance(node, GeoRadius):
        return f"_geoRadius({{{node.lat.value}}}, {{{node.lng.value}}}, {{{node.radius.value}}})"
    if isinstance(node, GeoBox):
        (a, b), (c, d) = node.top_right, node.bottom_left
        return f"_geoBoundingBox([{{{a.value}}}, {{{b.value}}}], [{{{c.value}}}, {{{d.value}}}])"
    fid = f"{{{node.fid.value}}}"
    value = f"{{{node.value.value}}}" if node.value else ""
    if node.op == "TO":
        assert node.upper is not None
        return f"{fid} {value} TO {{{node.upper.value}}}"
    words = {"NULL": "IS NULL", "EMPTY": "IS EMPTY", "EXISTS": "EXISTS"}
    if node.op in words:
        return f"{fid} {words[node.op]}"
    return f"{fid} {node.op} {value}"


def p(text: str) -> str:
    parsed = parse_filter(text)
    assert parsed is not None
    return show(parsed.root)


def err(value: Any) -> str:
    with pytest.raises(FilterError) as info:
        parse_filter(value)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("channel = Ponce", "{channel} = {Ponce}"),
        ("subscribers = 12", "{subscribers} = {12}"),
        ("channel = 'Mister Mv'", "{channel} = {Mister Mv}"),
        ('channel = "Mister Mv"', "{channel} = {Mister Mv}"),
        ("'dog race' = Borzoi", "{dog race} = {Borzoi}"),
        ("\"dog race\" = 'Bernese Mountain'", "{dog race} = {Bernese Mountain}"),
        ("colour IN[]", "{colour} IN[]"),
        ("colour IN[green,]", "{colour} IN[{green}, ]"),
        ("colour NOT IN[green,blue]", "NOT ({colour} IN[{green}, {blue}, ])"),
        (" colour IN [  green , blue , ]", "{colour} IN[{green}, {blue}, ]"),
        (
            "x = 1 OR NOT (colour IN [green, blue]  OR color = green) ",
            "OR[{x} = {1}, NOT (OR[{colour} IN[{green}, {blue}, ], {color} = {green}, ]), ]",
        ),
        (" (colour = green OR colour = red) ", "OR[{colour} = {green}, {colour} = {red}, ]"),
        ("channel != ponce", "{channel} != {ponce}"),
        ("NOT channel = ponce", "NOT ({channel} = {ponce})"),
        ("subscribers < 1000", "{subscribers} < {1000}"),
        ("subscribers > 1000", "{subscribers} > {1000}"),
        ("subscribers <= 1000", "{subscribers} <= {1000}"),
        ("subscribers >= 1000", "{subscribers} >= {1000}"),
        ("subscribers 100 TO 1000", "{subscribers} {100} TO {1000}"),
        ("NOT subscribers 100 TO 1000", "NOT ({subscribers} {100} TO {1000})"),
        ("subscribers IS NULL", "{subscribers} IS NULL"),
        ("subscribers  IS   NOT   NULL", "NOT ({subscribers} IS NULL)"),
        ("NOT subscribers IS NOT NULL", "{subscribers} IS NULL"),
        ("subscribers IS EMPTY", "{subscribers} IS EMPTY"),
        ("subscribers IS NOT EMPTY", "NOT ({subscribers} IS EMPTY)"),
        ("subscribers EXISTS", "{subscribers} EXISTS"),
        ("subscribers NOT   EXISTS", "NOT ({subscribers} EXISTS)"),
        ("NOT subscribers NOT EXISTS", "{subscribers} EXISTS"),
        ("subscribers CONTAINS 'hello'", "{subscribers} CONTAINS {hello}"),
        ("subscribers NOT CONTAINS hello", "NOT ({subscribers} CONTAINS {hello})"),
        ("subscribers STARTS WITH 'hel'", "{subscribers} STARTS WITH {hel}"),
        ("subscribers NOT   STARTS WITH 'hel'", "NOT ({subscribers} STARTS WITH {hel})"),
        ("NOT NOT NOT NOT x = 5", "{x} = {5}"),
        ("NOT NOT (NOT NOT x = 5)", "{x} = {5}"),
        ("_geoRadius(12, 13, 14)", "_geoRadius({12}, {13}, {14})"),
        ("NOT _geoRadius(12,13,14)", "NOT (_geoRadius({12}, {13}, {14}))"),
        ("_geoBoundingBox([12,13],[14,15])", "_geoBoundingBox([{12}, {13}], [{14}, {15}])"),
        (
            "channel = ponce AND 'dog race' != 'bernese mountain' OR subscribers > 1000",
            "OR[AND[{channel} = {ponce}, {dog race} != {bernese mountain}, ], {subscribers} > "
            "{1000}, ]",
        ),
        (
            "channel = ponce AND ( 'dog race' != 'bernese mountain' OR subscribers > 1000 )",
            "AND[{channel} = {ponce}, OR[{dog race} != {bernese mountain}, {subscribers} > {1000}, "
            "], ]",
        ),
        ("(" * 49 + "x = 1" + ")" * 49, "{x} = {1}"),
        (
            'NOT "OR" EXISTS AND "EXISTS" NOT EXISTS',
            "AND[NOT ({OR} EXISTS), NOT ({EXISTS} EXISTS), ]",
        ),
        ("a.b-c_d = v.1", "{a.b-c_d} = {v.1}"),
        ("size=7", "{size} = {7}"),
    ],
)
def test_grammar_builds_the_crates_tree(text: str, expected: str) -> None:
    assert p(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"title = 'foo\\'", "foo\\"),
        (r"title = 'foo\\\\'", "foo\\\\"),
        (r"""title = 'foo\x20\n\t\"\'"'""", 'foo \n\t"\'"'),
        (r'''title = "I'm \"super\" tamo"''', 'I\'m "super" tamo'),
        (r"title = 'I\'m \"super\" tamo'", 'I\'m "super" tamo'),
        (r"title = '\u{e9}t\u00e9'", "été"),
    ],
)
def test_quoted_values_unescape_like_meilisearch(text: str, value: str) -> None:
    parsed = parse_filter(text)
    assert parsed is not None and isinstance(parsed.root, Cond) and parsed.root.value is not None
    assert parsed.root.value.value == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "channel = Ponce = 12",
            "Found unexpected characters at the end of the filter: `= 12`. You probably forgot an "
            "`OR` or an `AND` rule.\n17:21 channel = Ponce = 12",
        ),
        ("channel =    ", "Was expecting a value but instead got nothing.\n14:14 channel =    "),
        (
            "channel = 🐻 AND followers < 100",
            "Was expecting a value but instead got `🐻`.\n11:12 channel = 🐻 AND followers < 100",
        ),
        ("'OR'", f"{PRIMARY} at `\\'OR\\'`.\n1:5 'OR'"),
        (
            "OR",
            "Was expecting a value but instead got `OR`, which is a reserved keyword. To use `OR` "
            "as a "
            "field name or a value, surround it by quotes.\n1:3 OR",
        ),
        ("channel Ponce", f"{PRIMARY} at `channel Ponce`.\n1:14 channel Ponce"),
        ("channel = Ponce OR", f"{PRIMARY} but instead got nothing.\n19:19 channel = Ponce OR"),
        ("colour NOT EXIST", f"{PRIMARY} at `colour NOT EXIST`.\n1:17 colour NOT EXIST"),
        ("value IS NOT", f"{PRIMARY} at `value IS NOT`.\n1:13 value IS NOT"),
        (
            "_geoRadius = 12",
            "The `_geoRadius` filter expects three arguments: `_geoRadius(latitude, longitude, "
            "radius)`."
            "\n1:16 _geoRadius = 12",
        ),
        (
            "_geoBoundingBox(1.0, 1.0)",
            "The `_geoBoundingBox` filter expects two pairs of arguments: "
            "`_geoBoundingBox([latitude, "
            "longitude], [latitude, longitude])`.\n1:26 _geoBoundingBox(1.0, 1.0)",
        ),
        ("_geoPoint(12, 13, 14)", f"`_geoPoint` {RESERVED_GEO}\n1:22 _geoPoint(12, 13, 14)"),
        (
            "position <= _geoDistance(12, 13, 14)",
            f"`_geoDistance` {RESERVED_GEO}\n13:37 position <= _geoDistance(12, 13, 14)",
        ),
        ("_geo = 12", f"`_geo` {RESERVED_GEO}\n1:10 _geo = 12"),
        (
            "position <= _geoRadius(12, 13, 14)",
            "The `_geoRadius` filter is an operation and can't be used as a value.\n13:35 position "
            "<= _geoRadius(12, 13, 14)",
        ),
        (
            "channel = 'ponce",
            "Expression `\\'ponce` is missing the following closing delimiter: `'`.\n11:17 channel "
            "= 'ponce",
        ),
        (
            "channel = mv OR (followers >= 1000",
            "Expression `(followers >= 1000` is missing the following closing delimiter: `)`."
            "\n17:35 channel = mv OR (followers >= 1000",
        ),
        (
            "colour IN blue, green]",
            "Expected `[` after `IN` keyword.\n11:23 colour IN blue, green]",
        ),
        (
            "colour IN [blue, green, 'blue' > 2]",
            "Expected only comma-separated field names inside `IN[..]` but instead found `> 2]`."
            "\n32:36 colour IN [blue, green, 'blue' > 2]",
        ),
        (
            "colour IN [blue, green",
            "Expected matching `]` after the list of field names given to `IN[`\n23:23 colour IN "
            "[blue, green",
        ),
        (
            "x = EXISTS",
            "Was expecting a value but instead got `EXISTS`, which is a reserved keyword. To use "
            "`EXISTS` "
            "as a field name or a value, surround it by quotes.\n5:11 x = EXISTS",
        ),
        (
            "(" * 50 + "x = 1" + ")" * 50,
            "The filter exceeded the maximum depth limit. Try rewriting the filter so that it "
            "contains "
            "fewer nested conditions.\n51:106 " + "(" * 50 + "x = 1" + ")" * 50,
        ),
        ("title = 'foo\\q'", "Malformed value: `foo\\\\q`.\n10:15 title = 'foo\\q'"),
        (
            "a = 1\nb c",
            "Found unexpected characters at the end of the filter: `b c`. You probably forgot an "
            "`OR` or an `AND` rule.\n1:4 a = 1\nb c",
        ),
    ],
)
def test_syntax_errors_match_meilisearch(text: str, message: str) -> None:
    assert err(text) == message


def test_blank_and_empty_filters_are_no_filter() -> None:
    blanks: list[object] = [None, "", "   ", [], [""], [[]], [[""], "  "]]
    for value in blanks:
        assert parse_filter(value) is None


def test_array_form_is_and_of_ors() -> None:
    value = [["genres = horror", "genres = comedy"], "director = 'Jordan Peele'"]
    assert (
        p_array(value)
        == "AND[OR[{genres} = {horror}, {genres} = {comedy}, ], {director} = {Jordan Peele}, ]"
    )
    assert p_array(["a = 1"]) == "{a} = {1}"
    assert p_array([["a = 1"], "b = 2 OR c = 3"]) == "AND[{a} = {1}, OR[{b} = {2}, {c} = {3}, ], ]"


def p_array(value: list[Any]) -> str:
    parsed = parse_filter(value)
    assert parsed is not None
    return show(parsed.root)


def test_wrong_json_types_are_rejected() -> None:
    assert (
        err(True)
        == "Invalid syntax for the filter parameter: `expected String, Array, found: true`."
    )
    assert (
        err({"a": 1})
        == 'Invalid syntax for the filter parameter: `expected String, Array, found: {"a":1}`.'
    )
    assert (
        err(["a = 1", 3])
        == "Invalid syntax for the filter parameter: `expected String, [String], found: 3`."
    )
    assert (
        err([["a = 1", None]])
        == "Invalid syntax for the filter parameter: `expected String, found: null`."
    )
    assert err(["a = 1", "b ="]) == "Was expecting a value but instead got nothing.\n4:4 b ="


def test_and_filters_combines_raw_values() -> None:
    assert and_filters(None, "a = 1") == "a = 1"
    assert and_filters(None, None) is None
    assert and_filters("a = 1", ["b = 2", ["c = 3", "d = 4"]]) == [
        "a = 1",
        "b = 2",
        ["c = 3", "d = 4"],
    ]
    combined = parse_filter(and_filters("a = 1 OR a = 2", "t = x"))
    assert combined is not None
    assert show(combined.root) == "AND[OR[{a} = {1}, {a} = {2}, ], {t} = {x}, ]"


def test_fields_report_operator_families() -> None:
    f = parse_filter(
        "a = 1 AND b > 2 AND NOT c IN [1] AND d 1 TO 2 AND e EXISTS AND _geoRadius(1, 2, 3)"
    )
    assert f is not None
    assert [(u.attribute, u.operator, u.family) for u in f.fields()] == [
        ("a", "=", "equality"),
        ("b", ">", "comparison"),
        ("c", "IN", "equality"),
        ("d", "TO", "comparison"),
        ("e", "EXISTS", "equality"),
        ("_geo", "_geoRadius", "geo"),
    ]
    assert not f.uses_contains()
    contains = parse_filter("a = 1 OR NOT b STARTS WITH x")
    assert contains is not None and contains.uses_contains()


def checked(text: str, filterable: list[Any]) -> str | None:
    f = parse_filter(text)
    assert f is not None
    try:
        f.check_filterable(filterable)
    except FilterError as e:
        return str(e)
    return None


def test_not_filterable_messages() -> None:
    assert checked("doggo = bernese", ["color"]) == (
        "Attribute `doggo` is not filterable. Available filterable attribute patterns are: `color`."
        "\n1:6 doggo = bernese"
    )
    assert checked("doggo = bernese", []) == (
        "Attribute `doggo` is not filterable. This index does not have configured filterable "
        "attributes.\n1:6 doggo = bernese"
    )
    assert checked('title = "test" AND name IN [12]', ["title", "b", "a"]) == (
        "Attribute `name` is not filterable. Available filterable attribute patterns are: `a`, "
        "`b`, "
        '`title`.\n20:24 title = "test" AND name IN [12]'
    )
    assert checked("'dog race' = x", ["a"]) == (
        "Attribute `dog race` is not filterable. Available filterable attribute patterns are: `a`."
        "\n2:10 'dog race' = x"
    )


def test_legacy_rules_cover_nested_fields_and_patterns_use_wildcards() -> None:
    assert checked("a.b = 1 AND a = 2", ["a"]) is None
    assert checked("ab = 1", ["a"]) is not None
    assert checked("color.dark = 1", [{"attributePatterns": ["col*"]}]) is None
    assert checked("dark_color = 1", [{"attributePatterns": ["*color"]}]) is None
    assert checked("a.b = 1", [{"attributePatterns": ["a"]}]) is not None


def test_first_matching_rule_decides_and_disabled_rules_are_not_listed() -> None:
    rules: list[Any] = [
        {
            "attributePatterns": ["genre"],
            "features": {"facetSearch": True, "filter": {"equality": False}},
        },
        "genre",
        "year",
    ]
    assert checked("genre = x", rules) == (
        "Attribute `genre` is not filterable. Available filterable attribute patterns are: "
        "`genre`, "
        "`year`.\n1:6 genre = x"
    )


def test_operator_features_are_enforced() -> None:
    rules: list[Any] = [
        {"attributePatterns": ["price"], "features": {"filter": {"equality": True}}}
    ]
    assert checked("price = 3 AND price != 4 AND price IN [1] AND price EXISTS", rules) is None
    assert checked("price 1 TO 3", rules) == (
        "Filter operator `TO` is not allowed for the attribute `price`.\n"
        "  - Note: allowed operators: OR, AND, NOT, =, !=, IN, IS EMPTY, IS NULL, EXISTS.\n"
        "  - Note: field `price` matched rule #0 in `filterableAttributes`\n"
        "  - Hint: enable comparison in rule #0 by modifying the features.filter object\n"
        "  - Hint: prepend another rule matching `price` with appropriate filter features before "
        "rule #0"
    )
    only_comparison: list[Any] = [
        "x",
        {
            "attributePatterns": ["p*"],
            "features": {"filter": {"equality": False, "comparison": True}},
        },
    ]
    assert checked("price > 3", only_comparison) is None
    message = checked("price IN [3]", only_comparison)
    assert message is not None
    assert message.startswith("Filter operator `=` is not allowed for the attribute `price`.\n")
    assert (
        "allowed operators: OR, AND, NOT, <, >, <=, >=, TO, IS EMPTY, IS NULL, EXISTS." in message
    )
    assert "enable equality in rule #1" in message


def test_geo_filters_need_geo_filterable_and_valid_coordinates() -> None:
    assert checked("_geoRadius(42, 150, 10)", []) == (
        "Attribute `_geo` is not filterable. This index does not have configured filterable "
        "attributes.\n12:14 _geoRadius(42, 150, 10)"
    )
    assert checked("_geoBoundingBox([42, 150], [30, 10])", ["title"]) == (
        "Attribute `_geo` is not filterable. Available filterable attribute patterns are: `title`."
        "\n18:20 _geoBoundingBox([42, 150], [30, 10])"
    )
    assert checked("_geoRadius(-100, 150, 10)", ["_geo"]) == (
        "Bad latitude `-100`. Latitude must be contained between -90 and 90 degrees. "
        "\n12:16 _geoRadius(-100, 150, 10)"
    )
    assert checked("_geoRadius(-10, 180.000001, 10)", ["_geo"]) == (
        "Bad longitude `180.000001`. Longitude must be contained between -180 and 180 degrees. "
        "\n17:27 _geoRadius(-10, 180.000001, 10)"
    )
    assert checked("_geoBoundingBox([30, 10], [42, 150])", ["_geo"]) == (
        "The top latitude `30` is below the bottom latitude `42`.\n32:35 _geoBoundingBox([30, 10], "
        "[42, 150])"
    )
    assert checked("_geoRadius(1, 2, 1e999)", ["_geo"]) == (
        "Non finite floats are not supported\n18:23 _geoRadius(1, 2, 1e999)"
    )
    assert checked("_geoRadius(45.4, 9.1, 2000)", ["_geo"]) is None


DOCS: list[dict[str, Any]] = [
    {
        "id": 0,
        "color": "Red",
        "price": 10,
        "tags": ["a", "B"],
        "size": None,
        "info": {"maker": "Acme"},
    },
    {
        "id": 1,
        "color": "blue",
        "price": 20.5,
        "tags": [],
        "size": "10",
        "info": {"maker": "Éclair"},
    },
    {"id": 2, "color": "RED", "price": "cheap", "tags": ["b"], "size": 10, "notes": ""},
    {"id": 3, "color": ["green", "red"], "price": 500, "info": {}, "flag": True},
    {"id": 4, "price": 1000, "tags": [{"k": 1}, {"k": 2}], "flag": False},
]


@pytest.fixture
def facets() -> FacetIndex:
    index = FacetIndex(lambda field: True)
    for doc in DOCS:
        index.add(doc["id"], doc)
    return index


def ids(facets: FacetIndex, text: str, universe: set[int] | None = None) -> list[int]:
    f = parse_filter(text)
    assert isinstance(f, Filter)
    return sorted(f.evaluate(facets, set(range(len(DOCS))) if universe is None else universe))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("color = red", [0, 2, 3]),
        ("color = 'RED '", [0, 2, 3]),
        ("color != red", [1, 4]),
        ("color IN [blue, green]", [1, 3]),
        ("color NOT IN [blue, green]", [0, 2, 4]),
        ("NOT color = red", [1, 4]),
        ("price = 10", [0]),
        ("price = 10.0", [0]),
        ("size = 10", [1, 2]),
        ("price > 20", [1, 2, 3, 4]),  # "cheap" > "20" as strings
        ("price >= 20.5", [1, 2, 3, 4]),
        ("price < 20.5", [0]),
        ("price 10 TO 500", [0, 1, 3]),
        ("price 500 TO 10", []),
        ("price > abc", [2]),
        ("price a TO d", [2]),
        ("tags = b", [0, 2]),
        ("tags.k = 2", [4]),
        ("info.maker = eclair", []),
        ("info.maker = 'Éclair'", [1]),
        ("info.maker = ACME", [0]),
        ("flag = true", [3]),
        ("flag = FALSE", [4]),
        ("size IS NULL", [0]),
        ("size IS NOT NULL", [1, 2, 3, 4]),
        ("size EXISTS", [0, 1, 2]),
        ("size NOT EXISTS", [3, 4]),
        ("info EXISTS", [0, 1, 3]),
        ("tags IS EMPTY", [1]),
        ("notes IS EMPTY OR info IS EMPTY", [2, 3]),
        ("color CONTAINS e", [0, 1, 2, 3]),
        ("color CONTAINS lu", [1]),
        ("color STARTS WITH R", [0, 2, 3]),
        ("color NOT STARTS WITH r", [1, 4]),
        ("color = red AND price > 100 OR color = blue", [1, 2, 3]),
        ("color = red AND (price > 100 OR color = blue)", [2, 3]),
        ("missing = 1", []),
        ("missing != 1", [0, 1, 2, 3, 4]),
    ],
)
def test_evaluation_semantics(facets: FacetIndex, text: str, expected: list[int]) -> None:
    assert ids(facets, text) == expected


def test_negations_are_relative_to_the_universe(facets: FacetIndex) -> None:
    assert ids(facets, "color != red", {0, 1, 2}) == [1]
    assert ids(facets, "NOT price < 600", {2, 3, 4}) == [2, 4]
    assert ids(facets, "color NOT IN [red]", {3, 4}) == [4]
    assert ids(facets, "color = red", set()) == []
    as_view = parse_filter("color != red AND price 10 TO 1000")
    assert as_view is not None
    assert as_view.evaluate(facets, {doc["id"]: doc for doc in DOCS}.keys()) == {1, 4}


def test_removed_documents_stop_matching(facets: FacetIndex) -> None:
    facets.remove(0, DOCS[0])
    assert ids(facets, "color = red", {1, 2, 3, 4}) == [2, 3]
    assert ids(facets, "price < 100", {1, 2, 3, 4}) == [1]
    assert ids(facets, "size IS NULL", {1, 2, 3, 4}) == []
    facets.add(0, {"id": 0, "price": 42})
    assert ids(facets, "price 40 TO 50") == [0]


def test_only_indexed_fields_are_searchable() -> None:
    index = FacetIndex(lambda field: field == "color")
    index.add(0, {"color": "red", "price": 3})
    assert ids(index, "color = red", {0}) == [0]
    assert ids(index, "price = 3", {0}) == []
    assert index.fields() == {"color"}


def test_geo_radius_and_bounding_box() -> None:
    index = FacetIndex(lambda field: field == "_geo" or field.startswith("_geo."))
    places = {
        0: {"lat": 45.4777599, "lng": 9.1967508},  # Milan
        1: {"lat": 45.4632046, "lng": 9.1719421},  # Milan, 2.5 km away
        2: {"lat": 48.8566, "lng": 2.3522},  # Paris
        3: {"lat": "-33.87", "lng": "151.21"},  # Sydney, coordinates as strings
        4: {"lat": 10.0, "lng": -179.5},
    }
    for doc_id, point in places.items():
        index.add(doc_id, {"_geo": point})
    index.add(5, {"name": "no geo"})
    universe = set(range(6))

    def geo(text: str) -> list[int]:
        f = parse_filter(text)
        assert f is not None
        f.check_filterable(["_geo"])
        return sorted(f.evaluate(index, universe))

    assert geo("_geoRadius(45.4777599, 9.1967508, 0)") == [0]
    assert geo("_geoRadius(45.4777599, 9.1967508, 2000)") == [0]
    assert geo("_geoRadius(45.4777599, 9.1967508, 3000)") == [0, 1]
    assert geo("_geoRadius(45.47, 9.19, 700000)") == [0, 1, 2]
    assert geo("_geoRadius(-33.87, 151.21, 10)") == [3]
    assert geo("_geoBoundingBox([50, 10], [45, 2])") == [0, 1, 2]
    assert geo("_geoBoundingBox([20, -179], [0, 179])") == [4]
    assert geo("NOT _geoBoundingBox([50, 10], [45, 2])") == [3, 4, 5]
    index.remove(1, {"_geo": places[1]})
    assert geo("_geoRadius(45.4777599, 9.1967508, 3000)") == [0]


RANGES: list[tuple[str, Callable[[float], bool]]] = [
    ("n > 150", lambda v: v > 150),
    ("n >= 150", lambda v: v >= 150),
    ("n < 40.5", lambda v: v < 40.5),
    ("n <= 40", lambda v: v <= 40),
    ("n 10 TO 190", lambda v: 10 <= v <= 190),
    ("n 1150 TO 1160", lambda v: 1150 <= v <= 1160),
]


@pytest.mark.parametrize(("text", "matches"), RANGES)
def test_numeric_ranges_agree_for_small_and_large_universes(
    text: str, matches: Callable[[float], bool]
) -> None:
    # Small universes are answered from per-doc values, large ones from postings: same result.
    index = FacetIndex(lambda field: True)
    docs: dict[int, list[int]] = {}
    for doc_id in range(200):
        docs[doc_id] = [doc_id, doc_id + 1000] if doc_id % 10 == 0 else [doc_id]
        index.add(doc_id, {"n": docs[doc_id] if doc_id % 10 == 0 else doc_id})
    f = parse_filter(text)
    assert f is not None
    for universe in (set(range(200)), {0, 7, 10, 150, 151, 160, 199}, {40, 41}, set()):
        want = {d for d in universe if any(matches(v) for v in docs[d])}
        assert f.evaluate(index, universe) == want


def test_arrays_holding_empty_or_null_values_are_neither_empty_nor_null() -> None:
    index = FacetIndex(lambda field: True)
    index.add(0, {"a": [{}], "b": [""], "c": [None], "d": [[]]})
    for field in "abcd":
        assert ids(index, f"{field} EXISTS", {0}) == [0]
        assert ids(index, f"{field} IS EMPTY OR {field} IS NULL", {0}) == []


def test_geo_can_be_enabled_by_an_object_rule() -> None:
    disabled = {"attributePatterns": ["_geo"], "features": {"filter": {"equality": False}}}
    enabled = {"attributePatterns": ["_geo"]}
    assert checked("_geoRadius(1, 2, 3)", [disabled, enabled]) is None
    assert checked("_geoRadius(1, 2, 3)", [disabled]) is not None

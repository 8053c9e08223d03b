"""Index settings: Meilisearch's defaults, validation of submitted settings (synchronous
`invalid_settings_*` 400s with deserr's wording), and how a submitted patch combines with
the current settings.

A patch maps a setting to its new value or to None (reset to default). Set-like settings
come back sorted (Meilisearch stores them as ordered sets); `typoTolerance`, `faceting` and
`pagination` merge field by field. Checks that Meilisearch only makes when the task runs
(`minWordSizeForTypos` ordering) live in `check_when_applied`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from .engine.validation import (
    check_bool,
    check_object,
    check_str,
    check_str_list,
    check_usize,
    type_error,
    unknown_field,
    unknown_value,
    value_error,
)
from .engine.vectors import apply_embedders, check_embedders_when_applied, validate_embedders
from .errors import MeiliError

Settings = dict[str, Any]

RANKING_RULES = ["words", "typo", "proximity", "attributeRank", "sort", "wordPosition", "exactness"]
_BUILTIN_RULES = frozenset(RANKING_RULES) | {"attribute"}
_CUSTOM_RULE = re.compile(r"^.+:(asc|desc)$")

DEFAULTS: Settings = {
    "displayedAttributes": ["*"],
    "searchableAttributes": ["*"],
    "filterableAttributes": [],
    "sortableAttributes": [],
    "rankingRules": RANKING_RULES,
    "stopWords": [],
    "nonSeparatorTokens": [],
    "separatorTokens": [],
    "dictionary": [],
    "synonyms": {},
    "distinctAttribute": None,
    "proximityPrecision": "byWord",
    "typoTolerance": {
        "enabled": True,
        "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9},
        "disableOnWords": [],
        "disableOnAttributes": [],
        "disableOnNumbers": False,
    },
    "faceting": {"maxValuesPerFacet": 100, "sortFacetValuesBy": {"*": "alpha"}},
    "pagination": {"maxTotalHits": 1000},
    "embedders": {},
    "searchCutoffMs": None,
    "localizedAttributes": None,
    "facetSearch": True,
    "prefixSearch": "indexingTime",
}
# Accepted by PATCH /settings but answered with `feature_not_enabled` when set.
DISABLED_SETTINGS = ("chat", "foreignKeys")
_ACCEPTED = [*DEFAULTS, *DISABLED_SETTINGS]

CHAT_DISABLED = (
    "Using the /chats settings requires enabling the `chat completions` experimental feature. "
    "See https://github.com/orgs/meilisearch/discussions/835"
)
FOREIGN_KEYS_DISABLED = (
    "Using the `foreignKeys` setting requires enabling the `foreign keys` experimental feature."
)


def defaults() -> Settings:
    return copy.deepcopy(DEFAULTS)


def code_for(key: str) -> str:
    return "invalid_settings_" + re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _wildcard_list(code: str, path: str, value: Any) -> list[str]:
    items = check_str_list(code, path, value)
    return ["*"] if "*" in items else list(dict.fromkeys(items))


def _sorted_set(code: str, path: str, value: Any) -> list[str]:
    return sorted(set(check_str_list(code, path, value)))


def _ranking_rules(code: str, path: str, value: Any) -> list[str]:
    rules = check_str_list(code, path, value)
    for n, rule in enumerate(rules):
        if rule not in _BUILTIN_RULES and _CUSTOM_RULE.match(rule) is None:
            raise value_error(
                code,
                f"{path}[{n}]",
                f"`{rule}` ranking rule is invalid. Valid ranking rules are words, typo, sort, "
                "proximity, attribute, exactness and custom ranking rules.",
            )
    return rules


def _fields(code: str, path: str, value: Any, accepted: list[str]) -> dict[str, Any]:
    body = check_object(code, path, value)
    for field in body:
        if field not in accepted:
            raise unknown_field(path, field, accepted, code)
    return body


def _filterable(code: str, path: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise type_error(code, path, ["array"], value)
    rules: list[Any] = []
    for n, rule in enumerate(value):
        where = f"{path}[{n}]"
        if isinstance(rule, str):
            rules.append(rule)
            continue
        body = _fields(code, where, rule, ["attributePatterns", "features"])
        patterns = check_str_list(
            code, f"{where}.attributePatterns", body.get("attributePatterns", [])
        )
        features = _fields(
            code, f"{where}.features", body.get("features", {}), ["facetSearch", "filter"]
        )
        filters = _fields(
            code, f"{where}.features.filter", features.get("filter", {}), ["equality", "comparison"]
        )
        rules.append(
            {
                "attributePatterns": patterns,
                "features": {
                    "facetSearch": check_bool(
                        code, f"{where}.features.facetSearch", features.get("facetSearch", False)
                    ),
                    "filter": {
                        "equality": check_bool(
                            code, f"{where}.features.filter.equality", filters.get("equality", True)
                        ),
                        "comparison": check_bool(
                            code,
                            f"{where}.features.filter.comparison",
                            filters.get("comparison", False),
                        ),
                    },
                },
            }
        )
    return rules


def _synonyms(code: str, path: str, value: Any) -> dict[str, list[str]]:
    body = check_object(code, path, value)
    return {word: check_str_list(code, f"{path}.{word}", body[word]) for word in sorted(body)}


def _one_of(accepted: list[str]) -> Callable[[str, str, Any], str]:
    def check(code: str, path: str, value: Any) -> str:
        text = check_str(code, path, value)
        if text not in accepted:
            raise unknown_value(code, path, text, accepted)
        return text

    return check


def _nullable_usize(code: str, path: str, value: Any) -> int | None:
    return None if value is None else check_usize(code, path, value)


def _typo_tolerance(code: str, path: str, value: Any) -> dict[str, Any]:
    fields = [
        "enabled",
        "minWordSizeForTypos",
        "disableOnWords",
        "disableOnAttributes",
        "disableOnNumbers",
    ]
    body = _fields(code, path, value, fields)
    out: dict[str, Any] = {}
    for field, item in body.items():
        where = f"{path}.{field}"
        if item is None:
            out[field] = None
        elif field in ("enabled", "disableOnNumbers"):
            out[field] = check_bool(code, where, item)
        elif field == "minWordSizeForTypos":
            sizes = _fields(code, where, item, ["oneTypo", "twoTypos"])
            out[field] = {k: _nullable_usize(code, f"{where}.{k}", v) for k, v in sizes.items()}
        else:
            out[field] = _sorted_set(code, where, item)
    return out


def _faceting(code: str, path: str, value: Any) -> dict[str, Any]:
    body = _fields(code, path, value, ["maxValuesPerFacet", "sortFacetValuesBy"])
    out: dict[str, Any] = {}
    for field, item in body.items():
        where = f"{path}.{field}"
        if field == "maxValuesPerFacet":
            out[field] = _nullable_usize(code, where, item)
        elif item is None:
            out[field] = None
        else:
            order = check_object(code, where, item)
            check = _one_of(["alpha", "count"])
            out[field] = {name: check(code, f"{where}.{name}", v) for name, v in order.items()}
    return out


def _pagination(code: str, path: str, value: Any) -> dict[str, Any]:
    body = _fields(code, path, value, ["maxTotalHits"])
    return {k: _nullable_usize(code, f"{path}.{k}", v) for k, v in body.items()}


def _localized(code: str, path: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise type_error(code, path, ["array"], value)
    rules = []
    for n, rule in enumerate(value):
        where = f"{path}[{n}]"
        body = _fields(code, where, rule, ["attributePatterns", "locales"])
        rules.append(
            {
                "attributePatterns": check_str_list(
                    code, f"{where}.attributePatterns", body.get("attributePatterns", [])
                ),
                "locales": check_str_list(code, f"{where}.locales", body.get("locales", [])),
            }
        )
    return rules


_VALIDATORS: dict[str, Callable[[str, str, Any], Any]] = {
    "displayedAttributes": _wildcard_list,
    "searchableAttributes": _wildcard_list,
    "filterableAttributes": _filterable,
    "sortableAttributes": _sorted_set,
    "rankingRules": _ranking_rules,
    "stopWords": _sorted_set,
    "nonSeparatorTokens": _sorted_set,
    "separatorTokens": _sorted_set,
    "dictionary": _sorted_set,
    "synonyms": _synonyms,
    "distinctAttribute": check_str,
    "proximityPrecision": _one_of(["byWord", "byAttribute"]),
    "typoTolerance": _typo_tolerance,
    "faceting": _faceting,
    "pagination": _pagination,
    "embedders": validate_embedders,
    "searchCutoffMs": lambda code, path, value: check_usize(code, path, value),
    "localizedAttributes": _localized,
    "facetSearch": check_bool,
    "prefixSearch": _one_of(["indexingTime", "disabled"]),
}


def validate_value(key: str, value: Any, path: str) -> Any:
    """One setting's submitted value, checked and normalized; None means reset."""
    if key == "chat" and value is not None:
        raise MeiliError("feature_not_enabled", CHAT_DISABLED)
    if key == "foreignKeys" and value is not None:
        raise MeiliError("feature_not_enabled", FOREIGN_KEYS_DISABLED)
    if value is None or key in DISABLED_SETTINGS:
        return None
    return _VALIDATORS[key](code_for(key), path, value)


def validate_patch(body: Any) -> Settings:
    """The body of PATCH /settings as a patch; fields are checked in the order sent."""
    body = check_object("bad_request", "", body)
    patch: Settings = {}
    for key, value in body.items():
        if key not in _ACCEPTED:
            raise unknown_field("", key, _ACCEPTED)
        if key not in DISABLED_SETTINGS:
            patch[key] = validate_value(key, value, f".{key}")
        else:
            validate_value(key, value, f".{key}")
    return patch


def reset_all() -> Settings:
    return dict.fromkeys(DEFAULTS)


def _merge(
    current: dict[str, Any], changes: dict[str, Any], default: dict[str, Any]
) -> dict[str, Any]:
    merged = dict(current)
    for field, value in changes.items():
        if value is None:
            merged[field] = copy.deepcopy(default[field])
        elif (
            isinstance(value, dict)
            and isinstance(default[field], dict)
            and field != "sortFacetValuesBy"
        ):
            merged[field] = _merge(current[field], value, default[field])
        else:
            merged[field] = value
    return merged


def apply_patch(current: Settings, patch: Settings) -> Settings:
    updated = dict(current)
    for key, value in patch.items():
        if value is None:
            updated[key] = copy.deepcopy(DEFAULTS[key])
        elif key in ("typoTolerance", "faceting", "pagination"):
            updated[key] = _merge(current[key], value, DEFAULTS[key])
        elif key == "embedders":
            updated[key] = apply_embedders(current[key], value)
        else:
            updated[key] = value
    order = updated["faceting"]["sortFacetValuesBy"]
    if "*" not in order:
        updated["faceting"] = {**updated["faceting"], "sortFacetValuesBy": {"*": "alpha", **order}}
    return updated


def check_when_applied(settings: Settings) -> None:
    check_embedders_when_applied(settings["embedders"])
    sizes = settings["typoTolerance"]["minWordSizeForTypos"]
    one, two = sizes["oneTypo"], sizes["twoTypos"]
    if not (0 <= one <= 255 and 0 <= two <= 255 and one <= two):
        raise MeiliError(
            "invalid_settings_typo_tolerance",
            "`minWordSizeForTypos` setting is invalid. `oneTypo` and `twoTypos` fields should be "
            "between `0` and `255`, and `twoTypos` should be greater or equals to `oneTypo` but "
            f"found `oneTypo: {one}` and twoTypos: {two}`.",
        )

"""Query-string parameters of the non-search routes, with Meilisearch's messages (the
wording helpers live in `engine.validation`, shared with the search routes)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from .engine.validation import parameter_error, unknown_parameter


def check_query(params: Mapping[str, str], allowed: Collection[str]) -> None:
    for name in params:
        if name not in allowed:
            raise unknown_parameter(name, list(allowed))


def query_uint(params: Mapping[str, str], name: str, code: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise parameter_error(code, name, f"could not parse `{raw}` as a positive integer")
    return int(raw)


def query_bool(params: Mapping[str, str], name: str, code: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise parameter_error(
            code, name, f"could not parse `{raw}` as a boolean, expected either `true` or `false`"
        )
    return raw == "true"


def query_list(params: Mapping[str, str], name: str) -> list[str] | None:
    """A comma-separated parameter (`fields=a,b`), or None when absent."""
    raw = params.get(name)
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]

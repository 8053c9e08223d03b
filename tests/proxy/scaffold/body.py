"""Validation of the scaffold routes' JSON bodies, with Miroir's error shape."""

from __future__ import annotations

from typing import Any

from miroir_proxy.core.errors import MiroirError


def bounded(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name)
    if type(value) is not int or not low <= value <= high:
        raise MiroirError("bad_request", f"`{name}` must be an integer from {low} to {high}.")
    return value


def non_empty(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise MiroirError("bad_request", f"`{name}` must be a non-empty string.")
    return value

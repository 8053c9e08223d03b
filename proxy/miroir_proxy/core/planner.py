"""Search planning: which shards a query can touch, and the filter each node receives.

A filter that pins the primary key at the top level (``pk = X``, ``pk IN [..]``, ANDed
with anything, or ORed only with other pins) touches only the shards of those ids, so the
covering set can shrink to them. Values are matched the way a node would: a filter value
``1`` matches the id ``1`` and the id ``"1"``, which share a shard because integer ids
hash their decimal text. A value that reads as a number in another spelling (``1.0``,
``01``, ``1e0``) would also match an integer id numerically, so it pins nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from miroir_proxy.core.filters import (
    And,
    Equals,
    Expr,
    FilterSyntax,
    In,
    Or,
    parse_filter_param,
)
from miroir_proxy.core.hashing import shard_of

SHARD_FIELD = "_miroir_shard"
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")
_EXACT_FLOAT_INT = 2**53


def _pinned_shard(value: str, shards: int) -> int | None:
    # Nodes compare a filter value both as text and, when it parses, as a number (quoted
    # or not), and numbers are f64: only a canonical integer within 2**53 reaches exactly
    # the ids whose decimal text it is.
    if _CANONICAL_INT.fullmatch(value):
        return shard_of(value, shards) if abs(int(value)) <= _EXACT_FLOAT_INT else None
    try:
        float(value)
    except ValueError:
        return shard_of(value, shards)
    return None


def _pins(expr: Expr, primary_key: str, shards: int) -> frozenset[int] | None:
    """Shards ``expr`` can match on, or ``None`` when it can match on any shard."""
    if isinstance(expr, Equals):
        if expr.attribute != primary_key:
            return None
        shard = _pinned_shard(expr.value, shards)
        return None if shard is None else frozenset((shard,))
    if isinstance(expr, In):
        if expr.attribute != primary_key:
            return None
        found: set[int] = set()
        for value in expr.values:
            shard = _pinned_shard(value, shards)
            if shard is None:
                return None
            found.add(shard)
        return frozenset(found)
    if isinstance(expr, And):
        pinned: frozenset[int] | None = None
        for operand in expr.operands:
            inner = _pins(operand, primary_key, shards)
            if inner is not None:
                pinned = inner if pinned is None else pinned & inner
        return pinned
    if isinstance(expr, Or):
        union: set[int] = set()
        for operand in expr.operands:
            inner = _pins(operand, primary_key, shards)
            if inner is None:
                return None
            union |= inner
        return frozenset(union)
    return None


def pinned_shards(filter_param: Any, primary_key: str | None, shards: int) -> frozenset[int] | None:
    """Shards a search with ``filter_param`` can touch; ``None`` means all of them.

    Never empty: a filter that provably matches nothing still needs one node to answer
    (and to validate it), so shard 0 is kept.
    """
    if primary_key is None:
        return None
    try:
        expr = parse_filter_param(filter_param)
    except FilterSyntax:
        return None
    if expr is None:
        return None
    pinned = _pins(expr, primary_key, shards)
    if pinned is not None and not pinned:
        return frozenset((0,))
    return pinned


def shard_restriction(shards: Collection[int]) -> str:
    return f"{SHARD_FIELD} IN [{', '.join(str(s) for s in sorted(shards))}]"


def _is_empty(filter_param: Any) -> bool:
    if filter_param is None:
        return True
    if isinstance(filter_param, str):
        return not filter_param.strip()
    return isinstance(filter_param, list) and not filter_param


def and_filters(*filters: Any) -> Any:
    """AND several filters, keeping the string form unless one of them is an array."""
    present = [f for f in filters if not _is_empty(f)]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    if all(isinstance(f, str) for f in present):
        return " AND ".join(f"({f})" for f in present)
    combined: list[Any] = []
    for f in present:
        if isinstance(f, list):
            combined.extend(f)
        else:
            combined.append(f)
    return combined


def node_filter(client_filter: Any, shards: Collection[int] | None) -> Any:
    """The filter one node receives: the client's, restricted to ``shards`` when given."""
    if shards is None:
        return None if _is_empty(client_filter) else client_filter
    return and_filters(client_filter, shard_restriction(shards))

"""Mixing the keyword and semantic halves of a hybrid search, as one Meilisearch node does.

A node runs a hybrid search (``semanticRatio`` below 1) as two searches: the keyword one
for the first ``offset + limit`` hits, kept alone when each of them scores at least 0.45
once weighted by ``1 - semanticRatio``; otherwise the semantic one for as many hits, and
the two lists are merged by weighted ``_rankingScore`` (the semantic hit first on a tie
within f64 epsilon), each document once, before the page is cut. Scores are weighted by the
ratio as milli's f32: 0.7 weighs 0.699999988079071 and its complement 0.30000001192092896.

Both halves are pure functions of (document, query), so the proxy merges each half across
shards exactly (``core.merging``) and then mixes them here: the result equals one node's.
Hits of a node's own hybrid answer could not be mixed this way, since the node skips its
semantic half when its own keyword hits are good enough, which says nothing of the others'.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Hashable, Sequence
from typing import Any

Hit = dict[str, Any]
GOOD_ENOUGH_SCORE = 0.45


def _single(value: float) -> float:
    """``value`` rounded to an IEEE single, as Rust's ``f32``."""
    return array("f", (value,))[0]


def weights(ratio: float) -> tuple[float, float]:
    """(semantic weight, keyword weight) of a semantic ratio."""
    semantic = _single(ratio)
    return semantic, _single(1.0 - semantic)


def keyword_suffices(keyword: Sequence[Hit], wanted: int, ratio: float) -> bool:
    """True when a node would answer with the keyword hits alone."""
    if len(keyword) < wanted:
        return False
    weight = weights(ratio)[1]
    scores = (float(hit.get("_rankingScore", 0.0)) for hit in keyword)
    return all(score * weight >= GOOD_ENOUGH_SCORE for score in scores)


def mix(
    semantic: Sequence[Hit],
    keyword: Sequence[Hit],
    ratio: float,
    identity: Callable[[Hit], Hashable],
) -> list[tuple[Hit, bool]]:
    """Both lists in merged order, each document at its first place, with whether that
    place came from the semantic list."""
    semantic_weight, keyword_weight = weights(ratio)
    merged: list[tuple[Hit, bool]] = []
    seen: set[Hashable] = set()
    s = k = 0
    while s < len(semantic) or k < len(keyword):
        from_semantic = k == len(keyword)
        if not from_semantic and s < len(semantic):
            left = float(semantic[s].get("_rankingScore", 0.0)) * semantic_weight
            right = float(keyword[k].get("_rankingScore", 0.0)) * keyword_weight
            from_semantic = left >= right or right - left <= sys.float_info.epsilon
        if from_semantic:
            hit, s = semantic[s], s + 1
        else:
            hit, k = keyword[k], k + 1
        key = identity(hit)
        if key not in seen:
            seen.add(key)
            merged.append((hit, from_semantic))
    return merged

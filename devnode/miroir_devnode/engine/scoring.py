"""Meilisearch's score arithmetic and `_rankingScoreDetails` rendering.

Ranks are merged mixed-radix exactly as milli's `Rank::global_score`, so a score is a
lexicographic position among all possible verdicts; sort verdicts take no part in it.
`details_json` follows milli's `ScoreDetails::to_json_map`, including the legacy
`attribute` rule that folds attributeRank and wordPosition into one entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

_SORT_KINDS = frozenset(("sort", "geo"))


class Detail(NamedTuple):
    """One rule's verdict: `rank` out of `max_rank` plus what the JSON details show."""

    kind: str
    rank: int
    max_rank: int
    info: tuple[Any, ...] = ()


def global_score(details: Sequence[Detail]) -> float:
    rank, max_rank = 1, 1
    for detail in details:
        if detail.kind in _SORT_KINDS:
            continue
        rank = max(rank - 1, 0) * detail.max_rank + detail.rank
        max_rank *= detail.max_rank
    return rank / max_rank


def details_json(details: Sequence[Detail], unified_attribute: bool) -> dict[str, Any]:
    """milli's `ScoreDetails::to_json_map`."""
    out: dict[str, Any] = {}
    order = 0
    fid: Detail | None = None
    for detail in details:
        score = detail.rank / detail.max_rank if detail.max_rank else 0.0
        kind = detail.kind
        if kind in ("words", "typo"):
            count_key = (
                ("matchingWords", "maxMatchingWords")
                if kind == "words"
                else (
                    "typoCount",
                    "maxTypoCount",
                )
            )
            out[kind] = {"order": order, count_key[0]: detail.info[0], count_key[1]: detail.info[1]}
            out[kind]["score"] = score
        elif kind == "proximity":
            out["proximity"] = {"order": order, "score": score}
        elif kind == "fid" and unified_attribute:
            fid = detail
            out["attribute"] = {"order": order, "attributeRankingOrderScore": score}
        elif kind == "fid":
            out["attributeRank"] = {"order": order, "score": score}
        elif kind == "position" and unified_attribute and fid is not None:
            out["attribute"]["queryWordDistanceScore"] = score
            out["attribute"]["score"] = global_score((fid, detail))
            continue
        elif kind == "position":
            out["wordPosition"] = {"order": order, "score": score}
        elif kind == "exactAttribute":
            out["exactness"] = {"order": order, "matchType": detail.info[0], "score": score}
        elif kind == "exactWords":
            exactness = out["exactness"]
            if exactness["matchType"] == "noExactMatch":
                del exactness["score"]
                exactness["matchingWords"], exactness["maxMatchingWords"] = detail.info
                exactness["score"] = global_score((_NO_EXACT_MATCH, detail))
            continue
        elif kind == "sort":
            out[detail.info[0]] = {"order": order, "value": detail.info[1]}
        elif kind == "geo":
            out[detail.info[0]] = {
                "order": order,
                "value": detail.info[1],
                "distance": detail.info[2],
            }
        order += 1
    return out


EXACT_ATTRIBUTE = {
    3: Detail("exactAttribute", 3, 3, ("exactMatch",)),
    2: Detail("exactAttribute", 2, 3, ("matchesStart",)),
    1: Detail("exactAttribute", 1, 3, ("noExactMatch",)),
}
_NO_EXACT_MATCH = EXACT_ATTRIBUTE[1]

"""Semantic and hybrid search over user-provided embeddings, as milli runs them.

`hybrid.semanticRatio` 1.0 is a semantic-only search: every candidate ranked by
similarity, the ones without an embedding last (`semanticHitCount` counts all returned
hits). Below 1.0 milli runs the keyword search first (`offset + limit` hits) and keeps it
alone when every hit scores at least 0.45 once weighted by `1 - semanticRatio`; otherwise
it runs the semantic search too and merges the two lists by weighted score (semantic first
on ties), each document once, before the page is cut. Without a `vector` a userProvided
embedder has nothing to compare, so a hybrid search keeps its keyword hits and a
semantic-only one fails as milli's embedding call does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

import orjson

from miroir_devnode.engine import vectors
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.ranking import Bucket, RankedHit, RuleFn, SortRule, Split, bucket_sort
from miroir_devnode.engine.scoring import Detail
from miroir_devnode.engine.search_params import SearchParams
from miroir_devnode.engine.sorting import column_groups, custom_rule_field, geo_split, sort_split
from miroir_devnode.errors import MeiliError

GOOD_ENOUGH_SCORE = 0.45
_EPSILON = sys.float_info.epsilon


@dataclass(frozen=True, slots=True)
class Plan:
    embedder: str
    vector: list[float] | None
    ratio: float

    @property
    def semantic_only(self) -> bool:
        return self.ratio == 1.0


def plan(index: Index, params: SearchParams, code: str) -> Plan | None:
    """What kind of search `params` asks for: None for keyword only; raises Meilisearch's
    errors for semantic parameters that cannot be served (after `search.check_unsupported`)."""
    nothing_to_embed = params.vector is None and params.media is None
    if params.hybrid is None:
        if nothing_to_embed:
            return None
        raise MeiliError(
            "missing_search_hybrid",
            "Invalid request: missing `hybrid` parameter when `vector` is present.",
        )
    # Meilisearch falls back to a keyword search when there is nothing to embed at all.
    if nothing_to_embed and (params.q is None or not params.q.strip()):
        return None
    name = str(params.hybrid["embedder"])
    embedder = (index.settings.get("embedders") or {}).get(name)
    if embedder is None:
        raise MeiliError(code, f"Cannot find embedder with name `{name}`.")
    if params.vector is not None and len(params.vector) != embedder.get("dimensions"):
        raise MeiliError(
            "invalid_vector_dimensions",
            f"Invalid vector dimensions: expected: `{embedder.get('dimensions')}`, "
            f"found: `{len(params.vector)}`.",
        )
    ratio = float(params.hybrid.get("semanticRatio", 0.5))
    if ratio == 1.0 and params.vector is None:
        raise MeiliError(
            "vector_embedding_error",
            "Error while generating embeddings: user error: attempt to embed the following "
            "text in a configuration where embeddings must be user provided: "
            f"{orjson.dumps(params.q or '').decode()}",
        )
    return Plan(name, params.vector, ratio)


def _details(similarity: float | None) -> dict[str, Any]:
    return {"vectorSort": {"order": 0, "similarity": similarity}}


_RELEVANCY_RULES = frozenset(
    ("words", "typo", "proximity", "attribute", "attributeRank", "wordPosition", "exactness")
)


def _vector_rule(similarities: Mapping[int, float | None]) -> RuleFn:
    """Documents by similarity, best first, then the ones without an embedding."""

    def split(bucket: Bucket, kept: tuple[int, ...]) -> Split:
        groups: dict[float | None, set[int]] = {}
        for doc in bucket:
            groups.setdefault(similarities.get(doc), set()).add(doc)
        for similarity in sorted((s for s in groups if s is not None), reverse=True):
            yield (Detail("vector", 0, 0, (similarity,)),), groups[similarity], kept
        if None in groups:
            yield (Detail("vector", 0, 0, (None,)),), groups[None], kept

    return split


def _sort_rule(index: Index, rule: SortRule) -> RuleFn:
    if rule.geo_point is not None:
        return geo_split(rule, index.geo_point)
    column = index.column(rule.field)
    return sort_split(rule, column, lambda: column_groups(column, rule.ascending))


def vector_rules(
    index: Index, similarities: Mapping[int, float | None], sort: Sequence[SortRule]
) -> list[RuleFn]:
    """milli's ranking rules for a semantic search: the similarity takes the place of the
    first relevancy rule (or comes last without one); `sort` and custom rules keep theirs."""
    rules: list[RuleFn] = []
    vector = sorted_ = False
    for name in index.settings.get("rankingRules") or ():
        if name in _RELEVANCY_RULES and not vector:
            vector = True
            rules.append(_vector_rule(similarities))
        elif name == "sort" and sort and not sorted_:
            sorted_ = True
            rules.extend(_sort_rule(index, rule) for rule in sort)
        elif (custom := custom_rule_field(name)) is not None:
            rules.append(_sort_rule(index, SortRule(*custom)))
    if not vector:
        rules.append(_vector_rule(similarities))
    return rules


def _details_json(details: Sequence[Detail]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for order, detail in enumerate(details):
        if detail.kind == "vector":
            out["vectorSort"] = {"order": order, "similarity": detail.info[0]}
        elif detail.kind == "sort":
            out[detail.info[0]] = {"order": order, "value": detail.info[1]}
        else:
            name, value, distance = detail.info
            out[name] = {"order": order, "value": value, "distance": distance}
    return out


def ranked(
    index: Index,
    query: list[float],
    embedder: str,
    candidates: Iterable[int],
    *,
    threshold: float | None,
    details: bool,
    sort: Sequence[SortRule] = (),
) -> list[RankedHit]:
    """Candidates in milli's semantic order (`vector_rules`); the score is the similarity,
    0 without an embedding."""
    similarities: dict[int, float | None] = dict(
        vectors.rank(query, index.vectors.get(embedder, {}), candidates)
    )
    rules = vector_rules(index, similarities, sort)
    hits = []
    for doc, verdicts in bucket_sort(set(similarities), rules, ()):
        similarity = similarities[doc]
        score = 0.0 if similarity is None else similarity
        if threshold is not None and score < threshold:
            continue
        hits.append(RankedHit(doc, score, _details_json(verdicts) if details else None))
    return hits


def good_enough(keyword: list[RankedHit], want: int, ratio: float) -> bool:
    """milli's `results_good_enough`: enough keyword hits, all good once weighted."""
    if len(keyword) < want:
        return False
    weight = vectors.f32(1.0 - vectors.f32(ratio))
    return all(hit.score * weight >= GOOD_ENOUGH_SCORE for hit in keyword)


def mix(
    semantic: list[RankedHit], keyword: list[RankedHit], ratio: float, page: tuple[int, int]
) -> tuple[list[RankedHit], int]:
    """Both lists merged by weighted score, each document once; with the number of
    semantic hits in the page (offset, limit) of the merged list."""
    semantic_weight = vectors.f32(ratio)
    keyword_weight = vectors.f32(1.0 - vectors.f32(ratio))
    merged: list[RankedHit] = []
    sources: list[bool] = []
    seen: set[int] = set()
    i = j = 0
    while i < len(semantic) or j < len(keyword):
        take_semantic = j >= len(keyword)
        if not take_semantic and i < len(semantic):
            left = semantic[i].score * semantic_weight
            right = keyword[j].score * keyword_weight
            take_semantic = abs(left - right) <= _EPSILON or left > right
        if take_semantic:
            hit = semantic[i]
            i += 1
        else:
            hit = keyword[j]
            j += 1
        if hit.internal_id in seen:
            continue
        seen.add(hit.internal_id)
        merged.append(hit)
        sources.append(take_semantic)
    offset, limit = page
    return merged, sum(sources[offset : offset + limit])


def similar_documents(
    index: Index,
    target: int,
    embedder: str,
    universe: Set[int] | None,
    *,
    page: tuple[int, int],
    threshold: float | None,
    details: bool,
) -> tuple[list[RankedHit], int]:
    """milli's `Similar`: the page (offset, limit) of the documents with an embedding,
    closest to any of the target's embeddings first, never the target; and the candidate
    count: the filtered documents but the target, or, when a hit of the page scores under
    the threshold, the documents before it."""
    candidates = set(index.all_internal() if universe is None else universe)
    candidates.discard(target)
    own = index.vectors.get(embedder, {}).get(target) or []
    store = index.vectors.get(embedder, {})
    best: dict[int, float] = {}
    for embedding in own:
        for doc, similarity in vectors.rank(embedding, store, candidates):
            if similarity is not None:
                best[doc] = max(best.get(doc, 0.0), similarity)
    order = sorted(best.items(), key=lambda item: (-item[1], item[0]))
    offset, limit = page
    hits: list[RankedHit] = []
    for position, (doc, score) in enumerate(order[offset : offset + limit]):
        if threshold is not None and score < threshold:
            return hits, offset + position
        hits.append(RankedHit(doc, score, _details(score) if details else None))
    return hits, len(candidates)

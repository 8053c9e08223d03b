"""GET /indexes/{uid}/documents and POST …/documents/fetch: list documents by ids, filter and sort.

Meilisearch's documents routes ignore `displayedAttributes` (only `fields` narrows a
document) and hide `_vectors` unless `retrieveVectors` asks for it. Documents come in
internal-id order unless `sort` is given; filter and sort errors use the
`invalid_document_*` codes and, unlike search, carry no "Index `uid`: " prefix.
"""

from __future__ import annotations

import heapq
from collections.abc import Set
from typing import Any

from miroir_devnode.engine import attribute_checks as checks
from miroir_devnode.engine.formatting import select_values
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.patterns import is_faceted_by
from miroir_devnode.engine.search import filtered_universe
from miroir_devnode.engine.vectors import VECTORS, shown_vectors
from miroir_devnode.errors import MeiliError


def fetch_documents(
    index: Index,
    *,
    offset: int,
    limit: int,
    fields: list[str] | None,
    filter: Any,
    ids: list[str] | None,
    sort: list[str] | None,
    features: dict[str, bool] | None = None,
    retrieve_vectors: bool = False,
) -> dict[str, Any]:
    candidates: Set[int] = index.all_internal()
    if ids is not None:
        candidates = {i for i in map(index.internal_id, ids) if i is not None}
    universe = filtered_universe(
        index,
        filter,
        code="invalid_document_filter",
        features=features or {},
        prefix_index=False,
    )
    if universe is not None:
        candidates = universe & candidates if isinstance(candidates, set) else set(universe)
    total = len(candidates)
    if sort:
        page = _sorted_page(index, candidates, sort, offset + limit)[offset:]
    else:
        page = heapq.nsmallest(offset + limit, candidates)[offset:]
    results = []
    for internal in page:
        document = index.document(internal)
        shown = select_values(document, fields) if fields is not None else dict(document)
        shown.pop(VECTORS, None)
        if retrieve_vectors:
            vectors = shown_vectors(document, index.settings.get("embedders") or {})
            if vectors is not None:
                shown[VECTORS] = vectors
        results.append(shown)
    return {"results": results, "offset": offset, "limit": limit, "total": total}


def _sorted_page(index: Index, candidates: Set[int], sort: list[str], want: int) -> list[int]:
    try:
        rules = checks.parse_sort(sort)
    except MeiliError as error:
        raise MeiliError("invalid_document_sort", error.message) from None
    sortable = list(index.settings.get("sortableAttributes") or [])
    for rule in rules:
        if rule.geo_point is not None:
            raise MeiliError(
                "invalid_document_sort", "Geo sort is not supported for document retrieval."
            )
        if not any(is_faceted_by(rule.field, s) for s in sortable):
            tail = (
                f"Available sortable attributes are: `{', '.join(sorted(sortable))}`."
                if sortable
                else "This index does not have configured sortable attributes."
            )
            raise MeiliError(
                "invalid_document_sort", f"Attribute `{rule.field}` is not sortable. {tail}"
            )
    result = index.query(None, universe=candidates, sort=rules, want=want)
    return [hit.internal_id for hit in result.ranked]

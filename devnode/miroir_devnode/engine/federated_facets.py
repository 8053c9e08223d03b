"""Facets of a federated search: `federation.facetsByIndex`, optionally merged by `mergeFacets`.

Mirrors Meilisearch's federated search: each index's facets are counted over the union of
the candidates of its queries; with `mergeFacets`, every index must order a facet's values
the same way (checked before the index's queries run), counts are summed and stats widened.
Indexes named in `facetsByIndex` but not queried are still validated, never reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from typing import Any

from miroir_devnode.engine.index import Index
from miroir_devnode.engine.search import compute_facets, facet_order
from miroir_devnode.errors import MeiliError

_ORDER_TEXT = {"alpha": "alphabetically", "count": "by count"}


class BodyIndexNotFound(MeiliError):
    """`index_not_found` for an index named in the body, not the URL: Meilisearch answers 400."""

    @property
    def status(self) -> int:
        return 400


def index_from_body(
    get_index: Callable[[str], Index], uid: str, prefix: str, note: str = ""
) -> Index:
    try:
        return get_index(uid)
    except MeiliError as error:
        if error.code != "index_not_found":
            raise
        raise BodyIndexNotFound(error.code, f"{prefix}{error.message}{note}") from None


class FederatedFacets:
    def __init__(self, federation: Mapping[str, Any], get_index: Callable[[str], Index]) -> None:
        self.requested: dict[str, list[str] | None] = dict(federation.get("facets_by_index") or {})
        self.merge: Mapping[str, Any] | None = federation.get("merge_facets")
        self.get_index = get_index
        self.orders: dict[str, tuple[str, str]] = {}
        self.by_index: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _where(uid: str) -> str:
        return f"Inside `.federation.facetsByIndex.{uid}`: "

    def start_index(self, uid: str, index: Index, first_query: int) -> list[str] | None:
        """This index's requested facets, after the order check Meilisearch runs first."""
        facets = self.requested.pop(uid, None)
        self._check_order(
            uid, index, facets, f"\n - Note: index `{uid}` used in `.queries[{first_query}]`"
        )
        return facets

    def finish_index(
        self,
        uid: str,
        index: Index,
        facets: list[str] | None,
        candidates: Set[int],
        first_query: int,
    ) -> None:
        if facets is None:
            return
        note = f"\n - Note: index `{uid}` used in `.queries[{first_query}]`"
        distribution, stats = self._compute(uid, index, facets, candidates, note)
        self.by_index[uid] = {"distribution": distribution, "stats": stats}

    def check_unused(self) -> None:
        for uid, facets in self.requested.items():
            note = f"\n - Note: index `{uid}` is not used in queries"
            index = index_from_body(self.get_index, uid, self._where(uid), note)
            self._check_order(uid, index, facets, note)
            if facets is not None:
                self._compute(uid, index, facets, set(), note)

    def _compute(
        self, uid: str, index: Index, facets: list[str], candidates: Set[int], note: str
    ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
        try:
            return compute_facets(index, facets, candidates)
        except MeiliError as error:
            code = (
                "invalid_multi_search_facets"
                if error.code == "invalid_search_facets"
                else error.code
            )
            raise MeiliError(code, f"{self._where(uid)}{error.message}{note}") from None

    def _check_order(self, uid: str, index: Index, facets: list[str] | None, note: str) -> None:
        if self.merge is None or facets is None:
            return
        for facet in facets:
            order = facet_order(index.settings, facet)
            previous_uid, previous = self.orders.setdefault(facet, (uid, order))
            if previous != order:
                raise MeiliError(
                    "invalid_multi_search_facet_order",
                    f"{self._where(uid)}Inconsistent order for values in facet `{facet}`: index "
                    f"`{previous_uid}` orders {_ORDER_TEXT[previous]}, but index `{uid}` orders "
                    f"{_ORDER_TEXT[order]}.\n - Hint: Remove `federation.mergeFacets` or change "
                    f"`faceting.sortFacetValuesBy` to be consistent in settings.{note}",
                )

    def render(self) -> dict[str, Any]:
        if not self.by_index:
            return {}
        if self.merge is None:
            return {"facetsByIndex": self.by_index}
        return self._merged(self.merge.get("maxValuesPerFacet"))

    def _merged(self, cap: int | None) -> dict[str, Any]:
        distribution: dict[str, dict[str, int]] = {}
        stats: dict[str, dict[str, float]] = {}
        for facets in self.by_index.values():
            for field, values in facets["distribution"].items():
                bucket = distribution.setdefault(field, {})
                for value, count in values.items():
                    bucket[value] = bucket.get(value, 0) + count
            for field, found in facets["stats"].items():
                merged = stats.setdefault(field, dict(found))
                merged["min"] = min(merged["min"], found["min"])
                merged["max"] = max(merged["max"], found["max"])
        for field, values in distribution.items():
            if self.orders.get(field, ("", "alpha"))[1] == "count":
                ordered = sorted(values.items(), key=lambda item: -item[1])
            else:
                ordered = sorted(values.items())
            distribution[field] = dict(ordered[:cap] if cap is not None else ordered)
        return {
            "facetDistribution": dict(sorted(distribution.items())),
            "facetStats": dict(sorted(stats.items())),
        }

"""`core.hybrid`: the weights, the keyword-only shortcut and the weighted mix of one node.
That the mix of halves merged across shards equals one node's answer is shown end to end
(`tests/proxy/e2e/test_parity_vectors.py`)."""

from __future__ import annotations

from typing import Any

from miroir_proxy.core.hybrid import keyword_suffices, mix, weights


def hit(doc: int, score: float) -> dict[str, Any]:
    return {"id": doc, "_rankingScore": score}


def ident(h: dict[str, Any]) -> Any:
    return h["id"]


def test_weights_are_single_precision() -> None:
    assert weights(0.7) == (0.699999988079071, 0.30000001192092896)
    assert weights(0.5) == (0.5, 0.5)
    assert weights(0.0) == (0.0, 1.0)


def test_keyword_hits_suffice_only_when_enough_and_all_good() -> None:
    good = [hit(1, 1.0), hit(2, 0.9)]
    assert keyword_suffices(good, 2, 0.5)
    assert not keyword_suffices(good, 3, 0.5)  # too few
    assert not keyword_suffices(good, 2, 0.6)  # 0.9 * 0.4 < 0.45
    assert not keyword_suffices([hit(1, 1.0), hit(2, 0.89)], 2, 0.5)


def test_mix_orders_by_weighted_score_semantic_first_on_ties() -> None:
    semantic = [hit(1, 0.9), hit(2, 0.5)]
    keyword = [hit(3, 0.9), hit(1, 0.8)]
    mixed = mix(semantic, keyword, 0.5, ident)
    assert [(h["id"], s) for h, s in mixed] == [(1, True), (3, False), (2, True)]
    # With ratio 0 every semantic hit weighs 0 and comes after the keyword ones.
    assert [h["id"] for h, _ in mix(semantic, keyword, 0.0, ident)] == [3, 1, 2]

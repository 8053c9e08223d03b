"""The canonical hash the settings verification compares nodes by."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from miroir_proxy.operations.settingsync import canonical_hash

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=8), _VALUES, max_size=6))
def test_key_order_does_not_matter(settings: dict[str, Any]) -> None:
    reordered = dict(reversed(list(settings.items())))
    assert canonical_hash(reordered) == canonical_hash(settings)


def test_a_changed_value_or_list_order_changes_it() -> None:
    base = {"stopWords": ["a", "the"], "rankingRules": ["words", "typo"]}
    assert canonical_hash(base) != canonical_hash({**base, "stopWords": ["a"]})
    assert canonical_hash(base) != canonical_hash({**base, "rankingRules": ["typo", "words"]})

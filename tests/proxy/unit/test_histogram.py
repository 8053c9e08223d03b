"""The lean histogram is exposed exactly as prometheus_client's own `Histogram`."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from miroir_proxy.histogram import LabeledHistogram

BUCKETS = (0.001, 0.0025, 0.01, 1, 30.0)


def exposition(registry: CollectorRegistry) -> list[str]:
    # prometheus_client adds `_created` timestamps; the rest must be identical.
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GET", "POST"]),
            # Bucket bounds themselves included: `le` is inclusive.
            st.one_of(st.sampled_from(BUCKETS), st.floats(0, 100, allow_nan=False)),
        ),
        max_size=40,
    )
)
def test_observations_render_as_prometheus_client_renders_them(
    observations: list[tuple[str, float]],
) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("x_seconds", "Doc.", ["method"], buckets=BUCKETS, registry=theirs)
    lean = LabeledHistogram("x_seconds", "Doc.", ["method"], BUCKETS, ours)
    for method, value in observations:
        reference.labels(method).observe(value)
        lean.labels(method).observe(value)
    assert exposition(ours) == exposition(theirs)


def test_labels_must_match_the_label_names() -> None:
    lean = LabeledHistogram("y", "Doc.", ["a", "b"], BUCKETS, CollectorRegistry())
    with pytest.raises(ValueError, match="takes labels"):
        lean.labels("only-one")

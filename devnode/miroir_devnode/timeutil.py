"""Meilisearch's time formats: RFC 3339 UTC that always has a fractional part and `Z`
(the Python SDK cannot parse a timestamp without `.fff`), and ISO 8601 durations."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_duration(seconds: float) -> str:
    """`PT0.009330S`; whole seconds render as `PT1S`; a day or more as `P1DT...`."""
    micros = round(seconds * 1_000_000)
    days, micros = divmod(micros, 86_400_000_000)
    whole, frac = divmod(micros, 1_000_000)
    secs = f"{whole}.{frac:06d}" if frac else str(whole)
    return f"P{days}DT{secs}S" if days else f"PT{secs}S"


def parse_rfc3339(text: str) -> datetime:
    """Accepts RFC 3339 (with `Z` or an offset); raises ValueError otherwise."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(text)
    return value.astimezone(UTC)

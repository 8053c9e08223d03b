"""Byte sizes as Meilisearch's `sizeFormat=human` shows them (`19.64 MiB`)."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def render_bytes(size: int, human: bool) -> int | str:
    if not human:
        return size
    value, unit = float(size), 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.2f} {_UNITS[unit]}"

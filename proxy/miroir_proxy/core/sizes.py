"""Sizes in bytes and as Meilisearch renders them for people (`19.64 MiB`)."""

from __future__ import annotations

from typing import Any

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_DECIMAL = {"kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}


def human_size(size: int) -> str:
    """`19.64 MiB`: the size in the largest binary unit it reaches, two decimals."""
    unit = 0
    while unit + 1 < len(_UNITS) and size >= 1024 ** (unit + 1):
        unit += 1
    return f"{size / 1024**unit:.2f} {_UNITS[unit]}"


def parse_size(text: Any) -> int | None:
    """Bytes of a size given as an integer or rendered (`12.00 KiB`, `1.5 GB`); None if
    it is neither."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    number, _, unit = str(text).strip().partition(" ")
    factor = 1024 ** _UNITS.index(unit) if unit in _UNITS else _DECIMAL.get(unit)
    try:
        return None if factor is None else round(float(number) * factor)
    except ValueError:
        return None

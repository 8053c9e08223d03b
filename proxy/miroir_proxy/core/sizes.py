"""Sizes in bytes and as Meilisearch renders them for people: `19.64 MiB` in statistics
(`human_size`), `9.765625 KiB` in task details (`unit_size`)."""

from __future__ import annotations

from typing import Any

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
_DECIMAL = {"kB": 1000, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
_DECIMAL |= {"PB": 1000**5, "EB": 1000**6}
_BINARY = {"EiB": 1024**6}
# Largest first, binary before decimal at each step (1 KiB > 1 KB).
_EVERY_UNIT = sorted(
    [*_DECIMAL.items(), *_BINARY.items(), *((u, 1024**i) for i, u in enumerate(_UNITS) if i)],
    key=lambda unit: -unit[1],
)


def human_size(size: int) -> str:
    """`19.64 MiB`: the size in the largest binary unit it reaches, two decimals."""
    unit = 0
    while unit + 1 < len(_UNITS) and size >= 1024 ** (unit + 1):
        unit += 1
    return f"{size / 1024**unit:.2f} {_UNITS[unit]}"


def unit_size(size: int) -> str:
    """A task's size as Meilisearch writes it (the `byte_unit` crate's appropriate unit,
    binary or decimal): the largest unit the size reaches, then the value as Rust prints
    a float (`12 KiB`, `1.01 KB`, `512 B`)."""
    for unit, factor in _EVERY_UNIT:
        if unit != "kB" and size >= factor:
            value = repr(size / factor)
            return f"{value[:-2] if value.endswith('.0') else value} {unit}"
    return f"{size} B"


def parse_size(text: Any) -> int | None:
    """Bytes of a size given as an integer or rendered (`12.00 KiB`, `1.5 GB`); None if
    it is neither."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    number, _, unit = str(text).strip().partition(" ")
    factor = 1024 ** _UNITS.index(unit) if unit in _UNITS else _DECIMAL.get(unit, _BINARY.get(unit))
    try:
        return None if factor is None else round(float(number) * factor)
    except ValueError:
        return None

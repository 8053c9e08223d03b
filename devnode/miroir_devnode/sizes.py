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


# Meilisearch writes a task's sizes (an index compaction's) with the `byte_unit` crate's
# "appropriate unit" over binary and decimal units alike: the largest unit the size reaches,
# the value as Rust prints an f64 (shortest exact form, `12` not `12.0`).
_TASK_UNITS = [
    (factor, name)
    for power, letter in enumerate("KMGTPE", start=1)
    for factor, name in ((1024**power, f"{letter}iB"), (1000**power, f"{letter}B"))
]


def task_size(size: int) -> str:
    reached = [(factor, name) for factor, name in _TASK_UNITS if size >= factor]
    if not reached:
        return f"{size} B"
    factor, name = max(reached)
    text = repr(size / factor)
    return f"{text.removesuffix('.0')} {name}"

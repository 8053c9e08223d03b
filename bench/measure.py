"""What a benchmark reads off a process and how it summarises samples.

CPU time comes from `/proc/<pid>/stat` (user + system ticks of that one process), so a
busy neighbour on the same 2-core machine does not change what the proxy is charged; RSS
comes from `/proc/<pid>/status`. Every figure in the results is a median over runs.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds `pid` has used so far, its threads included."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        raw = stat.read()
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[11]) / _TICKS_PER_S, int(fields[12]) / _TICKS_PER_S


def cpu_seconds(pid: int) -> float:
    user, system = cpu_split(pid)
    return user + system


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MiB."""
    with open(f"/proc/{pid}/statm", "rb") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * _PAGE_KB / 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_ms_per_call(action: Callable[[], object], *, repeat: int, number: int = 1) -> list[float]:
    """Milliseconds per call of `action`, one figure per repeat (process CPU time)."""
    figures = []
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(number):
            action()
        figures.append((time.process_time() - started) * 1000 / number)
    return figures

"""`python bench/profiling.py OUT.prof|OUT.txt MIROIR_PROXY_ARGS...`: the proxy profiled.

cProfile's default clock is wall time, which on a 2-core machine shared with the nodes and
the load generator charges syscalls for the time the process waited for a CPU. This runs
the proxy with a CPU-time clock, so the profile adds up to what `/proc/<pid>/stat` charges.
`bench.run --profile DIR` starts every measured proxy this way.
"""

from __future__ import annotations

import cProfile
import sys
import time
from pathlib import Path
from typing import Any

from miroir_proxy.api import main as proxy_main
from miroir_proxy.cli.processes import ProxyProcess


class ProfiledProxy(ProxyProcess):
    """A `ProxyProcess` that writes a CPU-time profile to `profile_path` when it stops."""

    def __init__(self, data_dir: Path, config: dict[str, Any], profile_path: Path, **kw: Any):
        super().__init__(data_dir, config, **kw)
        self.profile_path = profile_path

    def command(self) -> list[str]:
        # Run as a script: the proxy starts in its data directory, where `bench` is not importable.
        script = str(Path(__file__).resolve())
        return [sys.executable, script, str(self.profile_path), *self.proxy_args()]


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    if out.endswith(".txt"):
        _sampled(out, args)
        return
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        proxy_main.main(args)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


def _sampled(out: str, args: list[str]) -> None:
    """pyinstrument's statistical call tree: far less distortion of small hot functions than
    cProfile's per-call hooks, at the price of counting wall time (idle shows as `select`)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    try:
        proxy_main.main(args)
    finally:
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False)
        Path(out).write_text(text)


if __name__ == "__main__":
    main()

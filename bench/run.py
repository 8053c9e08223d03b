"""`python -m bench.run` (what `make bench` runs): every benchmark, side by side, in one run.

Starts nine devnodes with fault injection, measures each scenario `runs` times, prints a
table of medians against the targets and writes them to `bench/results/latest.json`
(`--out`). `--smoke` runs every code path at tiny sizes (the test suite uses it);
`--profile DIR` runs the measured proxies under cProfile with a CPU-time clock.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from miroir_proxy.cli.processes import LocalNodes

from . import antientropy, dumpimport, micro, placement, resharding, workloads
from .harness import MASTER_KEY
from .measure import median
from .workloads import SMOKE, Sizes

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"
NODES = 9  # three groups of three for the scaling benchmark; the others reuse them

# key -> (label, unit, target, higher is better)
TARGETS: dict[str, tuple[str, str, float, bool]] = {
    "search_per_cpu_s": ("searches per proxy CPU-second (fan-out 3)", "/s", 2_500, True),
    "search_added_p50_ms": ("added latency p50 vs slowest node", "ms", 1.0, False),
    "search_added_p99_ms": ("added latency p99 vs slowest node", "ms", float("nan"), False),
    "write_docs_per_cpu_s": ("documents routed per proxy CPU-second", "/s", 100_000, True),
    "write_cost_ratio": ("routing cost / bare orjson parse+serialize", "x", 2.0, False),
    "merge_3x1000_ms": ("merge 3x1,000 hits into a page", "ms", 1.0, False),
    "route_10k_ms": ("route 10,000 keys at S=64", "ms", 2.0, False),
    "rg2_over_rg1": ("throughput RG=2 / RG=1 (capacity-limited)", "x", 1.9, True),
    "rg3_over_rg1": ("throughput RG=3 / RG=1 (capacity-limited)", "x", 2.8, True),
    "group_sync_over_ingest": ("group sync rate / the nodes' own ingest", "x", 0.8, True),
    "group_sync_docs_per_s": ("group sync, documents copied per second", "/s", float("nan"), True),
    "rebalance_over_ingest": ("node join: move rate / the node's own ingest", "x", 0.8, True),
    "rebalance_docs_per_s": ("node join, documents moved per second", "/s", float("nan"), True),
    "rebalance_moved_over_ideal": ("node join: replicas moved / minimum", "x", 1.0, False),
    "antientropy_pass_over_scan": ("anti-entropy pass / paging every replica", "x", 1.5, False),
    "reshard_docs_per_s": ("reshard S=8 -> 16, documents per second", "/s", float("nan"), True),
    "dump_import_docs_per_cpu_s": (
        "dump import, documents per proxy CPU-second",
        "/s",
        float("nan"),
        True,
    ),
    "dump_import_over_write": ("dump import rate / client write rate, same docs", "x", 0.8, True),
    "dump_import_rss_growth_mb": ("proxy RSS growth importing a 200 MB dump", "MB", 64, False),
    "dump_export_docs_per_s": (
        "POST /dumps, documents written per second",
        "/s",
        float("nan"),
        True,
    ),
    "dump_export_over_fetch": ("dump rate / reading the nodes directly", "x", 0.8, True),
    "dump_export_rss_growth_mb": ("proxy peak RSS growth while dumping", "MB", 64, False),
    "rss_idle_mb": ("proxy RSS idle", "MB", 150, False),
    "rss_500_concurrent_mb": ("proxy RSS, 500 concurrent searches", "MB", 400, False),
    # The best any table can do on the simulator's shapes is 1.25 (N=10, S=16, RF=1: some
    # node holds 2 shards where the mean is 1.6); see bench/README.md.
    "placement_max_over_mean": ("placement: busiest node / mean, worst shape", "x", 1.25, False),
    "placement_moved_over_ideal": ("placement: moved / minimum over changes", "x", 1.0, False),
    "placement_first_table_ms": ("plan() first table N=100 S=4096 RF=3", "ms", 1000, False),
}


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: median([run[key] for run in runs]) for key in runs[0]}


def _repeat(times: int, measure: Callable[[int], dict[str, float]]) -> list[dict[str, float]]:
    return [measure(run) for run in range(times)]


@contextlib.contextmanager
def _scratch(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="miroir-bench-") as scratch:
        yield Path(scratch)


def measure_all(
    sizes: Sizes, base: Path, profile_dir: Path | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    raw: dict[str, list[dict[str, float]]] = {}
    with LocalNodes(NODES, base / "nodes", MASTER_KEY, fault_injection=True) as nodes:
        urls = nodes.urls
        log("search cost, latency and memory: one group of 3 nodes, S=16, RF=1")
        setup = workloads.search_setup(base, urls[:3], sizes, profile_dir)
        try:
            raw["search"] = _repeat(sizes.runs, lambda _: workloads.search_cost_run(setup, sizes))
            raw["floor"] = _repeat(sizes.runs, lambda _: workloads.floor_run(setup, sizes))
            raw["latency"] = _repeat(
                sizes.runs, lambda _: workloads.search_latency_run(setup, sizes)
            )
            raw["rss"] = [workloads.rss_run(setup, sizes)]
        finally:
            setup.proxy.stop()
        log("write cost: RG=2, RF=2 over 4 nodes, batches of 1 KB documents")
        writer = workloads.write_setup(base, urls[3:7], profile_dir)
        try:
            raw["write"] = _repeat(
                sizes.runs, lambda run: workloads.write_cost_run(writer, sizes, run)
            )
        finally:
            writer.stop()
        log("dump import: RG=2, RF=2 over 4 nodes, against client writes of the same documents")
        raw["dump_import"] = _repeat(
            sizes.runs, lambda run: dumpimport.import_run(base, urls[3:7], sizes, run)
        )
        log("group scaling: RG=1, 2, 3 with capacity-limited nodes")

        def scaling(run: int) -> dict[str, float]:
            rates = [workloads.scaling_run(base, urls, g, sizes, run) for g in (1, 2, 3)]
            return {
                "rg1_per_s": rates[0],
                "rg2_over_rg1": rates[1] / rates[0],
                "rg3_over_rg1": rates[2] / rates[0],
            }

        raw["scaling"] = _repeat(sizes.runs, scaling)
    log("group sync: RG=1 -> RG=2, two nodes each, RF=1, S=8")
    raw["group_sync"] = _repeat(sizes.runs, lambda run: workloads.group_sync_run(base, sizes, run))
    log("rebalance: a third node joins a group of two, RF=1, S=8")
    raw["rebalance"] = _repeat(sizes.runs, lambda run: workloads.rebalance_run(base, sizes, run))
    log(
        f"anti-entropy: {sizes.antientropy_documents} documents x 4 replicas "
        "(RG=2, RF=2, S=8), a full pass against paging every replica"
    )
    raw["antientropy"] = antientropy.antientropy_run(
        base, sizes.antientropy_documents, sizes.antientropy_damaged, sizes.runs
    )
    log("reshard: an index of S=8 on two nodes, RF=1, to S=16")
    raw["reshard"] = _repeat(sizes.runs, lambda run: resharding.reshard_run(base, sizes, run))
    log("dump import memory: a 200 MB dump into RG=1, RF=1 over 2 nodes")
    raw["dump_rss"] = [dumpimport.rss_run(base, sizes)]
    log("dump export: POST /dumps over two groups of two nodes, RF=1, S=8")
    raw["dump_export"] = _repeat(
        sizes.runs, lambda run: workloads.dump_export_run(base, sizes, run)
    )
    log("micro-benchmarks: merge and routing")
    number = 2 if sizes is SMOKE else 20
    raw["micro"] = [
        {
            "merge_3x1000_ms": micro.merge_3x1000_ms(
                repeat=max(3, sizes.runs), number=number, offset=980
            ),
            "merge_3x1000_first_page_ms": micro.merge_3x1000_ms(
                repeat=max(3, sizes.runs), number=number
            ),
            "route_10k_ms": micro.route_10k_ms(repeat=max(3, sizes.runs), number=number),
            "write_route_ratio": micro.write_route_ratio(
                batch=sizes.write_batch, repeat=max(3, sizes.runs), number=number
            ),
        }
    ]
    log("placement simulator: assignment planner against pure rendezvous")
    shapes = placement.SMOKE_SHAPES if sizes is SMOKE else placement.SHAPES
    raw["placement"] = [{**placement.simulate(shapes), **placement.plan_ms(max(3, sizes.runs))}]
    results: dict[str, Any] = {}
    for runs in raw.values():
        results.update(_medians(runs))
    return {"results": results, "runs": raw}


def render_table(results: dict[str, float]) -> str:
    lines = [f"{'benchmark':<46} {'median':>12}  {'target':>10}  ok"]
    for key, (label, unit, target, higher) in TARGETS.items():
        value = results.get(key, float("nan"))
        if target != target:  # no target: reported only
            verdict, shown_target = "", "-"
        else:
            met = value >= target if higher else value <= target
            verdict = "yes" if met else "NO"
            shown_target = f"{'>=' if higher else '<='}{target:g}"
        lines.append(f"{label:<46} {value:>10.3f}{unit:>2}  {shown_target:>10}  {verdict}")
    extras = sorted(set(results) - set(TARGETS))
    lines += [f"  {key:<44} {results[key]:>10.3f}" for key in extras]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    parser.add_argument("--runs", type=int, default=Sizes().runs, help="runs per benchmark")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--profile", type=Path, help="write proxy profiles to this directory")
    parser.add_argument("--keep", type=Path, help="keep node and proxy data under this path")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else dataclasses.replace(Sizes(), runs=args.runs)
    started = time.monotonic()
    with _scratch(args.keep) as base:
        report = measure_all(sizes, base, args.profile, log=lambda m: print(m, file=sys.stderr))
    report["meta"] = {
        "sizes": dataclasses.asdict(sizes),
        "seconds": round(time.monotonic() - started, 1),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(render_table(report["results"]))
    print(f"({report['meta']['seconds']} s; medians of {sizes.runs} runs; written to {args.out})")


if __name__ == "__main__":
    main()

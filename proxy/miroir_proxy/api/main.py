"""`miroir-proxy --config miroir.yaml [--plugin MODULE ...]`: the client API and the metrics
endpoint.

SIGTERM stops accepting connections, lets in-flight requests finish within
`timeouts.shutdown_grace_ms` (keep it below the pod's termination grace period), then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys

from aiohttp import web

from miroir_proxy import config as config_module
from miroir_proxy.config import MiroirConfig
from miroir_proxy.state.store import StoreUnavailable

from . import logs
from .app import STORE_STARTUP_S, make_app
from .appkeys import METRICS
from .plugins import PluginError

log = logging.getLogger(__name__)


def _metrics_app(app: web.Application) -> web.Application:
    metrics = web.Application()

    async def render(request: web.Request) -> web.Response:
        return web.Response(body=app[METRICS].render(), content_type="text/plain")

    metrics.router.add_get("/metrics", render)
    return metrics


def _tune_gc() -> None:
    """Objects made at start-up live as long as the process: `freeze` keeps every cyclic
    collection from walking them again, and a higher first threshold collects young
    objects (answers parsed from nodes hold no cycles; refcounting frees them) less
    often. Searches per proxy CPU-second: +3% (A/B, 2x3 runs)."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


async def serve(app: web.Application, config: MiroirConfig) -> None:
    grace_s = config.timeouts.shutdown_grace_ms / 1000
    runner = web.AppRunner(app, shutdown_timeout=grace_s, access_log=None)
    metrics_runner = web.AppRunner(_metrics_app(app), access_log=None)
    await runner.setup()
    await metrics_runner.setup()
    _tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, config.listen.host, config.listen.port).start()
        await web.TCPSite(metrics_runner, config.listen.host, config.listen.metrics_port).start()
        log.info(
            "miroir-proxy listening",
            extra={"port": config.listen.port, "metrics_port": config.listen.metrics_port},
        )
        await stop.wait()
        log.info("shutting down; draining in-flight requests", extra={"grace_s": grace_s})
    finally:
        await metrics_runner.cleanup()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="miroir-proxy", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (from PYTHONPATH) and call its setup(app) before the pod starts, "
        "to add routes, job kinds or leaders; repeatable, set up in order",
    )
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    config = config_module.load(args.config)
    try:
        app = make_app(config, args.plugin)
    except PluginError as e:
        parser.error(str(e))
    runner: asyncio.Runner
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner, contextlib.suppress(KeyboardInterrupt):
            runner.run(serve(app, config))
    except StoreUnavailable as e:
        log.error("the state store did not answer in %.0f s: %s", STORE_STARTUP_S, e)
        sys.exit(1)


if __name__ == "__main__":
    main()

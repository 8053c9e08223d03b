"""`miroir-devnode`: run a Meilisearch-compatible development node."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from .app import make_app
from .config import NodeConfig, config_from_environment

log = logging.getLogger("miroir_devnode")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _build(config: NodeConfig) -> web.Application:
    return make_app(config)


def main(argv: Sequence[str] | None = None) -> None:
    config = config_from_environment(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    web.run_app(
        _build(config),
        host=config.host,
        port=config.port,
        loop=_new_loop(),
        access_log=None,
        print=lambda _text: log.info("listening on http://%s:%d", config.host, config.port),
        shutdown_timeout=5,
    )

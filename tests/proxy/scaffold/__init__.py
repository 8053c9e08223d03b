"""Test scaffolding as a `miroir-proxy` plugin (`miroir_proxy/api/plugins.py`): a job kind that
only sleeps (`jobs.py`) and demo leaders running a phase machine (`leases.py`), each with admin
routes under `/_miroir/scaffold/` so tests can drive them in real proxy processes.

Start proxies with it: `ProxyProcess(..., plugins=[PLUGIN], python_path=[REPO_ROOT])`
(or `ClusterSpec(plugins=..., python_path=...)`); in-process apps take
`make_app(config, plugins=[PLUGIN])`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from . import jobs, leases

PLUGIN = "tests.proxy.scaffold"
# The directory a child process needs on PYTHONPATH to import `PLUGIN`.
REPO_ROOT = Path(__file__).resolve().parents[3]


def setup(app: web.Application) -> None:
    jobs.setup(app)
    leases.setup(app)

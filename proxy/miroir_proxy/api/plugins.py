"""`miroir-proxy --plugin MODULE`: extend a pod with routes, job kinds and leaders of your own.

`MODULE` is imported by name (it must be on the pod's `PYTHONPATH`) and must define
`setup(app: aiohttp.web.Application) -> None`. `setup` runs once, before the app starts,
after Miroir has declared its own routes and components, so it may:

- add routes (`app.add_routes(...)`); under `/_miroir/` a handler checks the admin key itself
  with `miroir_proxy.api.routes.admin.require_admin(request)`, and a raised
  `miroir_proxy.core.errors.MiroirError` becomes a Meilisearch-shaped error as anywhere else;
- append a cleanup context (`app.cleanup_ctx.append(ctx)`): it starts after the pod's
  components exist and stops before they close, so it can use `app[COORDINATION]` (register a
  job kind with `.register(kind, handler)`, keep a lease with `.lease(scope)`) and
  `app[STORE]` (keys in `miroir_proxy.api.appkeys`).

Plugins are set up in the order given. The tests use this to add their scaffolding (job kinds
that only sleep, demo leaders) to real `miroir-proxy` processes without shipping it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from aiohttp import web


class PluginError(Exception):
    """A plugin could not be imported or has no `setup(app)`."""


def install(app: web.Application, modules: Sequence[str]) -> None:
    """Import each module in turn and call its `setup(app)`."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise PluginError(f"plugin {name!r} cannot be imported: {e}") from e
        setup = getattr(module, "setup", None)
        if not callable(setup):
            raise PluginError(f"plugin {name!r} has no setup(app) function")
        setup(app)

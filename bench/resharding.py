"""The online reshard benchmark: `reshard_docs_per_s`.

Two nodes in one group (RF=1) hold `sizes.sync_documents` documents in an index of S=8;
`POST /_miroir/indexes/{uid}/reshard {"shards": 16}` (no retention of the old index) is
timed from the request to `succeeded`: every document is read from the live index,
written to the shadow, verified and the name flipped, all inside that time.
"""

from __future__ import annotations

import time
from pathlib import Path

from miroir_proxy.cli.processes import LocalNodes

from .harness import MASTER_KEY, call, proxy_config, seed, start_proxy
from .workloads import SYNC_PAGE, Sizes, _wait_operation, documents


def reshard_run(base: Path, sizes: Sizes, run: int) -> dict[str, float]:
    with LocalNodes(2, base / f"reshard-nodes-{run}", MASTER_KEY) as nodes:
        config = proxy_config([nodes.urls], shards=8, rf=1)
        config["operations"] = {"copy_page_size": SYNC_PAGE, "reshard_retain_s": 0}
        proxy = start_proxy(base / f"proxy-reshard-{run}", config)
        try:
            seed(proxy.url, "books", documents(sizes.sync_documents, seed_value=run))
            started = time.monotonic()
            answer = call(f"{proxy.url}/_miroir/indexes/books/reshard", "POST", {"shards": 16})
            _wait_operation(proxy.url, answer["operation"])
            elapsed_s = time.monotonic() - started
            shards = call(f"{proxy.url}/_miroir/indexes/books")["shards"]
            if shards != 16:
                raise RuntimeError(f"the reshard succeeded but the index has {shards} shards")
        finally:
            proxy.stop()
    return {"reshard_docs_per_s": sizes.sync_documents / elapsed_s}

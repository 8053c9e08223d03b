"""The node's state: indexes (engine + metadata), the task queue, keys, webhooks and
experimental features, loaded from storage at start and shared by every route under
`NODE_KEY`.

Routes only read state and enqueue tasks; every change to indexes or documents happens in
the task worker (`processing.apply`), as in Meilisearch.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from .config import NodeConfig
from .engine.index import Index
from .errors import MeiliError
from .keys import KeyStore
from .storage import IndexRow, Storage
from .tasks import TaskQueue
from .timeutil import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

_INDEX_UID = re.compile(r"^[A-Za-z0-9_-]{1,400}$")

EXPERIMENTAL_FEATURES: dict[str, bool] = {
    "metrics": False,
    "logsRoute": False,
    "editDocumentsByFunction": False,
    "containsFilter": False,
    "network": False,
    "getTaskDocumentsRoute": False,
    "compositeEmbedders": False,
    "chatCompletions": False,
    "multimodal": False,
    "vectorStoreSetting": False,
}
_FEATURES_META = "experimentalFeatures"


def index_uid_error(uid: str, path: str = "") -> MeiliError:
    """`path` is the JSON location (`.uid`) or a parameter (`indexUids`) for the prefix."""
    prefix = f"Invalid value at `{path}`: " if path.startswith((".", "[")) else ""
    prefix = prefix or (f"Invalid value in parameter `{path}`: " if path else "")
    return MeiliError(
        "invalid_index_uid",
        f"{prefix}`{uid}` is not a valid index uid. Index uid can be an integer or a string "
        "containing only alphanumeric characters, hyphens (-) and underscores (_), and can not "
        "be more than 512 bytes.",
    )


def check_index_uid(uid: str, path: str = "") -> str:
    if _INDEX_UID.match(uid) is None:
        raise index_uid_error(uid, path)
    return uid


def index_not_found(uid: str) -> MeiliError:
    return MeiliError("index_not_found", f"Index `{uid}` not found.")


@dataclass(slots=True)
class IndexEntry:
    index: Index
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.index.uid,
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
            "primaryKey": self.index.primary_key,
        }

    def row(self) -> IndexRow:
        return IndexRow(
            uid=self.index.uid,
            primary_key=self.index.primary_key,
            created_at=rfc3339(self.created_at),
            updated_at=rfc3339(self.updated_at),
            settings=self.index.settings,
        )


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.storage = Storage(config.db_path)
        self.keys = KeyStore(self.storage.conn, config.master_key)
        self.queue = TaskQueue(self.storage)
        self.entries: dict[str, IndexEntry] = {}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.features = dict(EXPERIMENTAL_FEATURES)
        self._load()

    def _load(self) -> None:
        for row in self.storage.load_indexes():
            index = Index(row.uid, row.primary_key, row.settings)
            index.upsert(self.storage.load_documents(row.uid))
            self.entries[row.uid] = IndexEntry(
                index, parse_rfc3339(row.created_at), parse_rfc3339(row.updated_at)
            )
        self.queue.load()
        self.webhooks = {w["uuid"]: w for w in self.storage.load_webhooks()}
        self.features.update(self.storage.get_meta(_FEATURES_META) or {})
        log.info(
            "loaded %d indexes and %d tasks from %s",
            len(self.entries),
            len(self.queue.tasks),
            self.storage.path,
        )

    def close(self) -> None:
        self.storage.close()

    def get_entry(self, uid: str) -> IndexEntry:
        entry = self.entries.get(uid)
        if entry is None:
            check_index_uid(uid)
            raise index_not_found(uid)
        return entry

    def get_index(self, uid: str) -> Index:
        """The engine index `uid`; MeiliError `index_not_found` if there is none."""
        return self.get_entry(uid).index

    def set_features(self, features: dict[str, bool]) -> None:
        self.features.update(features)
        self.storage.put_meta(_FEATURES_META, self.features)


NODE_KEY = web.AppKey("node", Node)

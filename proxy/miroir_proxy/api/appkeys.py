"""Typed keys for what the app shares between handlers (aiohttp `web.AppKey`)."""

from __future__ import annotations

from aiohttp import web

from miroir_proxy.config import MiroirConfig
from miroir_proxy.coordination.runtime import Coordination
from miroir_proxy.dispatch.catalog import Catalog
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.dispatch.coalescing import Coalescer
from miroir_proxy.dispatch.deletions import DeleteLog
from miroir_proxy.dispatch.handoff import Handoff
from miroir_proxy.dispatch.keyring import KeyCache
from miroir_proxy.dispatch.reads import ReadResult
from miroir_proxy.dispatch.sessions import Sessions
from miroir_proxy.dispatch.tasks import TaskRegistry
from miroir_proxy.dispatch.topowatch import TopologyWatcher
from miroir_proxy.operations.antientropy import AntiEntropy
from miroir_proxy.operations.dumpimport import Spool
from miroir_proxy.operations.engine import Operations
from miroir_proxy.operations.epochs import Epochs
from miroir_proxy.operations.expiry import TtlSweeper
from miroir_proxy.operations.handoff import HintReplayer
from miroir_proxy.operations.settingsync import SettingsSync
from miroir_proxy.state.store import Store

from .metrics import Metrics

CONFIG = web.AppKey("config", MiroirConfig)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
BODY_LIMIT = web.AppKey("body_limit", int)
CLUSTER = web.AppKey("cluster", Cluster)
CATALOG = web.AppKey("catalog", Catalog)
KEYS = web.AppKey("keys", KeyCache)
TASKS = web.AppKey("tasks", TaskRegistry)
TOPOLOGY = web.AppKey("topology", TopologyWatcher)
EPOCHS = web.AppKey("epochs", Epochs)
OPERATIONS = web.AppKey("operations", Operations)
SESSIONS = web.AppKey("sessions", Sessions)
COALESCER = web.AppKey("coalescer", Coalescer[ReadResult])
COORDINATION = web.AppKey("coordination", Coordination)
TTL_SWEEPER = web.AppKey("ttl_sweeper", TtlSweeper)
DELETE_LOG = web.AppKey("delete_log", DeleteLog)
ANTI_ENTROPY = web.AppKey("anti_entropy", AntiEntropy)
HANDOFF = web.AppKey("handoff", Handoff)
HINT_REPLAYER = web.AppKey("hint_replayer", HintReplayer)
DUMP_SPOOL = web.AppKey("dump_spool", Spool)
SETTINGS_SYNC = web.AppKey("settings_sync", SettingsSync)

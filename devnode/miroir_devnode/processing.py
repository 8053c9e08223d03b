"""What each task type does when the worker runs it.

Appliers check everything that can fail *before* touching the engine, so a failed task
leaves no trace (storage writes roll back with the task's savepoint; the in-memory
engine is only changed once nothing can fail any more). Count details start at 0 so a
failed task reports `indexedDocuments: 0` / `deletedDocuments: 0` like Meilisearch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from . import settings as settings_mod
from .documents import infer_primary_key, prepare_documents
from .engine.index import Index
from .engine.search import filtered_universe
from .engine.vectors import VECTORS, missing_vectors, parse_document
from .errors import MeiliError
from .node import IndexEntry, Node, index_not_found
from .sizes import task_size
from .tasks import Task
from .timeutil import now

Payload = dict[str, Any]


# Documents indexed per engine step; the worker yields to the event loop between steps.
UPSERT_STEP = 32


# Errors Meilisearch's indexing engine (milli) raises; the task scheduler prefixes them with
# "Index `uid`: " (index-scheduler errors such as index_not_found carry no prefix).
_ENGINE_ERRORS = frozenset(
    {
        "invalid_document_id",
        "missing_document_id",
        "index_primary_key_no_candidate_found",
        "index_primary_key_multiple_candidates_found",
        "index_primary_key_already_exists",
        "invalid_settings_typo_tolerance",
        "invalid_vectors_type",
        "invalid_vector_dimensions",
        "vector_embedding_error",
    }
)


def apply(node: Node, task: Task) -> Iterator[None] | None:
    """Write the task's effects to storage (the caller commits) and return the engine
    updates still to run, if any; raises MeiliError before changing anything."""
    payload = task.payload or {}
    try:
        if task.type == "documentAdditionOrUpdate":
            return _add_documents(node, task, payload)
        _APPLIERS[task.type](node, task, payload)
    except MeiliError as e:
        if e.code in _ENGINE_ERRORS and task.index_uid is not None:
            raise MeiliError(e.code, f"Index `{task.index_uid}`: {e.message}") from e
        raise
    return None


def _already_exists(uid: str) -> MeiliError:
    return MeiliError("index_already_exists", f"Index `{uid}` already exists.")


def _new_entry(node: Node, uid: str, primary_key: str | None) -> IndexEntry:
    moment = now()
    entry = IndexEntry(Index(uid, primary_key, settings_mod.defaults()), moment, moment)
    node.entries[uid] = entry
    node.storage.put_index(entry.row())
    return entry


def _touch(node: Node, entry: IndexEntry) -> None:
    entry.updated_at = now()
    node.storage.put_index(entry.row())


def _create_index(node: Node, task: Task, payload: Payload) -> None:
    uid = _index_uid(task)
    if uid in node.entries:
        raise _already_exists(uid)
    _new_entry(node, uid, payload.get("primaryKey"))


def _update_index(node: Node, task: Task, payload: Payload) -> None:
    uid = _index_uid(task)
    entry = node.get_entry(uid)
    new_uid = payload.get("newUid")
    if new_uid is not None and new_uid != uid and new_uid in node.entries:
        raise _already_exists(new_uid)
    primary_key = payload.get("primaryKey")
    index = entry.index
    if primary_key is not None and primary_key != index.primary_key:
        if len(index) and index.primary_key is not None:
            raise MeiliError(
                "index_primary_key_already_exists",
                f"Index already has a primary key: `{index.primary_key}`.",
            )
        index.primary_key = primary_key
    if new_uid is not None and new_uid != uid:
        node.storage.rename_index(uid, new_uid)
        index.uid = new_uid
        node.entries[new_uid] = node.entries.pop(uid)
    # The details keep the request's `primaryKey` (null for a rename alone), as Meilisearch.
    _touch(node, entry)


def _delete_index(node: Node, task: Task, payload: Payload) -> None:
    uid = _index_uid(task)
    task.details = {"deletedDocuments": 0}
    entry = node.get_entry(uid)
    node.storage.delete_index(uid)
    del node.entries[uid]
    task.details["deletedDocuments"] = len(entry.index)


def _swap_indexes(node: Node, task: Task, payload: Payload) -> None:
    swaps = payload["swaps"]
    missing = sorted(
        uid
        for swap in swaps
        for uid in (swap["indexes"][:1] if swap["rename"] else swap["indexes"])
        if uid not in node.entries
    )
    if missing:
        names = ", ".join(f"`{uid}`" for uid in missing)
        raise MeiliError(
            "index_not_found",
            f"Index {names} not found." if len(missing) == 1 else f"Indexes {names} not found.",
        )
    for swap in swaps:
        if swap["rename"] and swap["indexes"][1] in node.entries:
            raise _already_exists(swap["indexes"][1])
    for swap in swaps:
        first, second = swap["indexes"]
        if swap["rename"]:
            node.storage.rename_index(first, second)
            node.entries[second] = node.entries.pop(first)
            node.entries[second].index.uid = second
            continue
        parked = f"\x00swap\x00{first}"
        node.storage.rename_index(first, parked)
        node.storage.rename_index(second, first)
        node.storage.rename_index(parked, second)
        a, b = node.entries[first], node.entries[second]
        node.entries[first], node.entries[second] = b, a
        a.index.uid, b.index.uid = second, first


def _index_uid(task: Task) -> str:
    assert task.index_uid is not None
    return task.index_uid


def _add_documents(node: Node, task: Task, payload: Payload) -> Iterator[None]:
    uid = _index_uid(task)
    docs: list[dict[str, Any]] = payload["documents"]
    task.details = {"receivedDocuments": len(docs), "indexedDocuments": 0}
    entry = node.entries.get(uid)
    if entry is None and not payload.get("canCreateIndex", True):
        raise index_not_found(uid)
    primary_key = entry.index.primary_key if entry is not None else None
    if primary_key is None:
        primary_key = payload.get("primaryKey")
        if primary_key is None and docs:
            primary_key = infer_primary_key(docs[0])
    prepared: dict[str, dict[str, Any]] = {}
    if docs:
        assert primary_key is not None
        prepared = prepare_documents(
            docs,
            primary_key,
            merge=payload["merge"],
            skip_creation=payload.get("skipCreation", False),
            existing=entry.index.get if entry is not None else lambda _id: None,
        )
    if entry is not None:
        _check_vectors(entry.index, prepared)
    if entry is None:
        entry = _new_entry(node, uid, primary_key)
    elif entry.index.primary_key is None:
        entry.index.primary_key = primary_key
    node.storage.put_documents(
        uid, ((doc_id, orjson.dumps(doc)) for doc_id, doc in prepared.items())
    )
    _touch(node, entry)
    task.details["indexedDocuments"] = len(prepared)
    return _upsert_steps(entry.index, list(prepared.items()))


def _check_vectors(index: Index, prepared: dict[str, dict[str, Any]]) -> None:
    """Every document must give its embeddings to each embedder (or opt out with null);
    a replaced document that gives none keeps the ones it had."""
    embedders = index.settings.get("embedders") or {}
    if not embedders:
        return
    missing: dict[str, list[str]] = {}
    for doc_id, doc in prepared.items():
        parse_document(doc_id, doc, embedders)
        given = doc.get(VECTORS)
        for name in embedders:
            if isinstance(given, dict) and name in given:
                continue
            old = index.get(doc_id)
            kept = old.get(VECTORS) if old is not None else None
            if isinstance(kept, dict) and name in kept:
                doc[VECTORS] = {**(given if isinstance(given, dict) else {}), name: kept[name]}
                given = doc[VECTORS]
            else:
                missing.setdefault(name, []).append(doc_id)
    for name, doc_ids in missing.items():
        raise missing_vectors(name, doc_ids)


def _upsert_steps(index: Index, items: list[tuple[str, dict[str, Any]]]) -> Iterator[None]:
    for start in range(0, len(items), UPSERT_STEP):
        index.upsert(items[start : start + UPSERT_STEP])
        yield


def _delete_documents(node: Node, task: Task, payload: Payload) -> None:
    uid = _index_uid(task)
    if "ids" in payload:
        task.details = {
            "providedIds": len(payload["ids"]),
            "deletedDocuments": 0,
            "originalFilter": None,
        }
        index = node.get_index(uid)
        ids = [doc_id for doc_id in payload["ids"] if index.internal_id(doc_id) is not None]
    elif "filter" in payload:
        task.details = {
            "providedIds": 0,
            "deletedDocuments": 0,
            "originalFilter": orjson.dumps(payload["filter"]).decode(),
        }
        index = node.get_index(uid)
        ids = _ids_matching(node, index, payload["filter"])
    else:
        task.details = {"deletedDocuments": 0}
        index = node.get_index(uid)
        node.storage.clear_documents(uid)
        task.details["deletedDocuments"] = index.clear()
        _touch(node, node.entries[uid])
        return
    node.storage.delete_documents(uid, ids)
    task.details["deletedDocuments"] = index.delete(ids)
    _touch(node, node.entries[uid])


def _ids_matching(node: Node, index: Index, value: Any) -> list[str]:
    matching = filtered_universe(
        index, value, code="invalid_document_filter", features=node.features
    )
    return [] if matching is None else [index.external_id(internal) for internal in matching]


def _update_settings(node: Node, task: Task, payload: Payload) -> None:
    uid = _index_uid(task)
    entry = node.entries.get(uid)
    current = entry.index.settings if entry is not None else settings_mod.defaults()
    updated = settings_mod.apply_patch(current, payload["settings"])
    settings_mod.check_when_applied(updated)
    if entry is None:
        entry = _new_entry(node, uid, None)
    entry.index.replace_settings(updated)
    _touch(node, entry)


def _cancel_tasks(node: Node, task: Task, payload: Payload) -> None:
    canceled = node.queue.cancel(payload["uids"], task)
    if task.details is not None:
        task.details["canceledTasks"] = canceled


def _delete_tasks(node: Node, task: Task, payload: Payload) -> None:
    deleted = node.queue.delete(payload["uids"])
    if task.details is not None:
        task.details["deletedTasks"] = deleted


def _compact_index(node: Node, task: Task, payload: Payload) -> None:
    """Nothing to defragment in SQLite rows: the sizes before and after are the same."""
    entry = node.get_entry(_index_uid(task))
    size = task_size(node.storage.raw_documents_size(entry.index.uid))
    task.details = {"preCompactionSize": size, "postCompactionSize": size}


def _nothing(node: Node, task: Task, payload: Payload) -> None:
    """Dumps and snapshots succeed without writing a file."""


_APPLIERS: dict[str, Callable[[Node, Task, Payload], None]] = {
    "indexCreation": _create_index,
    "indexUpdate": _update_index,
    "indexDeletion": _delete_index,
    "indexSwap": _swap_indexes,
    "documentDeletion": _delete_documents,
    "settingsUpdate": _update_settings,
    "taskCancelation": _cancel_tasks,
    "taskDeletion": _delete_tasks,
    "dumpCreation": _nothing,
    "snapshotCreation": _nothing,
    "indexCompaction": _compact_index,
}

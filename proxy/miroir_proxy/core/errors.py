"""Errors the proxy answers with, in Meilisearch's shape `{message, code, type, link}`.

Meilisearch's own codes keep their status and type so a client cannot tell a proxy error
from a node's; Miroir's codes (`miroir_*`) cover what a single node never says.
"""

from __future__ import annotations

from typing import Any

MEILI_LINK = "https://docs.meilisearch.com/errors#"
MIROIR_LINK = "https://github.com/miroir-search/miroir/blob/main/docs/errors.md#"

# code -> (HTTP status, type) for every code the proxy raises itself.
CODES: dict[str, tuple[int, str]] = {
    "bad_request": (400, "invalid_request"),
    "missing_payload": (400, "invalid_request"),
    "malformed_payload": (400, "invalid_request"),
    "payload_too_large": (413, "invalid_request"),
    "missing_content_type": (415, "invalid_request"),
    "invalid_content_type": (415, "invalid_request"),
    "internal": (500, "internal"),
    "index_not_found": (404, "invalid_request"),
    "invalid_index_uid": (400, "invalid_request"),
    "missing_index_uid": (400, "invalid_request"),
    "invalid_index_primary_key": (400, "invalid_request"),
    "index_primary_key_no_candidate_found": (400, "invalid_request"),
    "index_primary_key_multiple_candidates_found": (400, "invalid_request"),
    "index_primary_key_already_exists": (400, "invalid_request"),
    "missing_document_id": (400, "invalid_request"),
    "invalid_document_id": (400, "invalid_request"),
    "document_not_found": (404, "invalid_request"),
    "missing_document_filter": (400, "invalid_request"),
    "invalid_document_filter": (400, "invalid_request"),
    "invalid_document_csv_delimiter": (400, "invalid_request"),
    "task_not_found": (404, "invalid_request"),
    "missing_task_filters": (400, "invalid_request"),
    "invalid_task_uids": (400, "invalid_request"),
    "invalid_task_batch_uids": (400, "invalid_request"),
    "invalid_task_canceled_by": (400, "invalid_request"),
    "invalid_task_types": (400, "invalid_request"),
    "invalid_task_statuses": (400, "invalid_request"),
    "invalid_task_index_uids": (400, "invalid_request"),
    "invalid_task_limit": (400, "invalid_request"),
    "invalid_task_from": (400, "invalid_request"),
    "invalid_task_reverse": (400, "invalid_request"),
    "invalid_task_before_enqueued_at": (400, "invalid_request"),
    "invalid_task_after_enqueued_at": (400, "invalid_request"),
    "invalid_task_before_started_at": (400, "invalid_request"),
    "invalid_task_after_started_at": (400, "invalid_request"),
    "invalid_task_before_finished_at": (400, "invalid_request"),
    "invalid_task_after_finished_at": (400, "invalid_request"),
    "missing_authorization_header": (401, "auth"),
    "missing_master_key": (401, "auth"),
    "invalid_api_key": (403, "auth"),
    "invalid_index_offset": (400, "invalid_request"),
    "invalid_index_limit": (400, "invalid_request"),
    "invalid_webhooks": (400, "invalid_request"),
    "invalid_webhook_url": (400, "invalid_request"),
    "invalid_webhook_headers": (400, "invalid_request"),
    "immutable_webhook_uuid": (400, "invalid_request"),
    "immutable_webhook_is_editable": (400, "invalid_request"),
    "invalid_webhook_uuid": (400, "invalid_request"),
    "webhook_not_found": (404, "invalid_request"),
    "miroir_node_unavailable": (503, "system"),
    "index_already_exists": (409, "invalid_request"),
    "api_key_not_found": (404, "invalid_request"),
    "invalid_api_key_uid": (400, "invalid_request"),
    "invalid_skip_creation": (400, "invalid_request"),
    "batch_not_found": (404, "invalid_request"),
    "invalid_batch_uids": (400, "invalid_request"),
    "miroir_no_quorum": (503, "system"),
    "miroir_shard_unavailable": (503, "system"),
    "miroir_reserved_field": (400, "invalid_request"),
    "miroir_idempotency_key_reused": (409, "invalid_request"),
    "miroir_idempotency_key_in_use": (409, "invalid_request"),
    "miroir_invalid_topology": (400, "invalid_request"),
    "miroir_topology_epoch_stale": (409, "invalid_request"),
    "miroir_store_unavailable": (503, "system"),
    "miroir_route_not_found": (404, "invalid_request"),
    "miroir_method_not_allowed": (405, "invalid_request"),
    "miroir_job_not_found": (404, "invalid_request"),
    "miroir_group_not_found": (404, "invalid_request"),
    "miroir_invalid_node": (400, "invalid_request"),
    "miroir_node_not_found": (404, "invalid_request"),
    "miroir_node_not_drained": (409, "invalid_request"),
    "miroir_operation_not_found": (404, "invalid_request"),
    "miroir_operation_in_progress": (409, "invalid_request"),
}


class MiroirError(Exception):
    """An error answer; `status` and `type` come from `CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        if code not in CODES:
            raise KeyError(f"unknown error code {code!r}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return CODES[self.code][0]

    @property
    def type(self) -> str:
        return CODES[self.code][1]

    def to_dict(self) -> dict[str, Any]:
        link = MIROIR_LINK if self.code.startswith("miroir_") else MEILI_LINK
        return {
            "message": self.message,
            "code": self.code,
            "type": self.type,
            "link": link + self.code,
        }

"""Errors the proxy answers with, in Meilisearch's shape `{message, code, type, link}`.

Meilisearch's own codes keep their status and type so a client cannot tell a proxy error
from a node's; Miroir's codes (`miroir_*`) cover what a single node never says.
"""

from __future__ import annotations

from typing import Any

MEILI_LINK = "https://docs.meilisearch.com/errors#"
MIROIR_LINK = "https://github.com/miroir-search/miroir/blob/main/docs/errors.md#"

# Every code the proxy raises itself, by (HTTP status, type).
_CODES_BY_KIND: dict[tuple[int, str], str] = {
    (400, "invalid_request"): (
        "bad_request missing_payload malformed_payload invalid_index_uid missing_index_uid "
        "invalid_index_primary_key index_primary_key_no_candidate_found "
        "index_primary_key_multiple_candidates_found index_primary_key_already_exists "
        "missing_document_id invalid_document_id missing_document_filter "
        "invalid_document_filter invalid_document_csv_delimiter missing_task_filters "
        "invalid_task_uids invalid_task_batch_uids invalid_task_canceled_by invalid_task_types "
        "invalid_task_statuses invalid_task_index_uids invalid_task_limit invalid_task_from "
        "invalid_task_reverse invalid_task_before_enqueued_at invalid_task_after_enqueued_at "
        "invalid_task_before_started_at invalid_task_after_started_at "
        "invalid_task_before_finished_at invalid_task_after_finished_at invalid_index_offset "
        "invalid_index_limit invalid_webhooks invalid_webhook_url invalid_webhook_headers "
        "immutable_webhook_uuid immutable_webhook_is_editable invalid_webhook_uuid "
        "invalid_api_key_uid invalid_skip_creation invalid_batch_uids miroir_reserved_field "
        "miroir_invalid_expires_at invalid_settings_searchable_attributes miroir_invalid_dump "
        "miroir_invalid_topology miroir_invalid_node feature_not_enabled"
    ),
    (413, "invalid_request"): "payload_too_large",
    (415, "invalid_request"): "missing_content_type invalid_content_type",
    (500, "internal"): "internal dump_process_failed",
    (421, "invalid_request"): "miroir_dump_on_other_pod",
    (404, "invalid_request"): (
        "index_not_found document_not_found task_not_found webhook_not_found api_key_not_found "
        "batch_not_found miroir_route_not_found miroir_job_not_found miroir_group_not_found "
        "miroir_node_not_found miroir_operation_not_found miroir_alias_not_found dump_not_found"
    ),
    (401, "auth"): "missing_authorization_header missing_master_key",
    (403, "auth"): "invalid_api_key",
    (503, "system"): (
        "miroir_node_unavailable miroir_no_quorum miroir_shard_unavailable "
        "miroir_store_unavailable miroir_settings_frozen miroir_settings_rolled_back"
    ),
    (409, "invalid_request"): (
        "index_already_exists miroir_idempotency_key_reused miroir_idempotency_key_in_use "
        "miroir_topology_epoch_stale miroir_operation_in_progress miroir_node_not_drained "
        "miroir_alias_conflict"
    ),
    (405, "invalid_request"): "miroir_method_not_allowed",
}
# code -> (HTTP status, type)
CODES: dict[str, tuple[int, str]] = {
    code: kind for kind, codes in _CODES_BY_KIND.items() for code in codes.split()
}


class MiroirError(Exception):
    """An error answer; `status` and `type` come from `CODES` (an unknown code is a bug)."""

    def __init__(self, code: str, message: str) -> None:
        found = CODES.get(code)
        if found is None:
            raise KeyError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code, self.message = code, message
        self.status, self.type = found

    def to_dict(self) -> dict[str, Any]:
        base = MIROIR_LINK if self.code.startswith("miroir_") else MEILI_LINK
        return {
            "message": self.message,
            "code": self.code,
            "type": self.type,
            "link": base + self.code,
        }

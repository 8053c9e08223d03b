"""A small Kubernetes API client for the objects the operator owns.

kopf watches and patches the MiroirCluster itself; this client creates and updates its
children with the credentials kopf logged in with (`kopf.ConnectionInfo`), so the operator
talks to exactly one API server however it was started (in a pod, a kubeconfig, a test's
mock server). Children are applied as create, then merge-patch on 409: idempotent, and the
whole object is ours, so a merge patch that replaces lists is what we want.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import aiohttp
import kopf

Manifest = dict[str, Any]

CALL_TIMEOUT_S = 15.0


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message[:500]}")
        self.status = status


def plural(kind: str) -> str:
    lowered = kind.lower()
    if lowered.endswith("y"):
        return lowered[:-1] + "ies"
    if lowered.endswith("s"):
        return lowered + "es"
    return lowered + "s"


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural(kind)}"


def object_path(obj: Manifest) -> str:
    meta = obj["metadata"]
    return f"{collection_path(obj['apiVersion'], obj['kind'], meta['namespace'])}/{meta['name']}"


class Kube:
    """Holds one aiohttp session built from kopf's login; `connect` again on re-login."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._server = ""

    async def connect(self, info: kopf.ConnectionInfo) -> None:
        await self.close()
        self._server = info.server.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
            headers=info.as_http_headers(),  # bearer token or basic auth
            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Manifest | None:
        """The decoded answer, or None for 404."""
        if self._session is None:
            raise KubeError(0, "not logged in to the Kubernetes API")
        try:
            async with self._session.request(
                method,
                self._server + path,
                json=body,
                headers={"Content-Type": content_type} if body is not None else None,
            ) as response:
                if response.status == 404:
                    return None
                if response.status >= 400:
                    raise KubeError(response.status, await response.text())
                result: Manifest = await response.json(content_type=None)
                return result
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise KubeError(0, f"{method} {path}: {exc!r}") from exc

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        return await self._call("GET", f"{collection_path(api_version, kind, namespace)}/{name}")

    async def apply(self, obj: Manifest) -> bool:
        """Create `obj`, or merge its fields into the existing one; True when created."""
        meta = obj["metadata"]
        try:
            await self._call(
                "POST", collection_path(obj["apiVersion"], obj["kind"], meta["namespace"]), obj
            )
            return True
        except KubeError as exc:
            if exc.status != 409:
                raise
        await self._call("PATCH", object_path(obj), obj, "application/merge-patch+json")
        return False

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete one object (its dependents by the API server's default policy); False
        when it was already gone."""
        path = f"{collection_path(api_version, kind, namespace)}/{name}"
        return await self._call("DELETE", path) is not None

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One value of a Secret, decoded; None when the Secret or the key is missing."""
        secret = await self.get("v1", "Secret", namespace, name)
        encoded = ((secret or {}).get("data") or {}).get(key)
        if not isinstance(encoded, str):
            return None
        try:
            return base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise KubeError(0, f"Secret {namespace}/{name} key {key!r} is not base64 text") from exc

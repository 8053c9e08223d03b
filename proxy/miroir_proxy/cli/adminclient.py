"""The `miroir` command's client of a proxy's admin API (`/_miroir/...`, ARCHITECTURE §6).

HTTP only: the command drives any proxy, local or remote, exactly as a script with curl
would, so it imports nothing of the proxy's internals. Failures are sorted by what the
command does next: `ApiError` (the API answered with an error in Meilisearch's shape, or
with something that is not the admin API) and `Unreachable` (no answer within the
deadline). Every call has a deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

CALL_TIMEOUT_S = 10.0
UPLOAD_PIECE = 1 << 20


class ApiError(Exception):
    """The API answered an error; `code` is Meilisearch-style (`invalid_api_key`), or ""
    when the answer was not in Meilisearch's error shape."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{message} ({code or 'no code'}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class Unreachable(Exception):
    """No answer from the proxy within the deadline (refused, unknown host, timed out)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"no answer from {url}: {reason}")
        self.url = url
        self.reason = reason


class AdminClient:
    """One proxy's admin API; owns its HTTP session (`async with AdminClient(...)`)."""

    def __init__(self, base_url: str, admin_key: str | None, timeout_s: float = CALL_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            headers=self._headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str) -> Any:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.call("POST", path, body)

    async def delete(self, path: str) -> Any:
        return await self.call("DELETE", path)

    async def upload(self, path: str, file: Path, content_type: str) -> Any:
        """POST `file` as the body, streamed in pieces; the deadline applies to each read
        and write rather than to the whole upload, which may take long."""
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout_s, sock_read=self.timeout_s
        )

        async def pieces() -> AsyncIterator[bytes]:
            with file.open("rb") as stream:
                while piece := await asyncio.to_thread(stream.read, UPLOAD_PIECE):
                    yield piece

        headers = {"Content-Type": content_type}
        return await self.call("POST", path, data=pieces(), headers=headers, timeout=timeout)

    async def download(self, path: str, file: Path) -> int:
        """GET `path` into `file`, streamed; the deadline applies to each read. Returns the
        bytes written; on an error nothing is left at `file`."""
        assert self._session is not None, "use `async with AdminClient(...)`"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout_s, sock_read=self.timeout_s
        )
        partial = file.with_name(file.name + ".part")
        written = 0
        try:
            async with self._session.get(self.base_url + path, timeout=timeout) as response:
                if response.status >= 400:
                    await self.call("GET", path)  # raises the API's error
                with partial.open("wb") as sink:
                    async for piece in response.content.iter_chunked(UPLOAD_PIECE):
                        await asyncio.to_thread(sink.write, piece)
                        written += len(piece)
        except TimeoutError as e:
            partial.unlink(missing_ok=True)
            raise Unreachable(self.base_url, f"no answer within {self.timeout_s:g} s") from e
        except aiohttp.ClientError as e:
            partial.unlink(missing_ok=True)
            raise Unreachable(self.base_url, str(e) or type(e).__name__) from e
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(file)
        return written

    async def call(self, method: str, path: str, body: Any = None, **options: Any) -> Any:
        """The decoded JSON of a 2xx answer; raises `ApiError` or `Unreachable`."""
        assert self._session is not None, "use `async with AdminClient(...)`"
        url = self.base_url + path
        if body is not None:
            options["json"] = body
        try:
            async with self._session.request(method, url, **options) as response:
                status = response.status
                text = await response.text(errors="replace")
        except TimeoutError as e:
            raise Unreachable(self.base_url, f"no answer within {self.timeout_s:g} s") from e
        except aiohttp.InvalidURL as e:
            raise Unreachable(self.base_url, "not a valid http(s) URL") from e
        except aiohttp.ClientError as e:
            raise Unreachable(self.base_url, str(e) or type(e).__name__) from e
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
            if status < 400:
                raise ApiError(
                    status, "", f"`{method} {path}` did not answer JSON: is this a Miroir proxy?"
                ) from None
        if status < 400:
            return payload
        if isinstance(payload, dict) and isinstance(payload.get("message"), str):
            raise ApiError(status, str(payload.get("code", "")), payload["message"], payload)
        raise ApiError(
            status, "", f"`{method} {path}` answered HTTP {status}: is this a Miroir proxy?"
        )

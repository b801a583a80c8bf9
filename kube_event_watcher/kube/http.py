"""The one HTTP boundary to the API server: aiohttp with a timeout on every request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from kube_event_watcher import __version__
from kube_event_watcher.kube.client import ApiEndpoint
from kube_event_watcher.kube.errors import ApiError

USER_AGENT = f"kube-event-watcher/{__version__}"


class KubeHttp:
    """Requests to one cluster. Only `kube_event_watcher/kube` talks to the API (kopf's rule).

    Each request names its purpose (list, watch, enrich, discovery, logs, lease, state,
    doctor, ...); `requests` counts them, sent or failed, for `kew_api_requests_total`.
    """

    def __init__(self, endpoint: ApiEndpoint) -> None:
        self.endpoint = endpoint
        self.requests: dict[str, int] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self.endpoint.ssl_context if self.endpoint.ssl_context else False,
                limit=32,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                base_url=None,
                connector=connector,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def _headers(self) -> dict[str, str]:
        auth = await self.endpoint.auth_header()
        return {"Authorization": auth} if auth else {}

    def url(self, path: str) -> str:
        return self.endpoint.server + path

    async def request_json(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
        content_type: str = "application/json",
        *,
        purpose: str = "other",
    ) -> Any:
        """Send one request and return the decoded JSON; a non-2xx answer raises ApiError."""
        data = None
        if body is not None:
            data = orjson.dumps(body)
        status, raw = await self._send(method, path, params, data, content_type, timeout, purpose)
        decoded = _decode(raw)
        if status >= 300:
            raise ApiError.from_status(status, decoded, path)
        return decoded

    async def get_bytes(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
        accept: str | None = None,
        *,
        purpose: str = "other",
    ) -> bytes:
        """GET an answer undecoded (JSON unless `accept` says otherwise), for a caller with
        a typed decoder (kube/wire.py); a non-2xx answer raises ApiError."""
        status, raw = await self._send(
            "GET", path, params, None, "", timeout, purpose, accept=accept
        )
        if status >= 300:
            raise ApiError.from_status(status, _decode(raw), path)
        return raw

    async def request_text(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
        *,
        purpose: str = "other",
    ) -> str:
        """GET a plain-text answer (a container log); a non-2xx answer raises ApiError."""
        raw = await self.get_bytes(path, params, timeout, accept="*/*", purpose=purpose)
        return raw.decode("utf-8", "replace")

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        content_type: str,
        timeout: float | None,
        purpose: str,
        accept: str | None = None,
    ) -> tuple[int, bytes]:
        self._count(purpose)
        headers = await self._headers()
        if data is not None:
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept
        client_timeout = aiohttp.ClientTimeout(
            total=timeout or self.endpoint.request_timeout,
            connect=self.endpoint.connect_timeout,
        )
        async with self._client().request(
            method,
            self.url(path),
            params=params,
            data=data,
            headers=headers,
            timeout=client_timeout,
            server_hostname=self.endpoint.server_hostname,
            allow_redirects=False,
        ) as response:
            return response.status, await response.read()

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        params: Mapping[str, str],
        read_timeout: float,
        *,
        purpose: str = "watch",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a streaming GET (a watch). A read gap longer than `read_timeout` raises
        a timeout, which is how a stalled stream is noticed."""
        self._count(purpose)
        headers = await self._headers()
        client_timeout = aiohttp.ClientTimeout(
            total=None, connect=self.endpoint.connect_timeout, sock_read=read_timeout
        )
        async with self._client().get(
            self.url(path),
            params=params,
            headers=headers,
            timeout=client_timeout,
            server_hostname=self.endpoint.server_hostname,
            allow_redirects=False,
        ) as response:
            if response.status >= 300:
                raise ApiError.from_status(response.status, _decode(await response.read()), path)
            yield response

    def _count(self, purpose: str) -> None:
        self.requests[purpose] = self.requests.get(purpose, 0) + 1

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")

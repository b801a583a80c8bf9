"""A lean HTTP/1.1 client for plain POSTs: keep-alive connections over asyncio streams.

aiohttp's per-request machinery (request and response objects, tracing hooks, timers, the
connector's bookkeeping) costs ~150 µs of CPU a POST here; a webhook lane sends one alert a
request, so that was most of an alert's cost. This writes the request in one buffer and
reads the answer with a few stream reads. What the notifiers rely on stays: TLS (the
receiver's `tls` settings or the system's CAs, hostname checked), the caller's timeout
around the whole exchange, redirects never followed (a 3xx is an answer like any other),
and every failure to get an answer raised as `OSError` (or `TimeoutError`) for the caller
to classify. No proxies (aiohttp was not told to trust the environment either), no
compression (none is asked for).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping

from yarl import URL

_HEADER_LIMIT = 64 * 1024  # bytes of status line and headers an answer may have
_FORBIDDEN = frozenset("\r\n\0")
_NO_BODY = frozenset({204, 304})


class ProtocolError(OSError):
    """The other end answered something that is not HTTP/1.x, or hung up mid-answer."""


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


def _clean(text: str) -> str:
    if _FORBIDDEN.intersection(text):
        raise ValueError("newline or NUL character in an HTTP header")
    return text


class Http1Client:
    """POSTs to one or more origins, reusing idle connections (one per request in flight)."""

    def __init__(self, tls: ssl.SSLContext | None, user_agent: str, limit: int) -> None:
        self._tls = tls  # None: the system's default context, made on first https use
        self._user_agent = user_agent
        self._limit = limit  # bytes of an answer's body kept; a longer one ends the connection
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}

    async def request(
        self, method: str, url: URL, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, body up to the client's limit, headers with lower-case names). Raises OSError
        when no whole answer came (a connection refused, reset, a TLS failure, garbage)."""
        scheme = url.scheme
        if scheme not in ("http", "https") or not url.raw_host:
            raise ValueError(f"not an http(s) URL with a host: scheme {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        key = (scheme, url.raw_host, port)
        head = self._head(method, url, len(body), headers)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.usable:
                conn.close()
                continue
            try:
                return await self._exchange(conn, key, head, body, reused=True)
            except _Stale:
                conn.close()  # the server had closed it while idle: a fresh one, once
        conn = await self._connect(scheme, url.raw_host, port)
        try:
            return await self._exchange(conn, key, head, body, reused=False)
        except _Stale as exc:
            raise ProtocolError("the server closed the connection without an answer") from exc

    async def _connect(self, scheme: str, host: str, port: int) -> _Connection:
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=tls,
            server_hostname=host if tls is not None else None,
            limit=_HEADER_LIMIT,
        )
        return _Connection(reader, writer)

    def _head(self, method: str, url: URL, length: int, headers: Mapping[str, str]) -> bytes:
        host = url.raw_host or ""
        if ":" in host:
            host = f"[{host}]"
        if url.explicit_port is not None and not url.is_default_port():
            host = f"{host}:{url.explicit_port}"
        fields: dict[str, tuple[str, str]] = {
            "host": ("Host", host),
            "user-agent": ("User-Agent", self._user_agent),
            "accept": ("Accept", "*/*"),
        }
        if url.user is not None:
            credentials = f"{url.user}:{url.password or ''}".encode()
            fields["authorization"] = (
                "Authorization",
                "Basic " + base64.b64encode(credentials).decode(),
            )
        for name, value in headers.items():
            fields[name.lower()] = (_clean(name), _clean(str(value)))
        fields["content-length"] = ("Content-Length", str(length))
        fields.pop("transfer-encoding", None)
        lines = [f"{_clean(method)} {url.raw_path_qs or '/'} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in fields.values()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    async def _exchange(
        self,
        conn: _Connection,
        key: tuple[str, str, int],
        head: bytes,
        body: bytes,
        *,
        reused: bool,
    ) -> tuple[int, bytes, dict[str, str]]:
        done = False
        try:
            try:
                conn.writer.write(head + body if len(body) < 16384 else head)
                if len(body) >= 16384:
                    conn.writer.write(body)
                await conn.writer.drain()
            except ConnectionError as exc:
                if reused:
                    raise _Stale from exc
                raise
            status, headers, keep = await self._read_head(conn.reader, reused)
            data, delimited = await self._read_body(conn.reader, status, headers)
            done = keep and delimited
            return status, data, headers
        except _Stale:
            raise
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise ProtocolError(f"connection lost: {exc or type(exc).__name__}") from exc
        finally:
            if done:
                self._idle.setdefault(key, []).append(conn)
            else:
                conn.close()  # its state is unknown (an error, a timeout, no length)

    async def _read_head(
        self, reader: asyncio.StreamReader, reused: bool
    ) -> tuple[int, dict[str, str], bool]:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if reused and not exc.partial:
                    raise _Stale from exc
                raise
            except asyncio.LimitOverrunError as exc:
                raise ProtocolError("the answer's headers are too long") from exc
            except ConnectionResetError as exc:
                if reused:
                    raise _Stale from exc
                raise
            lines = raw.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ProtocolError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if not line:
                    continue
                name, sep, value = line.partition(":")
                if not sep:
                    raise ProtocolError(f"a malformed header line: {line[:80]!r}")
                name, value = name.strip().lower(), value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if 100 <= status < 200 and status != 101:
                continue  # an interim answer (100 Continue): the real one follows
            keep = parts[0] == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
            return status, headers, keep

    async def _read_body(
        self, reader: asyncio.StreamReader, status: int, headers: Mapping[str, str]
    ) -> tuple[bytes, bool]:
        """The body (cut at the limit) and whether the connection may carry another
        request (the body's end was known and all of it was read)."""
        if status in _NO_BODY or status < 200:
            return b"", True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    length = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise ProtocolError("a malformed chunk in the answer") from exc
                if length == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    return b"".join(chunks), True
                if size + length > self._limit:
                    chunks.append(await reader.readexactly(self._limit - size))
                    return b"".join(chunks), False
                chunks.append(await reader.readexactly(length))
                size += length
                await reader.readexactly(2)
        length_text = headers.get("content-length")
        if length_text is not None:
            try:
                length = int(length_text)
            except ValueError as exc:
                raise ProtocolError("a malformed Content-Length in the answer") from exc
            if length > self._limit:
                return await reader.readexactly(self._limit), False
            return await reader.readexactly(length), True
        chunks, size = [], 0  # delimited by the close
        while size < self._limit and (chunk := await reader.read(self._limit - size)):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False

    async def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


class _Stale(ConnectionError):
    """A reused idle connection the server had closed before it saw the request."""

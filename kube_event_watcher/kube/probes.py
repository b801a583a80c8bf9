"""Network probes for `doctor`: DNS, TCP and one TLS exchange, each bounded by a timeout.

They gather facts (errno, OpenSSL's verify code, the presented certificate, the HTTP `Date`)
and never decide anything; `diagnosis.py` turns the facts into findings.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from kube_event_watcher.kube.diagnosis import ConnectOutcome, connect_kind


async def resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order (raises socket.gaierror)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def connect(
    address: str, port: int, timeout: float, timer: Callable[[], float] = time.perf_counter
) -> ConnectOutcome:
    started = timer()
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(address, port)
    except (OSError, TimeoutError) as exc:
        detail = "" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return ConnectOutcome(address, connect_kind(exc), timer() - started, detail)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ConnectOutcome(address, "ok", timer() - started)


@dataclass(frozen=True, slots=True)
class TlsExchange:
    """A TLS handshake and one plain `GET` over it, as far as it got."""

    verify_code: int | None = None
    verify_message: str = ""
    handshake_error: str = ""
    peer_der: bytes | None = None
    http_status: int | None = None
    server_date: float | None = None
    read_error: str = ""
    tls_version: str = ""

    @property
    def handshake_ok(self) -> bool:
        return not self.verify_message and not self.handshake_error


def unverified_context() -> ssl.SSLContext:
    """Only to read what the server presents when verification failed, never to send data."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def tls_exchange(
    address: str,
    port: int,
    context: ssl.SSLContext,
    server_hostname: str,
    timeout: float,
    host_header: str,
    path: str = "/version",
) -> TlsExchange:
    """Handshake with `context`, then `GET path` to read the status and the `Date` header.

    With TLS 1.3 a server that rejects our client certificate says so with an alert after
    the handshake has completed on our side, so it shows up as `read_error`."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
    except ssl.SSLCertVerificationError as exc:
        return TlsExchange(verify_code=exc.verify_code, verify_message=exc.verify_message or "")
    except ssl.SSLError as exc:
        return TlsExchange(handshake_error=exc.reason or str(exc))
    except TimeoutError:
        return TlsExchange(handshake_error=f"no TLS handshake within {timeout:g}s")
    except OSError as exc:
        return TlsExchange(handshake_error=exc.strerror or str(exc))
    ssl_object = writer.get_extra_info("ssl_object")
    peer = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    version = ssl_object.version() if ssl_object else ""
    status: int | None = None
    date: float | None = None
    read_error = ""
    try:
        async with asyncio.timeout(timeout):
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/json\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        status, date = _parse_head(head)
    except ssl.SSLError as exc:
        read_error = exc.reason or str(exc)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        read_error = f"connection closed by the server ({type(exc).__name__})"
    except TimeoutError:
        read_error = f"no HTTP answer within {timeout:g}s"
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return TlsExchange(
        peer_der=peer,
        http_status=status,
        server_date=date,
        read_error=read_error,
        tls_version=version or "",
    )


def _parse_head(head: bytes) -> tuple[int | None, float | None]:
    lines = head.decode("latin-1").split("\r\n")
    status: int | None = None
    parts = lines[0].split(" ", 2)
    if len(parts) >= 2 and parts[1].isdigit():
        status = int(parts[1])
    date: float | None = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "date":
            try:
                date = parsedate_to_datetime(value.strip()).timestamp()
            except (TypeError, ValueError):
                date = None
    return status, date

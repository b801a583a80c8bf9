"""What every HTTP notifier shares: one aiohttp session, a POST that never raises, the
platform's answer kept verbatim, `Retry-After` parsing and TLS settings.

A notifier subclasses `HttpNotifier`, builds its request and maps the `HttpAnswer` to
Delivered / RetryAfter / PermanentFailure; transport errors are already RetryAfter here.
"""

from __future__ import annotations

import email.utils
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import Field, SecretStr

from watcher.config.model import SecretsModel
from watcher.config.secrets import mask_url, redact
from watcher.notifiers.base import Notifier, RetryAfter

# Bodies kept for logs and `test-notify`; platform error answers are short.
ANSWER_LIMIT = 4096


class TlsConfig(SecretsModel):
    """TLS to the receiver: a private CA, a client certificate, or (for tests) no check."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


def ssl_context(tls: TlsConfig | None) -> ssl.SSLContext | bool:
    """An SSL context for aiohttp, or True for the system defaults."""
    if tls is None:
        return True
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class BasicAuthConfig(SecretsModel):
    username: str = Field(min_length=1)
    password: SecretStr


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: str
    headers: Mapping[str, str]

    def verbatim(self) -> str:
        return f"HTTP {self.status}\n{self.body}"


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds: either a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class HttpNotifier(Notifier):
    """A notifier that POSTs to one platform over HTTP(S)."""

    timeout: float = 30.0

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._session: aiohttp.ClientSession | None = None

    def tls_config(self) -> TlsConfig | None:
        tls = getattr(self.config, "tls", None)
        return tls if isinstance(tls, TlsConfig) else None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=ssl_context(self.tls_config()))
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=getattr(self.config, "timeout", self.timeout)),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        auth: aiohttp.BasicAuth | None = None,
    ) -> HttpAnswer | RetryAfter:
        """POST `body`; the answer, or RetryAfter when the platform could not be reached.

        Redirects are not followed: a webhook that redirects is misconfigured, and following
        one would send the payload (and its signature) somewhere nobody configured.
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), auth=auth, allow_redirects=False
            ) as response:
                raw = await response.content.read(ANSWER_LIMIT)
                answer = HttpAnswer(
                    response.status,
                    raw.decode("utf-8", errors="replace"),
                    {k.lower(): v for k, v in response.headers.items()},
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            where = mask_url(url)
            self.last_answer = f"no answer from {where}: {redact(str(exc)) or type(exc).__name__}"
            return RetryAfter(self.last_answer)
        self.last_answer = redact(answer.verbatim())
        return answer

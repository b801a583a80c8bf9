"""What every HTTP notifier shares: one aiohttp session per receiver, one POST per attempt
that never raises, the platform's answer kept verbatim, `Retry-After` parsing, TLS settings.

A notifier subclasses `HttpNotifier`, says how to build one attempt's request (`request`)
and what the platform's answer means (`judge`). Network errors and timeouts are RetryAfter
here already. Redirects are never followed. URLs carry secrets (tokens, keys, SAS
signatures), so no URL or library message leaves this module unmasked.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import orjson
from multidict import CIMultiDict
from pydantic import Field, SecretStr
from yarl import URL

from kube_event_watcher.clock import Clock, SystemClock
from kube_event_watcher.config.model import SecretsModel
from kube_event_watcher.config.secrets import mask_url, redact
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    PermanentFailure,
    RetryAfter,
)
from kube_event_watcher.notifiers.http1 import Http1Client
from kube_event_watcher.pipeline.model import Alert

USER_AGENT = "kube-event-watcher"
# Bytes of an answer kept for judging, logs and `test-notify`; platform answers are short.
ANSWER_LIMIT = 64 * 1024
DEFAULT_TIMEOUT = 10.0
_JSON_STARTS = frozenset('{["-0123456789tfn')


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


def parse_body(text: str) -> object:
    """An answer's body as JSON when it is JSON, else the text itself."""
    if not text or text.lstrip()[:1] not in _JSON_STARTS:
        return text  # plain text ("ok", "accepted"): no failed parse to pay for
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def answer_text(body: object) -> str:
    """`parse_body`'s result as text again (for matching words in an answer)."""
    return body if isinstance(body, str) else orjson.dumps(body).decode()


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What the platform answered: status, body text (verbatim, capped), headers (names in
    lower case) and the body parsed (JSON, or the text when it is not JSON)."""

    status: int
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: object = None

    @classmethod
    def of(cls, status: int, text: str, headers: Mapping[str, str] | None = None) -> HttpAnswer:
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        return cls(status, text, lowered, parse_body(text))

    def verbatim(self) -> str:
        return f"HTTP {self.status}\n{self.text}"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One attempt: where to POST what. `url` as a yarl URL is sent exactly as written."""

    url: str | URL
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def short(text: str, limit: int = 300) -> str:
    """A platform's answer on one line, shortened for a reason string, secrets masked."""
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def with_hint(reason: str, hint: str | None) -> str:
    return f"{reason} — {hint}" if hint else reason


def judge_status(answer: HttpAnswer, now: float, platform: str) -> RetryAfter | PermanentFailure:
    """The usual HTTP meaning of a non-success status: 429 / 5xx retry, the rest is final."""
    what = f"{platform} answered HTTP {answer.status}: {short(answer.text)}"
    if answer.status == 429 or answer.status >= 500:
        return RetryAfter(what, retry_after_seconds(answer.headers.get("retry-after"), now))
    return PermanentFailure(what)


def errcode_answer(
    answer: HttpAnswer, now: float, platform: str, keys: tuple[str, ...]
) -> DeliveryResult | tuple[object, str]:
    """For platforms that report errors inside an HTTP 200 body (`errcode`, `code`):
    an outcome when the answer settles it, else the non-zero code and its message."""
    if not 200 <= answer.status < 300:
        return judge_status(answer, now, platform)
    body = answer.body
    key = next((k for k in keys if isinstance(body, dict) and k in body), None)
    if key is None or not isinstance(body, dict):
        return PermanentFailure(f"{platform} answered without {keys[0]}: {short(answer.text)}")
    code = body[key]
    if code == 0:
        return Delivered()
    message = body.get("errmsg", body.get("msg", body.get("StatusMessage", "")))
    return code, f"{platform} {key} {code}: {short(str(message))}"


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    # StreamReader.read(n) returns what is buffered, which may be less than the whole body.
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class HttpNotifier(Notifier):
    """A notifier that POSTs to one platform over HTTP(S): `send` builds the attempt with
    `request`, POSTs it and maps the answer with `judge`."""

    platform: ClassVar[str] = "http"
    # POSTs go through the lean HTTP/1.1 client (notifiers/http1.py) instead of aiohttp:
    # for platforms that take a plain POST and answer it (the webhook).
    lean_posts: ClassVar[bool] = False

    def __init__(self, config: Any, *, clock: Clock | None = None) -> None:
        super().__init__(config)
        self.clock: Clock = clock or SystemClock()
        self.timeout: float = float(getattr(config, "timeout", DEFAULT_TIMEOUT))
        self._session: aiohttp.ClientSession | None = None
        self._lean: Http1Client | None = None
        self._lean_urls: dict[str, URL] = {}

    def tls_config(self) -> TlsConfig | None:
        tls = getattr(self.config, "tls", None)
        return tls if isinstance(tls, TlsConfig) else None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_context(self.tls_config())),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": USER_AGENT},
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._lean is not None:
            await self._lean.close()
            self._lean = None

    @abstractmethod
    def request(self, alert: Alert) -> HttpRequest:
        """The URL, body and headers of one attempt (signed now, where the platform signs)."""

    def request_many(self, alerts: Sequence[Alert]) -> HttpRequest:
        """One attempt carrying several alerts, for platforms that take a list."""
        raise NotImplementedError(f"{type(self).__name__} sends one alert per request")

    @abstractmethod
    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        """The outcome the platform's answer means."""

    async def send(self, alert: Alert) -> DeliveryResult:
        return await self._attempt(self.request(alert))

    async def send_many(self, alerts: Sequence[Alert]) -> DeliveryResult:
        if len(alerts) == 1:
            return await self.send(alerts[0])
        return await self._attempt(self.request_many(alerts))

    async def _attempt(self, request: HttpRequest) -> DeliveryResult:
        answer = await self.post(request.url, request.body, request.headers)
        if isinstance(answer, RetryAfter):
            return answer
        return self.judge(answer)

    async def post(
        self,
        url: str | URL,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        method: str = "POST",
    ) -> HttpAnswer | RetryAfter:
        """POST `body` (or `method`: PATCH where a platform edits that way); the answer, or
        RetryAfter when the platform could not be reached.

        Redirects are not followed: a webhook that redirects is misconfigured, and following
        one would send the payload (and its signature) somewhere nobody configured.
        """
        if self.lean_posts and method == "POST":
            return await self._lean_post(url, body, headers or {})
        if self._session is None:
            await self.start()
        assert self._session is not None
        sent: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json; charset=utf-8"})
        sent.update(headers or {})
        try:
            async with self._session.request(
                method, url, data=body, headers=sent, allow_redirects=False
            ) as response:
                raw = await _read_capped(response, ANSWER_LIMIT)
                answer = HttpAnswer.of(
                    response.status, raw.decode("utf-8", "replace"), response.headers
                )
        except TimeoutError:
            self.last_answer = f"{self.platform}: no answer within {self.timeout:g}s"
            return RetryAfter(self.last_answer)
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            where = mask_url(str(url))
            message = str(exc).replace(str(url), where) or type(exc).__name__
            self.last_answer = short(f"{self.platform}: cannot reach {where}: {message}")
            return RetryAfter(self.last_answer)
        self.last_answer = redact(answer.verbatim())
        return answer

    def _lean_url(self, url: str) -> URL:
        """The parsed URL (a receiver POSTs to one or two: parsed once each)."""
        parsed = self._lean_urls.get(url)
        if parsed is None:
            if len(self._lean_urls) > 64:
                self._lean_urls.clear()
            parsed = self._lean_urls[url] = URL(url)
        return parsed

    async def _lean_post(
        self, url: str | URL, body: bytes, headers: Mapping[str, str]
    ) -> HttpAnswer | RetryAfter:
        """`post` through the lean client: the same answers, the same failures as RetryAfter."""
        if self._lean is None:
            tls = ssl_context(self.tls_config())
            self._lean = Http1Client(
                tls if isinstance(tls, ssl.SSLContext) else None, USER_AGENT, ANSWER_LIMIT
            )
        sent = {"content-type": "application/json; charset=utf-8"}
        sent.update((name.lower(), value) for name, value in headers.items())
        target = url if isinstance(url, URL) else self._lean_url(url)
        try:
            async with asyncio.timeout(self.timeout):
                status, raw, answer_headers = await self._lean.request("POST", target, body, sent)
        except TimeoutError:
            self.last_answer = f"{self.platform}: no answer within {self.timeout:g}s"
            return RetryAfter(self.last_answer)
        except OSError as exc:
            where = mask_url(str(url))
            message = str(exc).replace(str(url), where) or type(exc).__name__
            self.last_answer = short(f"{self.platform}: cannot reach {where}: {message}")
            return RetryAfter(self.last_answer)
        answer = HttpAnswer(
            status,
            (text := raw.decode("utf-8", "replace")),
            answer_headers,
            parse_body(text),
        )
        self.last_answer = redact(answer.verbatim())
        return answer

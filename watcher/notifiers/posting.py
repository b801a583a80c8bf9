"""JSON-over-HTTPS chat platforms: one aiohttp session per receiver, one POST per attempt.

The answer is handed back as an `HttpReply` for the platform's module to judge; network
errors and timeouts are `RetryAfter` here already. URLs carry secrets (tokens, keys, SAS
signatures), so no URL or library message leaves this module unmasked.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import ClassVar, Self

import aiohttp
import orjson
from pydantic import Field, SecretStr, model_validator
from yarl import URL

from watcher.clock import Clock, SystemClock
from watcher.config.durations import Duration
from watcher.config.secrets import mask_url, redact
from watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from watcher.notifiers.message import MessageConfig, MessageRenderer
from watcher.notifiers.templating import DialectName, Language
from watcher.pipeline.model import Alert

USER_AGENT = "kube-event-watcher"


class HttpSettings(MessageConfig):
    """A platform reached over HTTP: how long one attempt may take."""

    timeout: Duration = Field(default=10.0, gt=0)


class HttpReceiverConfig(HttpSettings):
    """A platform reached by POSTing JSON to a secret URL."""

    url: SecretStr

    @model_validator(mode="after")
    def _http_url(self) -> Self:
        url = self.url.get_secret_value()
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            # Never echo the value: it is a secret.
            scheme = parsed.scheme if parsed is not None and parsed.scheme else "no scheme"
            raise ValueError(
                "url: expected an http(s):// URL (the platform's webhook address), "
                f"got a URL with {scheme!r}"[:200]
            )
        return self


@dataclass(frozen=True, slots=True)
class HttpReply:
    """What the platform answered: status, JSON body (or text when not JSON), headers."""

    status: int
    body: object
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        if isinstance(self.body, str):
            return self.body
        return orjson.dumps(self.body).decode()


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A `Retry-After` header as seconds from `now`: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def short(text: str, limit: int = 300) -> str:
    """A platform's answer shortened for a reason string, secrets masked."""
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def judge_status(reply: HttpReply, now: float, platform: str) -> RetryAfter | PermanentFailure:
    """The usual HTTP meaning of a non-success status: 429 / 5xx retry, the rest is final."""
    what = f"{platform} answered HTTP {reply.status}: {short(reply.text)}"
    if reply.status == 429 or reply.status >= 500:
        return RetryAfter(what, retry_after_seconds(reply.headers.get("Retry-After"), now))
    return PermanentFailure(what)


def errcode_answer(
    reply: HttpReply, now: float, platform: str, keys: tuple[str, ...]
) -> DeliveryResult | tuple[object, str]:
    """For platforms that report errors inside an HTTP 200 body (`errcode`, `code`):
    an outcome when the answer settles it, else the non-zero code and its message."""
    if not 200 <= reply.status < 300:
        return judge_status(reply, now, platform)
    body = reply.body
    key = next((k for k in keys if isinstance(body, dict) and k in body), None)
    if key is None or not isinstance(body, dict):
        return PermanentFailure(f"{platform} answered without {keys[0]}: {short(reply.text)}")
    code = body[key]
    if code == 0:
        return Delivered()
    message = body.get("errmsg", body.get("msg", body.get("StatusMessage", "")))
    return code, f"{platform} {key} {code}: {short(str(message))}"


class HttpNotifier(Notifier):
    """Base for the chat platforms: renders with the receiver's template, POSTs the request
    that `request` builds, and lets `judge` map the platform's answer to an outcome."""

    config_model: ClassVar[type[ReceiverConfig]] = HttpReceiverConfig
    platform: ClassVar[str] = "http"
    template_platform: ClassVar[str] = "slack"
    dialect: ClassVar[DialectName] = "plain"
    default_language: ClassVar[Language] = "en"
    # The platform's documented sending limit; the delivery stage's default token bucket.
    default_rate_per_minute: ClassVar[float] = 60.0

    def __init__(
        self,
        config: HttpSettings,
        *,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(config)
        self.clock: Clock = clock or SystemClock()
        self.timeout = config.timeout
        self.renderer = MessageRenderer.for_config(
            config, self.template_platform, self.dialect, self.default_language
        )
        self._session = session
        self._own_session = session is None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": USER_AGENT},
            )

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    @staticmethod
    def webhook_url(config: HttpReceiverConfig) -> URL:
        # encoded=True: the URL is used exactly as written (its token is already encoded).
        return URL(config.url.get_secret_value(), encoded=True)

    @abstractmethod
    def request(self, alert: Alert) -> tuple[URL, bytes]:
        """The URL and body of one attempt (signed now, where the platform signs)."""

    @abstractmethod
    def judge(self, reply: HttpReply) -> DeliveryResult:
        """The outcome the platform's answer means."""

    async def send(self, alert: Alert) -> DeliveryResult:
        url, payload = self.request(alert)
        reply = await self.post_json(url, payload)
        if isinstance(reply, RetryAfter):
            return reply
        return self.judge(reply)

    def explain(self, status: int, body: object) -> str | None:
        """Plain words for a known error answer (printed by `test-notify`); None if unknown."""
        return None

    async def post_json(
        self, url: URL, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> HttpReply | RetryAfter:
        if self._session is None:
            await self.start()
        assert self._session is not None
        sent_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        try:
            async with self._session.post(
                url, data=payload, headers=sent_headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                status, reply_headers = response.status, dict(response.headers)
        except TimeoutError:
            return RetryAfter(f"{self.platform}: no answer within {self.timeout:g}s")
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            where = mask_url(str(url))
            return RetryAfter(short(f"{self.platform}: cannot reach {where}: {exc}"))
        try:
            body: object = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        return HttpReply(status, body, reply_headers)

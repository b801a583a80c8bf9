"""What the chat platforms share (DingTalk, WeCom, Feishu, Slack, Teams, Telegram): a message
rendered with the receiver's template, POSTed as JSON by `HttpNotifier`, usually to a
secret webhook URL."""

from __future__ import annotations

from typing import ClassVar, Self

import orjson
from pydantic import Field, SecretStr, model_validator
from yarl import URL

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.durations import Duration
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.http import (
    DEFAULT_TIMEOUT,
    HttpAnswer,
    HttpNotifier,
    HttpRequest,
    TlsConfig,
    errcode_answer,
    judge_status,
    with_hint,
)
from kube_event_watcher.notifiers.message import MessageConfig, MessageRenderer
from kube_event_watcher.notifiers.templating import DialectName, Language
from kube_event_watcher.pipeline.model import Alert


def ensure_line(text: str, line: str, separator: str = "\n\n") -> str:
    """`text` with `line` appended unless it is already there (a keyword the platform looks
    for, or a mention it only honours when written out in the text)."""
    if not line or line in text:
        return text
    return f"{text}{separator}{line}" if text else line


def ensure_prefix(title: str, keyword: str | None) -> str:
    return title if not keyword or keyword in title else f"{keyword} {title}"


class ChatSettings(MessageConfig):
    """A chat platform reached over HTTP: how long one attempt may take, TLS."""

    timeout: Duration = Field(default=DEFAULT_TIMEOUT, gt=0)
    tls: TlsConfig | None = None


class ChatWebhookConfig(ChatSettings):
    """A chat platform reached by POSTing JSON to a secret webhook URL."""

    url: SecretStr

    @model_validator(mode="after")
    def _http_url(self) -> Self:
        check_http_url(self.url)
        return self


def check_http_url(secret: SecretStr) -> None:
    """A webhook URL must be http(s) with a host; the error never echoes it (a secret)."""
    try:
        parsed = URL(secret.get_secret_value())
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        scheme = parsed.scheme if parsed is not None and parsed.scheme else "no scheme"
        raise ValueError(
            "url: expected an http(s):// URL (the platform's webhook address), "
            f"got a URL with {scheme!r}"[:200]
        )


class ChatNotifier(HttpNotifier):
    """An HTTP notifier that renders the alert with the receiver's template (or the
    platform's default in its default language) and POSTs it to the receiver's webhook.

    A platform says what it sends (`message`, or `payload` when it must fit the encoded
    body itself) and how it answers: with the HTTP status alone (Slack, Teams), or with an
    error code in an HTTP 200 body (`errcode_keys`, `retry_on`: DingTalk, WeCom, Feishu).
    """

    config_model: ClassVar[type[ReceiverConfig]] = ChatWebhookConfig
    template_platform: ClassVar[str] = "slack"
    dialect: ClassVar[DialectName] = "plain"
    default_language: ClassVar[Language] = "en"
    platform_title: ClassVar[str] = "Chat"
    """The platform's name as answers and errors spell it, e.g. "DingTalk"."""
    errcode_keys: ClassVar[tuple[str, ...]] = ()
    """The body keys that carry the platform's error code; empty when the status says all."""

    def __init__(self, config: ChatSettings, *, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self.renderer = MessageRenderer.for_config(
            config, self.template_platform, self.dialect, self.default_language
        )

    @staticmethod
    def webhook_url(config: ChatWebhookConfig) -> URL:
        # encoded=True: the URL is used exactly as written (its token is already encoded).
        return URL(config.url.get_secret_value(), encoded=True)

    def message(self, alert: Alert) -> dict[str, object]:
        """The JSON request body."""
        raise NotImplementedError(f"{type(self).__name__} builds neither message nor payload")

    def payload(self, alert: Alert) -> bytes:
        return orjson.dumps(self.message(alert))

    def request_url(self) -> URL:
        assert isinstance(self.config, ChatWebhookConfig)
        return self.webhook_url(self.config)

    def request(self, alert: Alert) -> HttpRequest:
        return HttpRequest(self.request_url(), self.payload(alert))

    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        if not self.errcode_keys:
            return self.judge_by_status(answer)
        now = self.clock.now()
        outcome = errcode_answer(answer, now, self.platform_title, self.errcode_keys)
        if not isinstance(outcome, tuple):
            return outcome
        code, what = outcome
        retry = self.retry_on(code, what)
        if retry is not None:
            return retry
        return PermanentFailure(with_hint(what, self.explain(answer.status, answer.body)))

    def judge_by_status(self, answer: HttpAnswer) -> DeliveryResult:
        """2xx is delivered; 429 and 5xx are retried; the rest is final, with the
        platform's explanation when it has one."""
        if 200 <= answer.status < 300:
            return Delivered()
        result = judge_status(answer, self.clock.now(), self.platform_title)
        explanation = self.explain(answer.status, answer.body)
        if isinstance(result, PermanentFailure) and explanation:
            return PermanentFailure(with_hint(result.reason, explanation))
        return result

    def retry_on(self, code: object, what: str) -> RetryAfter | None:
        """The retry a non-zero error code calls for; None when the code is final."""
        return None

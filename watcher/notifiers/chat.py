"""What the chat platforms share (DingTalk, WeCom, Feishu, Slack, Teams, Telegram): a message
rendered with the receiver's template, POSTed as JSON by `HttpNotifier`, usually to a
secret webhook URL."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from yarl import URL

from watcher.clock import Clock
from watcher.config.durations import Duration
from watcher.notifiers.base import ReceiverConfig
from watcher.notifiers.http import DEFAULT_TIMEOUT, HttpNotifier, TlsConfig
from watcher.notifiers.message import MessageConfig, MessageRenderer
from watcher.notifiers.templating import DialectName, Language


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


class ChatNotifier(HttpNotifier):
    """An HTTP notifier that renders the alert with the receiver's template (or the
    platform's default in its default language)."""

    config_model: ClassVar[type[ReceiverConfig]] = ChatWebhookConfig
    template_platform: ClassVar[str] = "slack"
    dialect: ClassVar[DialectName] = "plain"
    default_language: ClassVar[Language] = "en"

    def __init__(self, config: ChatSettings, *, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        self.renderer = MessageRenderer.for_config(
            config, self.template_platform, self.dialect, self.default_language
        )

    @staticmethod
    def webhook_url(config: ChatWebhookConfig) -> URL:
        # encoded=True: the URL is used exactly as written (its token is already encoded).
        return URL(config.url.get_secret_value(), encoded=True)

"""Telegram Bot API `sendMessage` in HTML parse mode.

Contract (https://core.telegram.org/bots/api#sendmessage): POST
{api}/bot<token>/sendMessage with `{"chat_id","text","parse_mode":"HTML"}`; text at most
4096 characters after entity parsing. Answers `{"ok":false,"error_code","description",
"parameters":{"retry_after"}}`. About one message a second per chat, 20 a minute per group.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from pydantic import Field, SecretStr
from yarl import URL

from kube_event_watcher.clock import Clock
from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.chat import ChatNotifier, ChatSettings
from kube_event_watcher.notifiers.http import HttpAnswer, HttpRequest, short, with_hint
from kube_event_watcher.notifiers.templating import (
    sanitize_telegram_html,
    telegram_html_to_plain,
)
from kube_event_watcher.pipeline.model import Alert

MAX_TEXT_CHARS = 4096
PARSE_ERROR = "can't parse entities"


class TelegramConfig(ChatSettings):
    """`token` is the bot's token from @BotFather; `chat_id` a user, group or @channel."""

    token: SecretStr
    chat_id: int | str
    message_thread_id: int | None = None
    disable_notification: bool = False
    api_url: str = Field(default="https://api.telegram.org", pattern=r"^https?://")


def explain_telegram(status: int, body: object) -> str | None:
    description = ""
    parameters: dict[str, Any] = {}
    if isinstance(body, dict):
        description = str(body.get("description", ""))
        raw = body.get("parameters")
        parameters = raw if isinstance(raw, dict) else {}
    lowered = description.lower()
    if status == 429:
        wait = parameters.get("retry_after")
        return f"Telegram's flood control: wait {wait} s before the next message to this chat."
    if "migrate_to_chat_id" in parameters:
        return f"The group became a supergroup: set chat_id to {parameters['migrate_to_chat_id']}."
    if status == 401:
        return "Telegram does not know this bot token: copy it from @BotFather again."
    if status == 403:
        return "The bot was blocked by the user or removed from the chat: add it again."
    if "chat not found" in lowered:
        return (
            "No such chat for this bot: check chat_id, and that the bot was added to the "
            "group (or the user started the bot)."
        )
    if PARSE_ERROR in lowered:
        return "Telegram could not parse the HTML; the message is re-sent as plain text."
    if "message is too long" in lowered:
        return "The message is longer than Telegram's 4096 characters."
    if status >= 500:
        return "Telegram's server failed; the alert is retried."
    return None


class TelegramNotifier(ChatNotifier):
    config_model: ClassVar[type[ReceiverConfig]] = TelegramConfig
    config: TelegramConfig
    platform = "telegram"
    template_platform = "telegram"
    dialect = "telegram"
    platform_title = "Telegram"
    # About one message a second per chat and 20 a minute in a group: the group's limit.
    default_rate_limit = RateLimitConfig(per_minute=20)

    def __init__(self, config: TelegramConfig, *, clock: Clock | None = None) -> None:
        super().__init__(config, clock=clock)
        token = config.token.get_secret_value()
        self.url = URL(f"{config.api_url.rstrip('/')}/bot{token}/sendMessage", encoded=True)

    def text(self, alert: Alert) -> str:
        rendered = self.renderer.render(alert)
        # Telegram counts characters after parsing; the raw HTML is never shorter, so a cut
        # by raw characters is always within the limit.
        return self.renderer.cut(
            sanitize_telegram_html(rendered.header),
            sanitize_telegram_html(rendered.body),
            MAX_TEXT_CHARS,
            "chars",
        )

    def request_body(self, text: str, html: bool) -> bytes:
        body: dict[str, Any] = {
            "chat_id": self.config.chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": True},
            "disable_notification": self.config.disable_notification,
        }
        if html:
            body["parse_mode"] = "HTML"
        if self.config.message_thread_id is not None:
            body["message_thread_id"] = self.config.message_thread_id
        return orjson.dumps(body)

    def request(self, alert: Alert) -> HttpRequest:
        return HttpRequest(self.url, self.request_body(self.text(alert), html=True))

    async def send(self, alert: Alert) -> DeliveryResult:
        text = self.text(alert)
        answer = await self.post(self.url, self.request_body(text, html=True))
        if isinstance(answer, RetryAfter):
            return answer
        if self._is_parse_error(answer):
            # Once, within this send: the same alert as plain text rather than not at all.
            plain = telegram_html_to_plain(text)
            answer = await self.post(self.url, self.request_body(plain, html=False))
            if isinstance(answer, RetryAfter):
                return answer
            result = self.judge(answer)
            if isinstance(result, Delivered):
                return Delivered("sent as plain text: Telegram could not parse the HTML")
            return result
        return self.judge(answer)

    @staticmethod
    def _is_parse_error(answer: HttpAnswer) -> bool:
        body = answer.body
        return (
            answer.status == 400
            and isinstance(body, dict)
            and PARSE_ERROR in str(body.get("description", "")).lower()
        )

    def judge(self, answer: HttpAnswer) -> DeliveryResult:
        body = answer.body if isinstance(answer.body, dict) else {}
        if 200 <= answer.status < 300 and body.get("ok") is True:
            return Delivered()
        description = short(str(body.get("description", answer.text)))
        what = f"Telegram {answer.status}: {description}"
        if answer.status == 429:
            parameters = body.get("parameters")
            wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
            return RetryAfter(what, float(wait) if isinstance(wait, int | float) else None)
        if answer.status >= 500:
            return RetryAfter(what)
        return PermanentFailure(with_hint(what, explain_telegram(answer.status, answer.body)))

    def explain(self, status: int, body: object) -> str | None:
        return explain_telegram(status, body)

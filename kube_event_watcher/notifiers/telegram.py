"""Telegram Bot API `sendMessage` in HTML parse mode.

Contract (https://core.telegram.org/bots/api#sendmessage): POST
{api}/bot<token>/sendMessage with `{"chat_id","text","parse_mode":"HTML"}`; text at most
4096 characters after entity parsing. Answers `{"ok":false,"error_code","description",
"parameters":{"retry_after"}}`. About one message a second per chat, 20 a minute per group.

With `edit_in_place`, an incident's updates and its resolve edit the message that first
told it (https://core.telegram.org/bots/api#editmessagetext: the same text is answered
"message is not modified", a deleted message "message to edit not found": then a new one
is sent). The message ids are kept beside the spool (`message_refs`).
"""

from __future__ import annotations

from dataclasses import dataclass
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
from kube_event_watcher.notifiers.message_refs import MessageRefs, open_refs
from kube_event_watcher.notifiers.templating import (
    sanitize_telegram_html,
    telegram_html_to_plain,
)
from kube_event_watcher.pipeline.model import Alert

MAX_TEXT_CHARS = 4096
PARSE_ERROR = "can't parse entities"
NOT_MODIFIED = "message is not modified"
# Answers to editMessageText that mean the message cannot be edited: send a new one.
CANNOT_EDIT = ("message to edit not found", "message can't be edited", "message_id_invalid")


@dataclass(frozen=True, slots=True)
class PlainAnswer:
    """The answer to the plain-text re-send after Telegram could not parse the HTML."""

    answer: HttpAnswer


Posted = HttpAnswer | PlainAnswer | RetryAfter


class TelegramConfig(ChatSettings):
    """`token` is the bot's token from @BotFather; `chat_id` a user, group or @channel."""

    token: SecretStr
    chat_id: int | str
    message_thread_id: int | None = None
    disable_notification: bool = False
    api_url: str = Field(default="https://api.telegram.org", pattern=r"^https?://")
    edit_in_place: bool = False
    """Edit the incident's message (its updates, its resolve) instead of sending more."""


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
        base = f"{config.api_url.rstrip('/')}/bot{token}"
        self.url = URL(f"{base}/sendMessage", encoded=True)
        self.edit_url = URL(f"{base}/editMessageText", encoded=True)
        self.refs: MessageRefs | None = None

    async def start(self) -> None:
        await super().start()
        if self.config.edit_in_place and self.refs is None:
            self.refs = open_refs(self.state_dir, self.name)

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

    def request_body(self, text: str, html: bool, message_id: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "chat_id": self.config.chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": True},
        }
        if message_id is None:
            body["disable_notification"] = self.config.disable_notification
            if self.config.message_thread_id is not None:
                body["message_thread_id"] = self.config.message_thread_id
        else:
            body["message_id"] = int(message_id)
        if html:
            body["parse_mode"] = "HTML"
        return orjson.dumps(body)

    def request(self, alert: Alert) -> HttpRequest:
        return HttpRequest(self.url, self.request_body(self.text(alert), html=True))

    async def send(self, alert: Alert) -> DeliveryResult:
        text = self.text(alert)
        ref = self.refs.get(alert.key) if self.refs is not None else None
        if ref is not None:
            edited = await self._post_text(self.edit_url, text, ref)
            if not isinstance(edited, HttpAnswer) or not self._cannot_edit(edited):
                return self._outcome(alert, edited, ref)
            # deleted by someone, or too old to edit: tell it in a new message
        return self._outcome(alert, await self._post_text(self.url, text, None), None)

    async def _post_text(self, url: URL, text: str, message_id: str | None) -> Posted:
        """POST the text as HTML; when Telegram cannot parse it, once more as plain text
        (within this send: the same alert as plain text rather than not at all)."""
        answer = await self.post(url, self.request_body(text, True, message_id))
        if isinstance(answer, RetryAfter) or not self._is_parse_error(answer):
            return answer
        plain = telegram_html_to_plain(text)
        again = await self.post(url, self.request_body(plain, False, message_id))
        return again if isinstance(again, RetryAfter) else PlainAnswer(again)

    def _outcome(self, alert: Alert, posted: Posted, edited: str | None) -> DeliveryResult:
        if isinstance(posted, RetryAfter):
            return posted
        answer = posted.answer if isinstance(posted, PlainAnswer) else posted
        result = self.judge(answer)
        if not isinstance(result, Delivered):
            return result
        message_id = edited
        if message_id is None:
            sent = answer.body.get("result") if isinstance(answer.body, dict) else None
            if isinstance(sent, dict) and isinstance(sent.get("message_id"), int):
                message_id = str(sent["message_id"])
        if message_id is not None and self.refs is not None:
            self.refs.told(alert, message_id)
        if isinstance(posted, PlainAnswer):
            return Delivered("sent as plain text: Telegram could not parse the HTML")
        return Delivered(f"edited message {edited}") if edited and not result.detail else result

    @staticmethod
    def _cannot_edit(answer: HttpAnswer) -> bool:
        body = answer.body if isinstance(answer.body, dict) else {}
        description = str(body.get("description", "")).lower()
        return answer.status == 400 and any(text in description for text in CANNOT_EDIT)

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
        if answer.status == 400 and NOT_MODIFIED in str(body.get("description", "")).lower():
            return Delivered("unchanged: the message already says this")  # a re-send
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

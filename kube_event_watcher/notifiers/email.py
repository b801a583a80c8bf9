"""E-mail over SMTP (aiosmtplib): a multipart text + HTML message per alert.

The Message-ID is derived from the alert's notification id, so a notification re-sent
after a crash carries the same Message-ID and mail clients and archives can recognise the
repeat; `References` names the alert's key, so firing and resolved land in one thread.
SMTP replies: 4xx is transient (retry), 5xx permanent.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import ClassVar, Literal, Self

import aiosmtplib
from pydantic import Field, SecretStr, model_validator

from kube_event_watcher.clock import Clock, SystemClock
from kube_event_watcher.config.delivery import RateLimitConfig
from kube_event_watcher.config.durations import Duration
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    PermanentFailure,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.message import MessageConfig, MessageRenderer, check_template
from kube_event_watcher.pipeline.model import Alert

MESSAGE_ID_DOMAIN = "kube-event-watcher"
_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmailConfig(MessageConfig):
    """An SMTP server and who gets the mail. `security: none` is for a local relay only."""

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: str | None = None
    sender: str = Field(min_length=3, description="the From address")
    to: list[str] = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    timeout: Duration = Field(default=30.0, gt=0)
    html_template: str | None = None
    html_template_file: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password (or password_file), or neither")
        if self.security == "none" and self.password is not None and not is_loopback(self.host):
            raise ValueError(
                f"security: none would send the password in clear text to {self.host}; "
                "use starttls or tls"
            )
        check_template(self.html_template, self.html_template_file, "html_template")
        for address in [self.sender, *self.to, *self.cc]:
            if "@" not in address:
                raise ValueError(f"expected an e-mail address, got {address!r}")
        return self


def explain_smtp(code: int, message: str) -> str | None:
    if code in (530, 534, 535, 538):
        return "The SMTP server refused the login: check username and password."
    if code in (550, 551, 553):
        return "The SMTP server refused a recipient or the sender address: check to/cc/sender."
    if code == 552:
        return "The SMTP server refused the size of the message."
    if code == 554:
        return "The SMTP server refused the message (policy or spam filter)."
    if 400 <= code < 500:
        return "The SMTP server is temporarily unable to take the message; it is retried."
    return None


class EmailNotifier(Notifier):
    config_model: ClassVar[type[ReceiverConfig]] = EmailConfig
    platform: ClassVar[str] = "email"
    # No platform limit; keeps a flapping cluster from flooding inboxes.
    default_rate_limit: ClassVar[RateLimitConfig | None] = RateLimitConfig(per_minute=30)

    def __init__(self, config: EmailConfig, *, clock: Clock | None = None) -> None:
        super().__init__(config)
        self.config: EmailConfig = config
        self.clock: Clock = clock or SystemClock()
        self.text_renderer = MessageRenderer.for_config(config, "email-text", "plain", "en")
        html_source = check_template(
            config.html_template, config.html_template_file, "html_template"
        )
        self.html_renderer = MessageRenderer(
            config.name,
            "email-html",
            "html",
            self.text_renderer.language,
            html_source,
            config.html_template_file or "html_template",
        )
        self.port = config.port or _DEFAULT_PORTS[config.security]
        self._tls: ssl.SSLContext | None = None

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self.config.ca_file)
        return self._tls

    def message(self, alert: Alert) -> EmailMessage:
        text = self.text_renderer.render(alert)
        html = self.html_renderer.render(alert)
        message = EmailMessage()
        message["Subject"] = text.title
        message["From"] = self.config.sender
        message["To"] = ", ".join(self.config.to)
        if self.config.cc:
            message["Cc"] = ", ".join(self.config.cc)
        message["Date"] = format_datetime(datetime.fromtimestamp(self.clock.now(), UTC))
        message["Message-ID"] = f"<{alert.notification_id}@{MESSAGE_ID_DOMAIN}>"
        thread = f"<{alert.key}@{MESSAGE_ID_DOMAIN}>"
        message["References"] = thread
        message["In-Reply-To"] = thread
        message["X-Kube-Event-Watcher-Alert"] = alert.key
        message["X-Kube-Event-Watcher-Status"] = alert.status
        message.set_content(text.text + "\n")
        html_document = (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n'
            f"{html.text}\n</body></html>\n"
        )
        message.add_alternative(html_document, subtype="html")
        return message

    async def send(self, alert: Alert) -> DeliveryResult:
        message = self.message(alert)
        security = self.config.security
        password = self.config.password.get_secret_value() if self.config.password else None
        try:
            errors, _ = await aiosmtplib.send(
                message,
                hostname=self.config.host,
                port=self.port,
                username=self.config.username,
                password=password,
                use_tls=security == "tls",
                start_tls=security == "starttls",
                tls_context=self._tls_context() if security != "none" else None,
                timeout=self.config.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            what = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if any(400 <= code < 500 for code in codes):
                return RetryAfter(redact(f"SMTP refused every recipient for now: {what}"))
            return PermanentFailure(redact(f"SMTP refused every recipient: {what}"))
        except aiosmtplib.SMTPResponseException as exc:
            what = redact(f"SMTP {exc.code}: {exc.message}")
            if 400 <= exc.code < 500:
                return RetryAfter(what)
            explanation = explain_smtp(exc.code, exc.message)
            return PermanentFailure(f"{what} — {explanation}" if explanation else what)
        except aiosmtplib.SMTPNotSupported as exc:
            return PermanentFailure(
                redact(f"SMTP server {self.config.host}:{self.port}: {exc}; check `security`")
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return RetryAfter(redact(f"cannot send through {self.config.host}:{self.port}: {exc}"))
        if errors:
            # Some recipients were refused, the others have the mail: re-sending would
            # duplicate it for them, so report and count it as delivered.
            refused = ", ".join(f"{who}: {reply.code}" for who, reply in errors.items())
            return Delivered(redact(f"refused for some recipients: {refused}"))
        return Delivered()

    def explain(self, status: int, body: object) -> str | None:
        return explain_smtp(status, str(body))

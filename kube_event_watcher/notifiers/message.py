"""Receiver settings shared by every notifier that sends a written message, and the renderer.

`language`, `template` (inline) and `template_file` are the same keys for every chat and
e-mail platform. A template that fails while rendering (a typo in an override, a sandbox
refusal) never loses the alert: the platform's default template is used instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import structlog
from pydantic import model_validator

from kube_event_watcher.notifiers.base import ReceiverConfig
from kube_event_watcher.notifiers.templating import (
    DialectName,
    Language,
    MessageTemplate,
    RenderedMessage,
    TemplateProblem,
    Unit,
    alert_context,
    compile_template,
    default_template,
    fit_payload,
    render_message,
    truncate_message,
)
from kube_event_watcher.pipeline.model import Alert

log = structlog.get_logger(__name__)


def read_template_file(path: str, key: str) -> str:
    expanded = Path(path).expanduser()
    try:
        return expanded.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValueError(
            f"{key}: expected a readable template file, but {path} does not exist"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{key}: cannot read template file {path}: {exc}") from exc


def check_template(source: str | None, file: str | None, key: str) -> str | None:
    """The template text given inline or in a file; syntax errors are config errors."""
    if source is not None and file is not None:
        raise ValueError(f"give either {key} or {key}_file, not both")
    name = key
    if file is not None:
        source, name = read_template_file(file, f"{key}_file"), file
    if source is None:
        return None
    try:
        compile_template(source, "plain", name)
    except TemplateProblem as exc:
        raise ValueError(f"{key}: {exc}") from exc
    return source


class MessageConfig(ReceiverConfig):
    """`language` picks the default template; `template`/`template_file` replace it."""

    language: Language | None = None
    template: str | None = None
    template_file: str | None = None

    @model_validator(mode="after")
    def _template_compiles(self) -> Self:
        check_template(self.template, self.template_file, "template")
        return self


class MessageRenderer:
    """Renders alerts for one receiver: its template (or the platform's default) and language."""

    def __init__(
        self,
        receiver: str,
        platform: str,
        dialect: DialectName,
        language: Language,
        source: str | None = None,
        source_name: str = "template",
    ) -> None:
        self.receiver = receiver
        self.language = language
        self.dialect = dialect
        self.default = default_template(platform, language, dialect)
        self.template: MessageTemplate = (
            compile_template(source, dialect, source_name) if source else self.default
        )

    @classmethod
    def for_config(
        cls, config: MessageConfig, platform: str, dialect: DialectName, default_language: Language
    ) -> MessageRenderer:
        source = check_template(config.template, config.template_file, "template")
        name = config.template_file or "template"
        return cls(
            config.name, platform, dialect, config.language or default_language, source, name
        )

    def cut(self, header: str, body: str, limit: int, unit: Unit) -> str:
        """`header` and `body` joined and cut to `limit` (in `unit`), the marker in this
        receiver's language and dialect (`templating.truncate_message`)."""
        return truncate_message(header, body, limit, unit, self.language, self.dialect)

    def fit(
        self, message: RenderedMessage, limit_bytes: int, encode: Callable[[str], bytes]
    ) -> bytes:
        """The platform's request body, at most `limit_bytes` (`templating.fit_payload`)."""
        return fit_payload(message, limit_bytes, self.language, self.dialect, encode)

    def render(self, alert: Alert, **extra: Any) -> RenderedMessage:
        context = alert_context(alert, self.language, **extra)
        if self.template is not self.default:
            try:
                return render_message(self.template, context)
            except Exception as exc:  # a broken override must not lose the alert
                log.error(
                    "receiver template failed; sending with the default template",
                    receiver=self.receiver,
                    template=self.template.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
        return render_message(self.default, context)

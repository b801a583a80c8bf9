"""docs/messages.md shows what the notifiers really send (rendered, not described)."""

from __future__ import annotations

from pathlib import Path

from tests.support.message_examples import render

PAGE = Path(__file__).parents[2] / "docs" / "messages.md"


def test_the_messages_page_is_what_the_notifiers_send_now() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/messages.md is out of date: .venv/bin/python -m tests.support.message_examples"
        " > docs/messages.md"
    )


def test_the_page_has_every_platform_family_and_the_likely_cause() -> None:
    page = PAGE.read_text(encoding="utf-8")
    headings = "\n".join(line for line in page.splitlines() if line.startswith("## "))
    for family in (
        "DingTalk",
        "Feishu",
        "WeCom",
        "Slack",
        "Teams",
        "Telegram",
        "Webhook",
        "Alertmanager",
        "PagerDuty",
        "E-mail",
    ):
        assert family in headings, family
    assert page.count("OOMKilled (exit code 137)") >= 5  # English chat and e-mail messages
    assert "被 OOMKilled（退出码 137）" in page

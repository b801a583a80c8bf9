"""Telegram `edit_in_place`: an incident is one message that its updates and its resolve
edit, across restarts, against a double that keeps the chat's messages as Telegram does."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from kube_event_watcher.notifiers.base import Delivered, Notifier
from kube_event_watcher.notifiers.delivery import DeliveryStage
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.notifiers.telegram import TelegramConfig, TelegramNotifier
from kube_event_watcher.pipeline.model import Alert
from tests.integration.notifiers.test_global_chat_contracts import TOKEN, telegram_check
from tests.notifiers_support import FakeTime, serve_app, until


class Chat:
    """A Telegram chat: sendMessage adds a message, editMessageText changes one."""

    def __init__(self) -> None:
        self.messages: dict[int, str] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"/bot{TOKEN}/sendMessage", self.send)
        app.router.add_post(f"/bot{TOKEN}/editMessageText", self.edit)
        return app

    @staticmethod
    def error(description: str) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"},
            status=400,
        )

    async def send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("send", body))
        checked = telegram_check(body)
        if checked.status != 200:
            return checked
        message_id = len(self.messages) + 100
        self.messages[message_id] = body["text"]
        return web.json_response(
            {"ok": True, "result": {"message_id": message_id, "text": body["text"]}}
        )

    async def edit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("edit", body))
        checked = telegram_check(body)
        if checked.status != 200:
            return checked
        if "disable_notification" in body or "message_thread_id" in body:
            return self.error("unexpected parameter")
        message_id = body.get("message_id")
        if message_id not in self.messages:
            return self.error("message to edit not found")
        if self.messages[message_id] == body["text"]:
            return self.error(
                "message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message"
            )
        self.messages[message_id] = body["text"]
        return web.json_response({"ok": True, "result": {"message_id": message_id}})


def notifier(server: TestServer, **config: Any) -> TelegramNotifier:
    settings = {
        "name": "tg",
        "type": "telegram",
        "token": TOKEN,
        "chat_id": -100123,
        "api_url": str(server.make_url("")).rstrip("/"),
        "edit_in_place": True,
        **config,
    }
    return TelegramNotifier(TelegramConfig(**settings))


def incident(now: float) -> list[Alert]:
    """A group's first message, its update (it grew), and its resolve: one alert key."""
    first = sample_alert(now, sequence=1, member_count=3, objects={"Pod": 3})
    grown = dataclasses.replace(
        first, notification_id="n2", sequence=2, member_count=9, objects={"Pod": 9}, count=30
    )
    resolved = dataclasses.replace(grown, notification_id="n3", sequence=3, status="resolved")
    return [first, grown, resolved]


async def deliver(stage: DeliveryStage, alerts: list[Alert], receiver: str = "tg") -> None:
    lane = stage.lanes[receiver]
    before = lane.sent
    for alert in alerts:
        await stage.submit(receiver, alert)
    await until(lambda: lane.sent == before + len(alerts), f"{len(alerts)} delivered")


async def deliver_an_incident_with_a_restart(
    make: Callable[[], Notifier], tmp_path: Path, now: float
) -> None:
    """An incident's first message in one run of the delivery stage, its update and resolve
    in the next (the daemon restarted between them, its spool and message refs kept)."""
    clock = FakeTime()
    first, grown, resolved = incident(now)
    for alerts in ([first], [grown, resolved]):
        notifier = make()
        stage = DeliveryStage(
            [notifier], tmp_path, clock=clock.clock, sleep=clock.sleep, fsync=False
        )
        await stage.start()
        await deliver(stage, alerts, notifier.name)
        await stage.stop(1.0)


async def test_an_incident_is_one_message_edited_through_a_restart(tmp_path: Path) -> None:
    chat = Chat()
    server = await serve_app(chat.app())
    try:
        # the daemon restarts: the update edits the message the first run sent
        await deliver_an_incident_with_a_restart(lambda: notifier(server), tmp_path, time.time())
    finally:
        await server.close()

    assert [kind for kind, _ in chat.calls] == ["send", "edit", "edit"]
    [message] = chat.messages.values()  # one message in the chat, saying it is over
    assert "RESOLVED" in message.upper()
    assert {body.get("message_id") for kind, body in chat.calls if kind == "edit"} == set(
        chat.messages
    )


async def test_after_the_resolve_the_next_incident_is_a_new_message(tmp_path: Path) -> None:
    chat = Chat()
    server = await serve_app(chat.app())
    first, _, resolved = incident(time.time())
    again = dataclasses.replace(first, notification_id="n4", sequence=1)
    tg = notifier(server)
    tg.state_dir = tmp_path
    try:
        await tg.start()
        for alert in (first, resolved, again):
            assert isinstance(await tg.send(alert), Delivered)
    finally:
        await tg.close()
        await server.close()
    assert [kind for kind, _ in chat.calls] == ["send", "edit", "send"]
    assert len(chat.messages) == 2


async def test_a_deleted_message_is_told_again_and_a_resend_changes_nothing(
    tmp_path: Path,
) -> None:
    chat = Chat()
    server = await serve_app(chat.app())
    first, grown, _ = incident(time.time())
    tg = notifier(server)
    tg.state_dir = tmp_path
    try:
        await tg.start()
        assert isinstance(await tg.send(first), Delivered)
        # after a crash the same notification goes out again: an edit to the same text
        assert await tg.send(first) == Delivered("unchanged: the message already says this")
        chat.messages.clear()  # someone deleted it in the chat
        assert isinstance(await tg.send(grown), Delivered)
    finally:
        await tg.close()
        await server.close()
    assert [kind for kind, _ in chat.calls] == ["send", "edit", "edit", "send"]
    assert len(chat.messages) == 1


async def test_without_the_option_every_notification_is_a_message(tmp_path: Path) -> None:
    chat = Chat()
    server = await serve_app(chat.app())
    tg = notifier(server, edit_in_place=False)
    tg.state_dir = tmp_path
    try:
        await tg.start()
        for alert in incident(time.time()):
            assert isinstance(await tg.send(alert), Delivered)
    finally:
        await tg.close()
        await server.close()
    assert [kind for kind, _ in chat.calls] == ["send", "send", "send"]
    assert not list(tmp_path.iterdir())  # nothing kept

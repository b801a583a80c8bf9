"""`doctor`'s receiver step: reachability without sending, and `--send-test`."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from kube_event_watcher import doctor
from kube_event_watcher.kube.diagnosis import render_text
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    PermanentFailure,
    ReceiverConfig,
)
from kube_event_watcher.pipeline.model import Alert
from tests.integration.doctor.doctor_fixtures import Pki

TOKEN = "0123456789abcdef0123456789abcdef"


class HookConfig(ReceiverConfig):
    url: SecretStr
    channel: str = "#ops"


class HookNotifier(Notifier):
    config_model = HookConfig
    sent: list[Alert] = []  # noqa: RUF012 (a test recorder)

    async def send(self, alert: Alert) -> DeliveryResult:
        HookNotifier.sent.append(alert)
        if "reject" in self.config.url.get_secret_value():
            return PermanentFailure(f"invalid token {TOKEN}")
        return Delivered("accepted")


def hook(url: str) -> HookConfig:
    return HookConfig(name="hook", type="hook", url=SecretStr(url))


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    runner = web.AppRunner(web.Application(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture
async def https_port(pki: Pki, tmp_path: Path) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*pki.server.write(tmp_path, "hook"))
    runner = web.AppRunner(web.Application(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def test_reachable_receiver_passes_and_its_url_is_masked(http_port: int) -> None:
    check = await doctor.probe_receiver("hook", hook(f"http://127.0.0.1:{http_port}/hook/{TOKEN}"))
    assert check.status == "ok"
    assert check.seen == (
        f"http://127.0.0.1:{http_port}/****: 127.0.0.1 resolves, port {http_port} accepts "
        "connections",
    )
    assert TOKEN not in render_text([check])


async def test_receiver_with_an_untrusted_certificate_fails_tls(https_port: int) -> None:
    check = await doctor.probe_receiver("hook", hook(f"https://127.0.0.1:{https_port}/{TOKEN}"))
    assert check.status == "fail"
    assert check.summary == f"TLS to https://127.0.0.1:{https_port}/**** failed"
    assert "presented: issuer  CN=test-cluster-ca" in check.seen
    assert "SSL_CERT_FILE" in check.fix[0]
    assert TOKEN not in render_text([check])


async def test_unresolvable_receiver_fails_dns() -> None:
    check = await doctor.probe_receiver("hook", hook(f"https://hooks.example.invalid/{TOKEN}"))
    assert check.status == "fail"
    assert check.summary.startswith("https://hooks.example.invalid/****: ")
    assert "does not resolve" in check.summary


async def test_send_test_uses_the_notifier_and_redacts_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(doctor, "notifier_types", lambda: {"hook": HookNotifier})
    HookNotifier.sent.clear()
    ok = await doctor.send_sample("hook", hook(f"http://127.0.0.1:1/{TOKEN}"))
    assert (ok.status, ok.summary) == ("ok", "test alert delivered")
    assert HookNotifier.sent[0].reason == "DoctorSendTest"
    rejected = await doctor.send_sample("hook", hook(f"http://127.0.0.1:1/reject/{TOKEN}"))
    assert rejected.status == "fail"
    assert TOKEN not in rejected.summary

"""E-mail against a real SMTP server (aiosmtpd) on loopback: plain, STARTTLS with login, and
implicit TLS, with a certificate made for the test; transient and permanent SMTP replies."""

from __future__ import annotations

import datetime
import email
import gc
import ipaddress
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kube_event_watcher.notifiers.base import Delivered, PermanentFailure, RetryAfter
from kube_event_watcher.notifiers.email import EmailConfig, EmailNotifier
from kube_event_watcher.notifiers.sample import sample_alert

PASSWORD = "smtp-password-123"


class Inbox:
    """An aiosmtpd handler that keeps what it received; RCPT replies can be scripted."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.rcpt_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == b"alerts"
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context


@pytest.fixture
def smtp_server(
    request: pytest.FixtureRequest, certificate: tuple[Path, Path]
) -> Iterator[tuple[Inbox, int]]:
    mode = request.param
    inbox = Inbox()
    port = free_port()
    options: dict[str, Any] = {}
    if mode == "starttls":
        options = {
            "tls_context": server_tls(certificate),
            "require_starttls": True,
            "authenticator": authenticator,
            "auth_require_tls": True,
        }
    elif mode == "tls":
        options = {"ssl_context": server_tls(certificate)}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield inbox, port
    finally:
        # aiosmtpd's server thread may drop a finished TLS connection's socket without
        # closing it when stopped; collect it here so its ResourceWarning is not blamed on a
        # later test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            controller.stop()
            gc.collect()


def notifier(
    port: int, security: str, certificate: tuple[Path, Path], **extra: Any
) -> EmailNotifier:
    settings: dict[str, Any] = {
        "name": "mail",
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "sender": "watcher@example.org",
        "to": ["oncall@example.org"],
        "cc": ["team@example.org"],
        "timeout": 10,
        **extra,
    }
    if security != "none":
        settings["ca_file"] = str(certificate[0])
    return EmailNotifier(EmailConfig(**settings))


def parts(message: Message) -> dict[str, str]:
    found = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[part.get_content_subtype()] = payload.decode(
                part.get_content_charset() or "utf-8"
            )
    return found


@pytest.mark.parametrize("smtp_server", ["plain"], indirect=True)
async def test_plain_loopback_delivers_both_parts_with_a_stable_message_id(
    smtp_server: tuple[Inbox, int], certificate: tuple[Path, Path]
) -> None:
    inbox, port = smtp_server
    mail = notifier(port, "none", certificate)
    alert = sample_alert(time.time(), note="<script>x</script> & friends")
    assert await mail.send(alert) == Delivered()
    assert await mail.send(alert) == Delivered()  # a re-send after a crash
    first, second = inbox.messages
    assert first["Message-ID"] == f"<{alert.notification_id}@kube-event-watcher>"
    assert second["Message-ID"] == first["Message-ID"]
    assert first["References"] == f"<{alert.key}@kube-event-watcher>"
    assert "BackOff" in str(first["Subject"])
    assert first["To"] == "oncall@example.org"
    assert first["Cc"] == "team@example.org"
    body = parts(first)
    assert "Cluster:    sample-cluster" in body["plain"]
    assert "<script>x</script> & friends" in body["plain"]
    assert "&lt;script&gt;" in body["html"]
    assert "<script>" not in body["html"]
    assert "FATAL cannot start" in body["html"]


@pytest.mark.parametrize("smtp_server", ["starttls"], indirect=True)
async def test_starttls_with_login(
    smtp_server: tuple[Inbox, int], certificate: tuple[Path, Path]
) -> None:
    inbox, port = smtp_server
    mail = notifier(
        port, "starttls", certificate, username="alerts", password=PASSWORD, language="zh-CN"
    )
    assert await mail.send(sample_alert(time.time())) == Delivered()
    assert "集群" in parts(inbox.messages[0])["plain"]
    wrong = notifier(port, "starttls", certificate, username="alerts", password="not-it-at-all")
    result = await wrong.send(sample_alert(time.time()))
    assert isinstance(result, PermanentFailure)
    assert "login" in result.reason
    assert "not-it-at-all" not in result.reason


@pytest.mark.parametrize("smtp_server", ["tls"], indirect=True)
async def test_implicit_tls(smtp_server: tuple[Inbox, int], certificate: tuple[Path, Path]) -> None:
    inbox, port = smtp_server
    assert await notifier(port, "tls", certificate).send(sample_alert(time.time())) == Delivered()
    assert len(inbox.messages) == 1


@pytest.mark.parametrize("smtp_server", ["plain"], indirect=True)
@pytest.mark.parametrize(
    ("reply", "expected"),
    [("450 4.2.1 Mailbox busy", RetryAfter), ("550 5.1.1 No such user", PermanentFailure)],
)
async def test_smtp_reply_codes(
    smtp_server: tuple[Inbox, int], certificate: tuple[Path, Path], reply: str, expected: type
) -> None:
    inbox, port = smtp_server
    inbox.rcpt_reply = reply
    result = await notifier(port, "none", certificate).send(sample_alert(time.time()))
    assert isinstance(result, expected)
    assert not inbox.messages


async def test_unreachable_server_is_retried(certificate: tuple[Path, Path]) -> None:
    result = await notifier(free_port(), "none", certificate).send(sample_alert(time.time()))
    assert isinstance(result, RetryAfter)


def test_clear_text_password_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ValueError, match="clear text"):
        EmailConfig(
            name="m",
            type="email",
            host="smtp.example.org",
            security="none",
            username="u",
            password="p-123456",
            sender="a@b.c",
            to=["x@y.z"],
        )

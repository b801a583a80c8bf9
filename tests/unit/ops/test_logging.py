"""Log lines: JSON off a terminal, level from config or KEW_LOG_LEVEL, alert context bound,
and a registered secret never rendered, not even inside an exception's traceback."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog

from kube_event_watcher.config.secrets import registry
from kube_event_watcher.ops.logging import alert_fields, configure_logging, level_from
from tests.factories import make_alert

SECRET = "s3cr3t-T0KEN-9f8e7d6c5b4a"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("KEW_LOG_LEVEL", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    registry.register(SECRET)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _fail_with_secret() -> None:
    try:
        raise ConnectionError(f"POST https://oapi.example/robot/send?access_token={SECRET} failed")
    except ConnectionError as inner:
        raise RuntimeError(f"delivery failed ({SECRET[:20]}...)") from inner


def test_json_lines_off_a_terminal_with_secrets_masked_everywhere() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", out)
    log = structlog.get_logger("test").bind(**{"receiver": "oncall", f"k_{SECRET}": "key"})
    try:
        _fail_with_secret()
    except RuntimeError as exc:
        log.exception("send failed", error=exc, detail={"url": f"https://x/?t={SECRET}"})
    log.info(f"plain message with {SECRET}", values=[SECRET])
    text = out.getvalue()
    assert SECRET not in text
    first, second = (orjson.loads(line) for line in text.splitlines())
    assert first["event"] == "send failed"
    assert first["receiver"] == "oncall"
    assert (
        "ConnectionError: POST https://oapi.example/robot/send?access_token=****"
        in first["exception"]
    )
    assert second["event"] == "plain message with ****"


def test_console_on_a_terminal_masks_tracebacks_too() -> None:
    out = Terminal()
    configure_logging("info", "auto", out)
    try:
        _fail_with_secret()
    except RuntimeError:
        structlog.get_logger("test").exception("send failed")
    text = out.getvalue()
    assert "Traceback" in text
    assert SECRET not in text
    assert "access_token=****" in text


def test_stdlib_records_and_their_tracebacks_are_masked() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out)
    try:
        _fail_with_secret()
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("Error handling request %s", SECRET)
    text = out.getvalue()
    assert "Error handling request ****" in text
    assert "Traceback" in text
    assert SECRET not in text


def test_level_comes_from_config_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert level_from("warning", {}) == logging.WARNING
    assert level_from("info", {"KEW_LOG_LEVEL": "debug"}) == logging.DEBUG
    assert level_from("info", {"KEW_LOG_LEVEL": "nonsense"}) == logging.INFO
    monkeypatch.setenv("KEW_LOG_LEVEL", "error")
    out = io.StringIO()
    configure_logging("debug", "json", out)
    log = structlog.get_logger("test")
    log.warning("hidden")
    log.error("shown")
    assert [orjson.loads(line)["event"] for line in out.getvalue().splitlines()] == ["shown"]


def test_alert_context_names_cluster_namespace_object_and_receiver() -> None:
    alert = make_alert("Pod", "api-1", "payments", cluster="prod")
    out = io.StringIO()
    configure_logging("info", "json", out)
    structlog.get_logger("t").bind(**alert_fields(alert, "payments-slack")).info("delivered")
    line = orjson.loads(out.getvalue())
    assert {k: line[k] for k in ("cluster", "namespace", "object", "receiver")} == {
        "cluster": "prod",
        "namespace": "payments",
        "object": "Pod/payments/api-1",
        "receiver": "payments-slack",
    }

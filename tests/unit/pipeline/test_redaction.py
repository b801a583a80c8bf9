"""Secret-looking strings out of log tails; the byte cap keeps the end."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_event_watcher.config.secrets import registry
from kube_event_watcher.pipeline.redaction import CUT_MARK, keep_tail, redact_secrets


@pytest.mark.parametrize(
    ("line", "secret", "kept"),
    [
        (
            "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJ4In0.c2ln",
            "eyJhbGci",
            "Authorization:",
        ),
        ("curl -H 'authorization: Basic dXNlcjpwYXNzd29yZA=='", "dXNlcjpwYXNzd29yZA", "curl -H"),
        (
            "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
            "dozjg",
            "token",
        ),
        ("password=hunter22 user=bob", "hunter22", "user=bob"),
        ("DB_PASSWORD: 'correct horse'", "correct horse", "DB_PASSWORD"),
        ('{"user": "bob", "password": "p@ss w0rd", "ok": true}', "p@ss w0rd", '"ok": true'),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI",
            "aws_secret_access_key",
        ),
        ("using key AKIAIOSFODNN7EXAMPLE for s3", "AKIAIOSFODNN7EXAMPLE", "for s3"),
        (
            "clone https://deploy:ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/x",
            "ghp_16C7e42F",
            "github.com/x",
        ),
        ("dsn postgres://app:s3cr3t@db:5432/shop", "s3cr3t", "postgres://app:"),
        ("slack xoxb-1234567890-abcdefghij posted", "xoxb-1234567890", "posted"),
        ("api_key=AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIzaSyA", "api_key="),
        ("client_secret: Zm9vYmFyYmF6", "Zm9vYmFyYmF6", "client_secret"),
    ],
)
def test_secret_shapes_are_masked_and_the_rest_kept(line: str, secret: str, kept: str) -> None:
    out = redact_secrets(line)
    assert secret not in out
    assert kept in out
    assert "****" in out


def test_private_key_blocks_are_removed_whole_even_when_cut_off() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----"
    out = redact_secrets(f"loaded key:\n{key}\nnext line")
    assert "MIIEow" not in out
    assert out.endswith("next line")
    cut = redact_secrets("dumping:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
    assert "MIIEvQ" not in cut


def test_ordinary_log_lines_are_untouched() -> None:
    line = "2027-01-15T02:09:41Z ERROR failed to connect to db:5432: connection refused (attempt 7)"
    assert redact_secrets(line) == line


def test_the_configs_own_secrets_are_masked_too() -> None:
    registry.register("a-webhook-secret-value")
    try:
        assert "a-webhook-secret-value" not in redact_secrets("sent a-webhook-secret-value ok")
    finally:
        registry.clear()


def test_keep_tail_keeps_the_end_from_a_line_start() -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    out = keep_tail(text, 60)
    assert out.startswith(CUT_MARK)
    assert out.endswith("line 99\n")
    assert out[len(CUT_MARK) :].startswith("line ")
    assert keep_tail("short", 60) == "short"


@given(st.text(max_size=400), st.integers(0, 300))
def test_keep_tail_never_exceeds_the_byte_cap(text: str, cap: int) -> None:
    out = keep_tail(text, cap)
    assert len(out.encode("utf-8")) <= cap or out == text
    if len(text.encode("utf-8")) <= cap:
        assert out == text

"""Secrets: read from `*_file` keys or `${ENV}`, remembered, and masked wherever text leaves us.

Every secret value the config resolves is registered here; the log processor, error messages
and `check-config` pass their text through `redact`, so a token never reaches a log line even
when a library puts it into an exception message.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "****"
# Short values would mask ordinary words in unrelated log lines; real tokens are longer.
_MIN_SECRET_LEN = 6


class SecretRegistry:
    """The set of secret values known to this process."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, value: str | None) -> None:
        if not value or len(value) < _MIN_SECRET_LEN:
            return
        with self._lock:
            candidates = {value, value.strip()}
            # A secret URL's token part leaks on its own too (e.g. in a library's error text).
            parts = urlsplit(value) if "://" in value else None
            if parts is not None:
                for piece in re.split(r"[/?&=]", parts.path + "?" + parts.query):
                    if len(piece) >= 16:
                        candidates.add(piece)
            new = candidates - self._values
            if new:
                self._values |= new
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


registry = SecretRegistry()
"""The process-wide registry: config loading fills it; logging and errors read it."""


def redact(text: str) -> str:
    return registry.redact(text)


def mask_url(url: str) -> str:
    """Keep what identifies the endpoint (scheme, host, port) and hide the rest."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return MASK
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, "/" + MASK if parts.path.strip("/") else "", "", ""))

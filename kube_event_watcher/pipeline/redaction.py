"""Secret-looking strings out of container log lines, and a byte cap that keeps the end.

Log tails go to chat rooms and pagers; a crashing app often prints its config or the failed
request on the way down. This removes the common shapes of credentials (auth headers, JWTs,
cloud and forge tokens, private keys, `password=...`) and every secret the config itself
holds. It is a safety net, not a guarantee: say so to users, and keep the log tail opt-in.
"""

from __future__ import annotations

import re

from kube_event_watcher.config.secrets import MASK
from kube_event_watcher.config.secrets import redact as redact_known_secrets

# Key names whose values are secrets, in `key=value`, `key: value` and `"key": "value"` form.
_SECRET_KEY = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|client[_-]?secret|credentials?|authorization|auth[_-]?token"
    r"|session[_-]?id|cookie)"
)

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # A PEM private key, also one cut off by the tail (BEGIN without END).
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
        f"-----BEGIN PRIVATE KEY----- {MASK} -----END PRIVATE KEY-----",
    ),
    # Authorization header values.
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1 {MASK}"),
    # JWTs (ServiceAccount tokens among them).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK),
    # AWS access key ids.
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"), MASK),
    # GitHub, Slack, GitLab tokens and Google API keys: fixed, well-known prefixes.
    (
        re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35})"
        ),
        MASK,
    ),
    # user:password@ in URLs (database DSNs, proxies).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), rf"\1{MASK}@"),
    # key=value, key: value, "key": "value" (aws_secret_access_key, DB_PASSWORD, ...).
    (
        re.compile(
            rf"""(?ix)
            ( ["']? [\w.-]*? {_SECRET_KEY} [\w.-]* ["']? \s* [:=] \s* )
            ( "[^"]*" | '[^']*' | [^\s,;&}}\]]+ )
            """
        ),
        rf"\1{MASK}",
    ),
)


def redact_secrets(text: str) -> str:
    """`text` with secret-looking strings and the config's own secrets replaced by ****."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return redact_known_secrets(text)


CUT_MARK = "[…]\n"


def keep_tail(text: str, max_bytes: int) -> str:
    """The end of `text` in at most `max_bytes` UTF-8 bytes, starting at a line boundary
    when one is near, marked with `[…]` when something was cut. The end is kept because
    the last lines before a crash say why it crashed."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    mark = CUT_MARK.encode("utf-8")
    if max_bytes <= 2 * len(mark):
        return data[len(data) - max(0, max_bytes) :].decode("utf-8", "ignore")
    tail = data[len(data) - (max_bytes - len(mark)) :].decode("utf-8", "ignore")
    newline = tail.find("\n")
    if 0 <= newline < len(tail) // 4:
        tail = tail[newline + 1 :]
    return CUT_MARK + tail

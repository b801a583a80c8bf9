"""Config errors written for the operator: the key path, what was found, what is expected."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from kube_event_watcher.config.model import SECRET_FILE_ERROR
from kube_event_watcher.config.secrets import MASK, redact

# Names of keys whose values are never echoed back, even when they are invalid.
SECRET_KEY_WORDS = ("secret", "token", "password", "url", "key", "sig")


class ConfigError(Exception):
    """One or more problems in a config; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = [redact(p) for p in problems]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config {source}:\n{lines}")


def key_path(loc: Iterable[int | str], prefix: str = "") -> str:
    """('sources', 0, 'namespaces') -> 'sources[0].namespaces'."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _is_secret_key(loc: Sequence[int | str]) -> bool:
    names = [p for p in loc if isinstance(p, str)]
    return bool(names) and any(w in names[-1].lower() for w in SECRET_KEY_WORDS)


def _shown(value: Any, secret: bool) -> str:
    if secret:
        return MASK
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_EXPECTED = {
    "list_type": "expected a list",
    "dict_type": "expected a mapping of keys to values",
    "model_type": "expected a mapping of keys to values",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "missing": "is required",
    "extra_forbidden": "is not a known key",
}


_LEADING_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?=[.\[:]| \()")


def _model_problems(path: str, message: str, given: Any) -> list[str]:
    """A check of a whole mapping (a model validator): each line of its message, with the
    key path of the mapping in front. A line that starts with one of the mapping's own keys
    (`secret_file: ...`, `url: ...` for a `url_file`) names that key under the mapping's path;
    one that starts with a full path (`aggregation.group.repeat ...`, or any line of a check
    of the whole config) stays as it is. The mapping itself is never echoed back (it may
    hold secrets)."""
    top = path == "(top level)"
    keys = given if isinstance(given, dict) else {}
    out = []
    for line in message.splitlines():
        lead = _LEADING_KEY.match(line)
        if lead and (top or line.startswith(f"{path}.")):
            out.append(line)
        elif lead and (lead.group(1) in keys or f"{lead.group(1)}_file" in keys):
            out.append(f"{path}.{line}")
        else:
            out.append(f"{path}: {line}")
    return out


def problems_from(error: ValidationError, prefix: str = "") -> list[str]:
    """One readable line per pydantic error, each naming its full key path."""
    out = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and "[" in p))
        path = key_path(loc, prefix)
        kind = item["type"]
        if kind == "missing":
            out.append(f"{path}: is required")
            continue
        if kind == "extra_forbidden":
            out.append(f"{path}: is not a known key (check the spelling)")
            continue
        message = _EXPECTED.get(kind) or str(item["msg"]).removeprefix("Value error, ")
        if kind == SECRET_FILE_ERROR:
            out.append(f"{path}: {message}")  # names the file, never its content
            continue
        if kind == "value_error" and isinstance(item.get("input"), dict):
            out.extend(_model_problems(path, message, item.get("input")))
            continue
        found = _shown(item.get("input"), _is_secret_key(loc))
        if ", got " in message or "(got " in message:
            out.append(f"{path}: {message}")
        elif message.startswith("expected"):
            out.append(f"{path}: {message}, got {found}")
        else:
            out.append(f"{path}: {message} (got {found})")
    return out

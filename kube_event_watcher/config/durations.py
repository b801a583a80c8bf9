"""Durations written the way operators write them: `90s`, `5m`, `4h`, `1h30m`, `250ms`."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds in `value`; a bare number is seconds. Raises ValueError with what is expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '90s', '5m' or '4h', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a duration that is not negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '90s', '5m' or '4h', got {value!r}")
    text = value.strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"expected a duration like '90s', '5m' or '4h', got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of `seconds`, e.g. 5400 -> '1h30m'."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    out = []
    rest = int(seconds)
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    frac = seconds - int(seconds)
    if frac:
        out.append(f"{round(frac * 1000)}ms")
    return "".join(out)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A config field holding a duration, stored as float seconds."""

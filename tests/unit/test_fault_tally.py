"""The fault suite's verdict (tests/support/faults.py `tally`): how alert lines that each
cover an event's totals (total - count, total] are counted against the API's final list."""

from __future__ import annotations

from typing import Any

from tests.support.faults import tally


def line(uid: str, total: int, count: int, status: str = "firing") -> dict[str, Any]:
    return {
        "id": f"c/{uid}/{total}",
        "status": status,
        "count": count,
        "event": {"uid": uid, "total": total},
    }


def test_exact_cover_is_clean() -> None:
    t = tally([line("a", 1, 1), line("a", 4, 3), line("b", 1, 1)], {"a": 4, "b": 1})
    assert (t.lost, t.duplicated, t.spurious, t.alerts, t.occurrences) == (0, 0, 0, 3, 5)
    assert t.clean


def test_a_coalesced_resend_over_a_stale_ledger_is_duplicated() -> None:
    # 2 and 3 were delivered one by one; a relist against a ledger at 1 sends (1, 4] again.
    t = tally([line("a", 1, 1), line("a", 2, 1), line("a", 3, 1), line("a", 4, 3)], {"a": 4})
    assert (t.lost, t.duplicated, t.spurious) == (0, 2, 0)
    assert t.examples["duplicated"] == ["a#2x2", "a#3x2"]
    assert t.repeating_lines == [3]  # the line to blame: the coalesced re-send


def test_gaps_are_lost_and_unknown_totals_spurious() -> None:
    t = tally([line("a", 1, 1), line("a", 6, 1), line("zz", 1, 1)], {"a": 5, "b": 2})
    assert (t.lost, t.duplicated, t.spurious) == (4 + 2, 0, 2)


def test_resolved_lines_are_not_occurrences() -> None:
    t = tally([line("a", 1, 1), line("a", 1, 1, status="resolved")], {"a": 1})
    assert t.clean and t.alerts == 1

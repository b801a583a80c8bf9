from __future__ import annotations

import pytest

from watcher.pipeline.ledger import SeenLedger


def test_observe_returns_only_the_increment() -> None:
    ledger = SeenLedger()
    assert ledger.observe("u", 1) == 1
    assert ledger.observe("u", 1) == 0
    assert ledger.observe("u", 4) == 3
    assert ledger.observe("u", 2) == 0  # an older view never un-counts
    assert ledger.seen_count("u") == 4


def test_retain_only_drops_what_a_relist_no_longer_has() -> None:
    ledger = SeenLedger()
    for uid in "abc":
        ledger.observe(uid, 1)
    assert ledger.retain_only(["a", "c"]) == 1
    assert "b" not in ledger and len(ledger) == 2


def test_round_trips_through_json() -> None:
    ledger = SeenLedger()
    ledger.observe("x", 3)
    assert SeenLedger.from_json(ledger.to_json()).seen_count("x") == 3


def test_a_corrupt_snapshot_is_refused() -> None:
    with pytest.raises(ValueError, match="mapping of uid to count"):
        SeenLedger.from_json(b'{"x": "three"}')

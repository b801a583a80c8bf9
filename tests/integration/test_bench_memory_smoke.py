"""The memory/start-up harness (bench/bench_memory.py) runs the real daemon against its fake
list server with a tiny relist, so it does not rot."""

from __future__ import annotations

import pytest

from bench import bench_memory


def test_memory_harness_relists_every_event_and_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = bench_memory.main(["--sizes", "1200", "--repeat", "1", "--settle", "0.1"])
    (run,) = runs
    assert run.served == 1200  # three pages of 500: the daemon followed the continue tokens
    assert 0 < run.first_request <= run.first_watch
    assert run.rss_mib > 0 and run.hwm_mib >= run.rss_mib
    assert "| 1,200 |" in capsys.readouterr().out

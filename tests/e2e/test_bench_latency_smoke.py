"""The end-to-end harness (bench/bench_latency.py) runs a 2-second load, and a catch-up of 300
events after a restart, through the real daemon on the real kube-apiserver, so it does not
rot. The peer is left out (its build takes minutes); bench/peer/build.sh is run by hand for
the side-by-side figures."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench import bench_latency
from tests.e2e.controlplane.cluster import ControlPlane


def test_latency_harness_delivers_every_event_once(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    rows = bench_latency.main(
        [
            "--rate",
            "20",
            "--seconds",
            "2",
            "--burst",
            "10",
            "--rounds",
            "1",
            "--no-peer",
            "--drain",
            "20",
            "--figures",
            str(tmp_path / "latency.json"),
        ],
        plane=control_plane,
    )
    steady, burst = rows
    assert isinstance(steady, bench_latency.Figures)
    assert isinstance(burst, bench_latency.Figures)
    assert (steady.subject, steady.sent, burst.sent) == ("ours steady", 40, 10)
    assert steady.lost == burst.lost == 0
    assert steady.duplicated == burst.duplicated == 0
    assert steady.cpu > 0 and steady.hwm_mib > 0
    assert burst.drain > 0
    figures = orjson.loads((tmp_path / "latency.json").read_bytes())
    assert [len(r["latencies_ms"]) for r in figures["latency"]] == [40, 10]


def test_catchup_harness_delivers_what_was_created_while_down(
    control_plane: ControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = tmp_path / "latency.json"
    figures.write_bytes(orjson.dumps({"latency": [], "latency_run": {"command": "x", "at": "y"}}))
    rows = bench_latency.main(
        [
            "--catchup",
            "300",
            "--rounds",
            "1",
            "--no-peer",
            "--catchup-quiet",
            "20",
            "--figures",
            str(figures),
        ],
        plane=control_plane,
    )
    (row,) = rows
    assert isinstance(row, bench_latency.CatchUp)
    said = (row, row.milestones, row.curve[-5:])  # what a failure needs to be understood
    assert (row.who, row.events, row.lost, row.duplicated) == ("ours", 300, 0, 0), said
    # Ours keeps its checkpoint across the restart: it resumes, and sends the probe only once.
    assert row.resumed in ("watch from checkpoint", "relist", "relist (410)"), said
    assert row.resent == 0, said
    assert 0 < row.first <= row.done < 60, said
    assert row.cpu > 0 and row.hwm_mib > 0 and row.create_rate > 0, said
    assert row.curve[-1][1] == 300, said
    out = capsys.readouterr().out
    assert "| ours catch-up | 300 |" in out
    saved = orjson.loads(figures.read_bytes())
    assert "latency" in saved  # the other mode's section is kept
    assert saved["catchup"][0]["curve"][-1][1] == 300

"""The end-to-end latency harness (bench/bench_latency.py) runs a 2-second load through the
real daemon on the real kube-apiserver, so it does not rot. The peer is left out (its build
takes minutes); bench/peer/build.sh is run by hand for the side-by-side figures."""

from __future__ import annotations

from bench import bench_latency
from tests.e2e.controlplane.cluster import ControlPlane


def test_latency_harness_delivers_every_event_once(control_plane: ControlPlane) -> None:
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
        ],
        plane=control_plane,
    )
    steady, burst = rows
    assert (steady.subject, steady.sent, burst.sent) == ("ours steady", 40, 10)
    assert steady.lost == burst.lost == 0
    assert steady.duplicated == burst.duplicated == 0
    assert steady.cpu > 0 and steady.hwm_mib > 0

"""The fleet latency harness (bench/bench_fleet.py) runs a 2-second load through one
instance, and through edge → Kafka / NATS → central, on the real kube-apiserver and
engines, so that it does not rot."""

from __future__ import annotations

from bench import bench_fleet
from tests.e2e.controlplane.cluster import ControlPlane
from tests.e2e.engines.kafka.broker import KafkaBroker
from tests.e2e.engines.nats.server import NatsServer


def test_fleet_harness_delivers_every_event_once_through_each_subject(
    control_plane: ControlPlane, up: KafkaBroker, running: NatsServer
) -> None:
    engines = bench_fleet.Engines(up.bootstrap, running.url)
    argv = ["--rate", "20", "--seconds", "2", "--rounds", "1"]
    results = bench_fleet.main(argv, plane=control_plane, engines=engines)
    assert [r.subject for r in results] == list(bench_fleet.SUBJECTS)
    for result in results:
        assert (result.sent, result.lost, result.dup) == (40, 0, 0), result.row()
        assert len(result.latencies_ms) == 40 and result.cpu_ms_per_alert > 0

"""Circuit breaker: opens after N failures, lets one probe through, closes on success."""

from __future__ import annotations

from kube_event_watcher.notifiers.breaker import CircuitBreaker


def test_opens_after_threshold_and_probes_after_cooldown() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30)
    for t in range(2):
        breaker.record_failure(float(t))
        assert breaker.state(float(t)) == "closed"
    breaker.record_failure(2.0)
    assert breaker.state(2.0) == "open"
    assert breaker.wait(12.0) == 20.0
    assert breaker.state(32.0) == "half-open"
    assert breaker.wait(32.0) == 0.0


def test_failed_probe_doubles_the_cooldown_and_success_closes() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=10, max_cooldown=25)
    breaker.record_failure(0.0)
    breaker.record_failure(10.0)  # the probe failed
    assert breaker.wait(10.0) == 20.0
    breaker.record_failure(30.0)
    assert breaker.wait(30.0) == 25.0  # capped
    breaker.record_success()
    assert breaker.state(30.0) == "closed"
    assert breaker.cooldown == 10
    assert breaker.opened_count == 3

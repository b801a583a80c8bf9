"""The `doctor` command's assembly: every configured cluster, then every receiver.

Like `daemon.py` this is where the kube side and the notifiers meet; the cluster steps live in
`kube_event_watcher/kube/doctor.py` and the explanations in `kube_event_watcher/kube/diagnosis.py`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from kube_event_watcher.clock import Clock, SystemClock
from kube_event_watcher.config.loading import LoadedConfig
from kube_event_watcher.config.schema import ClusterConfig
from kube_event_watcher.config.secrets import mask_url, redact
from kube_event_watcher.daemon import IMPLICIT_CLUSTER, watch_scopes
from kube_event_watcher.fleet.readers import stream_reader
from kube_event_watcher.fleet.runner import StreamReader
from kube_event_watcher.kube import diagnosis as dx
from kube_event_watcher.kube.certificates import facts_from_der
from kube_event_watcher.kube.client import own_namespace
from kube_event_watcher.kube.doctor import ClusterDoctor
from kube_event_watcher.kube.probes import connect, resolve, tls_exchange, unverified_context
from kube_event_watcher.notifiers.base import Delivered, Notifier, PermanentFailure, ReceiverConfig
from kube_event_watcher.notifiers.registry import build_notifier, notifier_types
from kube_event_watcher.notifiers.sample import sample_alert
from kube_event_watcher.pipeline.model import Alert, stable_id

RECEIVER_TIMEOUT = 10.0


async def run_doctor(
    loaded: LoadedConfig,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    send_test: bool = False,
    clock: Clock | None = None,
    env: Mapping[str, str] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> list[dx.Check]:
    clock = clock or SystemClock()
    env = dict(os.environ) if env is None else env
    config = loaded.config
    sections = config.model_dump(mode="json")
    checks: list[dx.Check] = []
    central_only = config.fleet is not None and not config.clusters  # it needs no API
    clusters = [] if central_only else config.clusters or [ClusterConfig(name=IMPLICIT_CLUSTER)]
    for cluster in clusters:
        namespaces = [scope.namespace for scope, _ in watch_scopes(cluster.name, config.sources)]
        doctor = ClusterDoctor(
            config=cluster,
            clock=clock,
            kubeconfig=kubeconfig,
            context=context,
            env=env,
            sections=sections,
            namespaces=namespaces or [None],
            default_namespace=own_namespace(cluster, env),
            timer=timer,
        )
        checks += await doctor.run()
    if loaded.fleet_stream is not None:
        checks.append(await probe_fleet_stream(stream_reader(loaded.fleet_stream)))
    for name, receiver in loaded.receivers.items():
        checks.append(
            await (send_sample(name, receiver) if send_test else probe_receiver(name, receiver))
        )
    return checks


async def probe_fleet_stream(reader: StreamReader) -> dx.Check:
    """A central instance's stream (`fleet.consume`): reachable, there, readable."""
    scope = f"fleet {reader.name}"
    try:
        async with asyncio.timeout(RECEIVER_TIMEOUT * 3):
            found = await reader.probe()
    except Exception as exc:  # the check reports whatever the client raised, never crashes
        reason = redact(f"{type(exc).__name__}: {exc}") if str(exc) else type(exc).__name__
        return dx.Check(
            scope,
            "fleet",
            "fail",
            f"cannot read the occurrence stream: {reason}",
            fix=(
                "check fleet.consume (servers, topic or stream and subject, credentials); the "
                "edges' receiver with records: occurrences must publish to the same place",
            ),
        )
    finally:
        await reader.close()
    return dx.Check(scope, "fleet", "ok", "readable (nothing read)", (found,))


def receiver_urls(receiver: BaseModel) -> list[str]:
    """Every http(s) URL a receiver's settings hold, secret or not, found generically."""
    urls = []
    for field_name in type(receiver).model_fields:
        value: Any = getattr(receiver, field_name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            urls.append(value)
    return urls


async def probe_receiver(name: str, receiver: BaseModel) -> dx.Check:
    """DNS, TCP and TLS to each URL of the receiver, sending nothing."""
    scope = f"receiver {name}"
    urls = receiver_urls(receiver)
    if not urls:
        return dx.Check(scope, "receiver", "ok", "no network endpoint to check")
    seen: list[str] = []
    for url in urls:
        masked = mask_url(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await resolve(host, port, RECEIVER_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            check = dx.explain_dns_failure(scope, host, getattr(exc, "errno", None), str(exc))
            return dx.Check(
                scope,
                "receiver",
                "fail",
                f"{masked}: {check.summary}",
                check.seen,
                check.fix,
                {"url": masked},
            )
        outcome = await connect(addresses[0], port, RECEIVER_TIMEOUT)
        if outcome.kind != "ok":
            check = dx.explain_connect(scope, host, port, [outcome], RECEIVER_TIMEOUT)
            return dx.Check(
                scope,
                "receiver",
                "fail",
                f"{masked}: {check.summary}",
                check.seen,
                check.fix[:1],
                {"url": masked},
            )
        line = f"{masked}: {host} resolves, port {port} accepts connections"
        if parts.scheme == "https":
            exchange = await tls_exchange(
                addresses[0],
                port,
                ssl.create_default_context(),
                host,
                RECEIVER_TIMEOUT,
                parts.netloc,
                path="/",
            )
            if not exchange.handshake_ok:
                presented = None
                if exchange.verify_message:
                    raw = await tls_exchange(
                        addresses[0],
                        port,
                        unverified_context(),
                        host,
                        RECEIVER_TIMEOUT,
                        parts.netloc,
                        path="/",
                    )
                    presented = facts_from_der(raw.peer_der) if raw.peer_der else None
                return dx.explain_receiver_tls(
                    scope, masked, exchange.verify_message, exchange.handshake_error, presented
                )
            line += ", TLS verified"
        seen.append(line)
    return dx.Check(
        scope,
        "receiver",
        "ok",
        "reachable (nothing sent)",
        tuple(seen),
        data={"urls": [mask_url(u) for u in urls]},
    )


def doctor_alert(now: float) -> Alert:
    """The shared sample alert, marked as doctor's test; its ids stay the same within a
    minute, so a repeated `--send-test` is deduplicated by the platform."""
    return sample_alert(
        now,
        key=stable_id("doctor", "send-test"),
        notification_id=stable_id("doctor", "send-test", str(int(now // 60))),
        reason="DoctorSendTest",
        type="Normal",
        note="Test notification from `kube-event-watcher doctor --send-test`; no action needed.",
        labels={"test": "true"},
    )


async def send_sample(name: str, receiver: BaseModel) -> dx.Check:
    """Send one sample alert through the receiver's own notifier (`--send-test`)."""
    scope = f"receiver {name}"
    if not isinstance(receiver, ReceiverConfig):
        return dx.Check(scope, "receiver", "skip", "not a notifier config")
    notifier: Notifier = build_notifier(receiver, notifier_types())
    try:
        await notifier.start()
        result = await notifier.send(doctor_alert(time.time()))
    except Exception as exc:  # a broken notifier is a finding here, not a crash
        return dx.Check(
            scope,
            "receiver",
            "fail",
            f"sending failed: {redact(str(exc))}",
            fix=("fix the receiver's settings shown by `check-config`",),
        )
    finally:
        await notifier.close()
    if isinstance(result, Delivered):
        return dx.Check(
            scope,
            "receiver",
            "ok",
            "test alert delivered",
            (redact(result.detail),) if result.detail else (),
        )
    reason = redact(result.reason)
    if isinstance(result, PermanentFailure):
        return dx.Check(
            scope,
            "receiver",
            "fail",
            f"the platform rejected the test: {reason}",
            fix=(
                "check the token/URL and the platform's security settings "
                "(keyword, IP allow-list, signing secret)",
            ),
        )
    return dx.Check(
        scope,
        "receiver",
        "warn",
        f"the platform asked to retry later: {reason}",
        fix=("rerun in a minute; persistent rate limits need a lower send rate",),
    )

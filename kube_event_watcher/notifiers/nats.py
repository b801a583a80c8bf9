"""NATS JetStream: each alert published to a stream, exactly once as its consumers count.

The body and headers are the streaming message (`notifiers/stream.py`); the `Nats-Msg-Id`
header is the alert's notification_id, so the server drops a re-send of the same
notification (a retry after a lost acknowledgement, or the spool's replay after a kill -9)
that arrives within the stream's duplicate window. An alert counts as delivered only once
the server's PubAck says the stream stored it (or already had it: `duplicate`).

Connecting never blocks start-up: the client connects (and later reconnects) in the
background; until it is connected every send is a RetryAfter, so the delivery lane spools.
Needs nats-py (`pip install 'kube-event-watcher[nats]'`); imported when a receiver starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from kube_event_watcher.config.durations import Duration, format_duration
from kube_event_watcher.config.model import StrictModel
from kube_event_watcher.config.secrets import redact
from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    PermanentFailure,
    RetryAfter,
)
from kube_event_watcher.notifiers.http import TlsConfig, ssl_context
from kube_event_watcher.notifiers.stream import RECORDS, StreamReceiverConfig
from kube_event_watcher.pipeline.model import Alert

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext
    from nats.js.api import PubAck, StreamInfo

log = structlog.get_logger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
# The server's default duplicate window (nats-server: `duplicate_window`, 2 minutes).
SERVER_DUPLICATE_WINDOW = 120.0
PLACEHOLDERS = ("cluster", "namespace", "status")
_PLACEHOLDER = re.compile(r"\{([a-z_]*)\}")
# A subject token may not hold these (https://docs.nats.io/nats-concepts/subjects).
_NOT_IN_TOKEN = re.compile(r"[.*>\s]")
# JetStream API answers worth a retry besides 5xx: "duplicate message id is in process"
# (409, another publish of this id is being stored) and a full stream with discard: new.
_RETRY_ERR_CODES = frozenset({10158, 10077})


def subject_token(value: str) -> str:
    """`value` as one subject token: dots, wildcards and spaces become `_`; empty is `_`."""
    return _NOT_IN_TOKEN.sub("_", value) or "_"


def alert_subject(template: str, alert: Alert) -> str:
    """The subject for `alert`: `{cluster}`, `{namespace}` and `{status}` filled in as
    single tokens (a cluster-scoped object's empty namespace is `_`)."""
    if "{" not in template:
        return template
    values = {"cluster": alert.cluster, "namespace": alert.namespace, "status": alert.status}
    return _PLACEHOLDER.sub(lambda m: subject_token(values[m.group(1)]), template)


def subject_filter(template: str) -> str:
    """The stream subject that takes every subject of `template` (each placeholder `*`)."""
    return _PLACEHOLDER.sub("*", template)


class CreateStreamConfig(StrictModel):
    """The stream to create when it does not exist (an existing stream is never changed)."""

    subjects: list[str] | None = Field(
        default=None,
        description="subjects the stream takes; default: the receiver's subject, each "
        "placeholder a `*`",
    )
    max_age: Duration = Field(default=7 * 86400.0, gt=0, description="how long messages stay")
    duplicate_window: Duration = Field(
        default=600.0,
        gt=0,
        description="how long the server remembers message ids to drop re-sends",
    )
    storage: str = Field(default="file", pattern="^(file|memory)$")
    replicas: int = Field(default=1, ge=1, le=5)


class NatsConfig(StreamReceiverConfig):
    servers: list[str] = Field(
        min_length=1, description="nats:// or tls:// URLs of the cluster's servers"
    )
    subject: str = Field(
        min_length=1,
        description="where alerts are published; may hold {cluster}, {namespace}, {status}",
    )
    stream: str = Field(min_length=1, description="the JetStream stream that must take them")
    create_stream: CreateStreamConfig | None = None
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: str | None = Field(default=None, description="a .creds file (JWT + nkey seed)")
    nkey_seed_file: str | None = Field(default=None, description="a file holding an nkey seed")
    tls: TlsConfig | None = None
    timeout: Duration = Field(default=5.0, gt=0, description="wait for the server's PubAck")
    connect_timeout: Duration = Field(default=5.0, gt=0)
    batch_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="alerts published together (each its own message), their acks awaited together",
    )

    @model_validator(mode="before")
    @classmethod
    def _client_installed(cls, data: Any) -> Any:
        if importlib.util.find_spec("nats") is None:
            raise ValueError(
                "the nats receiver needs the nats-py package: "
                "pip install 'kube-event-watcher[nats]'"
            )
        return data

    @field_validator("servers")
    @classmethod
    def _server_urls(cls, servers: list[str]) -> list[str]:
        for url in servers:
            if not re.match(r"^(nats|tls|ws|wss)://[^/\s]+/?$", url):
                raise ValueError(
                    f"expected a server URL like nats://host:4222 or tls://host:4222, got {url!r}"
                )
        return servers

    @field_validator("subject")
    @classmethod
    def _subject_shape(cls, subject: str) -> str:
        unknown = sorted(set(_PLACEHOLDER.findall(subject)) - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}}: the subject may hold "
                + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            )
        plain = _PLACEHOLDER.sub("x", subject)
        if any(not token or _NOT_IN_TOKEN.search(token) for token in plain.split(".")):
            raise ValueError(
                f"expected a subject like kube.alerts or kube.alerts.{{cluster}}: tokens "
                f"separated by dots, no empty token, no wildcards (* >) or spaces, got {subject!r}"
            )
        return subject

    @field_validator("stream")
    @classmethod
    def _stream_name(cls, name: str) -> str:
        if _NOT_IN_TOKEN.search(name) or "/" in name or "\\" in name:
            raise ValueError(f"a stream name has no dots, wildcards, slashes or spaces: {name!r}")
        return name

    @model_validator(mode="after")
    def _one_auth(self) -> NatsConfig:
        given = [
            key
            for key, value in (
                ("user", self.user),
                ("token", self.token),
                ("creds_file", self.creds_file),
                ("nkey_seed_file", self.nkey_seed_file),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give one way to authenticate, not {' and '.join(given)}")
        if (self.user is None) != (self.password is None):
            raise ValueError("user and password go together")
        return self


def connect_options(cfg: NatsConfig, client_name: str) -> dict[str, Any]:
    """nats-py connect() options of `cfg` (this receiver, and a fleet's central instance
    reading the same stream, fleet/nats.py): reconnects never give up."""
    options: dict[str, Any] = {
        "servers": cfg.servers,
        "name": client_name,
        "connect_timeout": max(1, round(cfg.connect_timeout)),
        "reconnect_time_wait": 2,
        "max_reconnect_attempts": -1,  # never give up: the lane spools meanwhile
    }
    if cfg.user is not None and cfg.password is not None:
        options["user"] = cfg.user
        options["password"] = cfg.password.get_secret_value()
    if cfg.token is not None:
        options["token"] = cfg.token.get_secret_value()
    if cfg.creds_file is not None:
        options["user_credentials"] = cfg.creds_file
    if cfg.nkey_seed_file is not None:
        options["nkeys_seed"] = cfg.nkey_seed_file
    if cfg.tls is not None:
        options["tls"] = ssl_context(cfg.tls)
    return options


async def create_stream(
    js: JetStreamContext, cfg: NatsConfig, create: CreateStreamConfig
) -> StreamInfo:
    """Create `cfg`'s stream as `create` says (by this receiver, or by a fleet's central
    instance that starts before any edge published)."""
    from nats.js.api import StorageType, StreamConfig

    config = StreamConfig(
        name=cfg.stream,
        subjects=create.subjects or [subject_filter(cfg.subject)],
        max_age=create.max_age,
        duplicate_window=create.duplicate_window,
        storage=StorageType(create.storage),
        num_replicas=create.replicas,
    )
    return await js.add_stream(config)


class NatsNotifier(Notifier):
    config_model = NatsConfig
    can_digest: ClassVar[bool] = False  # consumers read records: one message per alert
    resolved_by_default = True

    def __init__(self, config: NatsConfig) -> None:
        super().__init__(config)
        self.config: NatsConfig = config
        self.records = RECORDS[config.records]
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._last_error = ""
        self._stream_ok = False
        self._closing = False
        # Futures of sends waiting for acks, failed by a permissions violation the server
        # reports on the connection (it drops the message; no ack ever comes).
        self._denial_waiters: set[asyncio.Future[str]] = set()
        self.log = log.bind(receiver=self.name)

    # -- connection --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background: a server that is down at start delays nothing."""
        from nats.aio.client import Client

        options = {
            **connect_options(self.config, f"kube-event-watcher/{self.name}"),
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        self._nc = Client()
        self._connecting = asyncio.create_task(self._connect(options), name=f"nats:{self.name}")

    async def _connect(self, options: dict[str, Any]) -> None:
        assert self._nc is not None
        try:
            await self._nc.connect(**options)
        except Exception as exc:  # with endless reconnects only a bad option ends up here
            self._last_error = redact(f"{type(exc).__name__}: {exc}")
            self.log.error("cannot connect to NATS", error=self._last_error)
            return
        self._js = self._nc.jetstream(timeout=self.config.timeout)
        self.log.info("connected to NATS", server=self._server())

    def _server(self) -> str:
        url = self._nc.connected_url if self._nc is not None else None
        return f"{url.hostname}:{url.port}" if url is not None else "?"

    async def _on_error(self, exc: Exception) -> None:
        text = redact(str(exc) or type(exc).__name__)
        self._last_error = text
        if "permissions violation" in text.lower():
            self.log.error("NATS refused an operation", error=text)
            for waiter in list(self._denial_waiters):
                if not waiter.done():
                    waiter.set_result(text)
        else:
            self.log.debug("NATS connection error", error=text)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self.log.warning("disconnected from NATS; reconnecting", error=self._last_error or None)

    async def _on_reconnected(self) -> None:
        self.log.info("reconnected to NATS", server=self._server())

    def _not_connected(self) -> RetryAfter | None:
        nc = self._nc
        if nc is None or self._js is None or not nc.is_connected:
            servers = ", ".join(self.config.servers)
            detail = f": {self._last_error}" if self._last_error else ""
            return RetryAfter(f"not connected to NATS ({servers}){detail}")
        return None

    async def close(self) -> None:
        self._closing = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()

    # -- the stream --------------------------------------------------------------------------

    async def _ensure_stream(self) -> DeliveryResult | None:
        """Check once per connection-life that the stream exists (create it when asked);
        None when it does, else what the send should answer."""
        if self._stream_ok:
            return None
        from nats.js.errors import NotFoundError

        assert self._js is not None
        cfg = self.config
        try:
            info = await self._js.stream_info(cfg.stream)
        except NotFoundError:
            if cfg.create_stream is None:
                return PermanentFailure(
                    f"the JetStream stream {cfg.stream!r} does not exist: create it (e.g. "
                    f"nats stream add {cfg.stream} --subjects '{subject_filter(cfg.subject)}') "
                    f"or set receivers[{self.name}].create_stream"
                )
            try:
                info = await create_stream(self._js, cfg, cfg.create_stream)
            except Exception as exc:
                return self._judge(exc, "creating the stream")
            self.log.info("created the JetStream stream", stream=cfg.stream)
        except Exception as exc:
            return self._judge(exc, "looking up the stream")
        self._stream_ok = True
        self._check_window(info)
        return None

    def _check_window(self, info: StreamInfo) -> None:
        """Warn when a retry could come after the server forgot the message id."""
        window = info.config.duplicate_window or SERVER_DUPLICATE_WINDOW
        delivery = self.config.delivery
        horizon = delivery.retry_max + delivery.send_timeout
        if window < horizon:
            self.log.warning(
                "the stream's duplicate window is shorter than this receiver's longest retry "
                "wait: a re-send after it would be stored twice; raise the stream's "
                "duplicate_window or lower delivery.retry_max",
                stream=self.config.stream,
                duplicate_window=format_duration(window),
                retry_horizon=format_duration(horizon),
            )

    # -- publishing --------------------------------------------------------------------------

    async def send(self, alert: Alert) -> DeliveryResult:
        return await self.send_many([alert])

    async def send_many(self, alerts: Sequence[Alert]) -> DeliveryResult:
        """Publish every alert (in order, on one connection) and wait for all their acks."""
        if self._connecting is not None and not self._connecting.done():
            # The first connection: wait for it a while (`test-notify` sends right away).
            await asyncio.wait({self._connecting}, timeout=self.config.connect_timeout)
        waiting = self._not_connected()
        if waiting is not None:
            return waiting
        problem = await self._ensure_stream()
        if problem is not None:
            return problem
        assert self._js is not None
        denied: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._denial_waiters.add(denied)
        futures: list[asyncio.Future[PubAck]] = []
        acks: asyncio.Future[list[PubAck]] | None = None
        try:
            records = self.records
            for alert in alerts:
                futures.append(
                    await self._js.publish_async(
                        alert_subject(self.config.subject, alert),
                        records.message(alert),
                        stream=self.config.stream,
                        headers={**records.headers(alert), MSG_ID_HEADER: alert.notification_id},
                    )
                )
            acks = asyncio.gather(*futures)
            either: set[asyncio.Future[Any]] = {acks, denied}
            done, _ = await asyncio.wait(
                either, timeout=self.config.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if denied in done:
                return PermanentFailure(
                    f"{denied.result()}: give the NATS user publish rights on "
                    f"{subject_filter(self.config.subject)!r} (and subscribe rights on _INBOX.>)"
                )
            if acks not in done:
                return RetryAfter(
                    f"no PubAck from the stream {self.config.stream!r} within "
                    f"{format_duration(self.config.timeout)}"
                )
            results = acks.result()
        except Exception as exc:
            return await self._failed(exc)
        finally:
            self._denial_waiters.discard(denied)
            if acks is not None and not acks.done():
                acks.cancel()  # first: a gather whose parts were cancelled logs an error
            for future in futures:
                if not future.done():
                    future.cancel()  # frees the client's pending slot
                elif not future.cancelled():
                    future.exception()  # retrieved: no "never retrieved" warning
        repeats = sum(1 for ack in results if ack.duplicate)
        if repeats:
            self.log.debug(
                "the stream already had these alerts (re-sent within its duplicate window)",
                alerts=repeats,
            )
        last = results[-1]
        self.last_answer = f"stream {last.stream} seq {last.seq}"
        return Delivered(self.last_answer + (f" ({repeats} duplicate)" if repeats else ""))

    async def _failed(self, exc: Exception) -> DeliveryResult:
        """A publish that raised: find out whether the subject has a stream at all."""
        from nats.js.errors import NoStreamResponseError

        if isinstance(exc, NoStreamResponseError):
            # No one answered on the subject: no stream takes it, or JetStream is not up yet
            # (a restarting server). The API tells which.
            self._stream_ok = False
            problem = await self._ensure_stream()
            if problem is not None:
                return problem
            from nats.js.errors import NotFoundError

            assert self._js is not None
            subject = subject_filter(self.config.subject)
            try:
                await self._js.find_stream_name_by_subject(subject)
            except NotFoundError:
                return PermanentFailure(
                    f"no JetStream stream takes the subject {subject!r}: add it to the "
                    f"subjects of the stream {self.config.stream!r}"
                )
            except Exception as lookup:
                return self._judge(lookup, "publishing")
            return RetryAfter("no answer from the stream (JetStream not ready)")
        return self._judge(exc, "publishing")

    def _judge(self, exc: Exception, doing: str) -> DeliveryResult:
        """What an error of the client or the JetStream API means for the alert."""
        import nats.errors
        from nats.js.errors import APIError

        text = redact(str(exc) or type(exc).__name__)
        if isinstance(exc, APIError):
            code, err_code = exc.code or 0, exc.err_code or 0
            reason = f"JetStream refused {doing}: {exc.description} (code {code}/{err_code})"
            if code >= 500 or code == 409 or err_code in _RETRY_ERR_CODES:
                return RetryAfter(reason)
            if err_code == 10060:
                return PermanentFailure(
                    f"{reason}: the subject {self.config.subject!r} belongs to another "
                    f"stream than {self.config.stream!r}"
                )
            return PermanentFailure(reason)
        if isinstance(exc, nats.errors.MaxPayloadError):
            return PermanentFailure(
                f"the alert is larger than the server's max_payload ({text}): raise "
                "max_payload in the server's config"
            )
        if isinstance(exc, nats.errors.BadSubjectError):
            return PermanentFailure(f"bad subject {self.config.subject!r}: {text}")
        if isinstance(exc, (nats.errors.Error, OSError, asyncio.TimeoutError)):
            self._stream_ok = False  # the server may have restarted without it
            return RetryAfter(f"NATS: {doing}: {text}")
        raise exc

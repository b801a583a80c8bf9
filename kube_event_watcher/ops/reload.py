"""SIGHUP reload: validate the new config first; keep the running one when it is invalid.

`reload_config` loads and validates, and compares the new config with the running one,
saying which sections can be swapped live and which need the watches restarted. The daemon
applies the result (see `reload_on_sighup`); nothing here touches a running stage.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import BaseModel

from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import LoadedConfig, load_config
from kube_event_watcher.config.schema import Config

log = structlog.get_logger(__name__)

# Sections a running daemon can take over without touching its watches.
LIVE_SECTIONS = frozenset(
    {"routes", "inhibit_rules", "silences", "filters", "aggregation", "enrichment", "log"}
)
# Everything else (clusters, sources, state, ha, ops, and any section added later) needs the
# watches (or the ops server) restarted: the safe default for a section not listed here.

ModelsFactory = Callable[[], Mapping[str, type[BaseModel]]]
Loader = Callable[[str | None, Mapping[str, type[BaseModel]]], LoadedConfig]


@dataclass(frozen=True, slots=True)
class ConfigChanges:
    """What differs between the running config and the new one."""

    live: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    receivers_added: tuple[str, ...] = ()
    receivers_removed: tuple[str, ...] = ()
    receivers_changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.live
            or self.restart
            or self.receivers_added
            or self.receivers_removed
            or self.receivers_changed
        )

    @property
    def needs_restart(self) -> bool:
        return bool(self.restart or self.receivers_changed)

    def summary(self) -> str:
        if self.empty:
            return "no changes"
        parts = []
        # A receiver is added or dropped live; a running one keeps its settings (its
        # notifier's connections and state) until a restart.
        receivers = [
            *(f"+{n}" for n in self.receivers_added),
            *(f"-{n}" for n in self.receivers_removed),
        ]
        live = [*self.live, *([f"receivers ({', '.join(receivers)})"] if receivers else [])]
        if live:
            parts.append(f"applied live: {', '.join(live)}")
        restart = [
            *self.restart,
            *(
                [f"receivers (~{', ~'.join(self.receivers_changed)})"]
                if self.receivers_changed
                else []
            ),
        ]
        if restart:
            parts.append(
                f"changed but needs a restart of the watches to take effect: {', '.join(restart)}"
            )
        return "; ".join(parts)


def _receiver_dump(model: BaseModel) -> Any:
    # Secrets compare by value (SecretStr compares its secret), never printed.
    return {name: getattr(model, name) for name in type(model).model_fields}


def diff_configs(old: LoadedConfig, new: LoadedConfig) -> ConfigChanges:
    live: list[str] = []
    restart: list[str] = []
    for name in Config.model_fields:
        if name == "receivers":
            continue
        if getattr(old.config, name) != getattr(new.config, name):
            (live if name in LIVE_SECTIONS else restart).append(name)
    before, after = old.receivers, new.receivers
    return ConfigChanges(
        live=tuple(live),
        restart=tuple(restart),
        receivers_added=tuple(n for n in after if n not in before),
        receivers_removed=tuple(n for n in before if n not in after),
        receivers_changed=tuple(
            n
            for n in after
            if n in before and _receiver_dump(before[n]) != _receiver_dump(after[n])
        ),
    )


def with_live_sections(base: LoadedConfig, new: LoadedConfig) -> LoadedConfig:
    """`base` with what a reload may change live taken from `new`: the LIVE_SECTIONS and the
    receivers; every other section (the watch scopes, state, ha, ops) stays `base`'s."""
    update: dict[str, Any] = {name: getattr(new.config, name) for name in LIVE_SECTIONS}
    update["receivers"] = new.config.receivers
    return LoadedConfig(base.config.model_copy(update=update), new.source, dict(new.receivers))


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """`loaded` is the config to run from now on: the new one, or the running one when
    `problems` says why the new one was rejected."""

    loaded: LoadedConfig
    accepted: bool
    problems: tuple[str, ...] = ()
    changes: ConfigChanges = field(default_factory=ConfigChanges)


def reload_config(
    path: str | None,
    running: LoadedConfig,
    models: ModelsFactory,
    loader: Loader = load_config,
) -> ReloadOutcome:
    """Load `path` again; on any problem keep `running` and log each problem."""
    if path is None:
        log.info("reload asked, but the daemon runs the built-in default config: nothing to read")
        return ReloadOutcome(running, False, ("no config file was given at start",))
    try:
        # Plugins are looked up again: a receiver type installed since start may be used now.
        new = loader(path, models())
    except ConfigError as exc:
        for problem in exc.problems:
            log.error(
                "config reload rejected; keeping the running config", source=path, problem=problem
            )
        return ReloadOutcome(running, False, tuple(exc.problems))
    changes = diff_configs(running, new)
    if changes.needs_restart:
        log.warning(
            "config reloaded; some changes need the watches restarted",
            source=path,
            changes=changes.summary(),
        )
    else:
        log.info("config reloaded", source=path, changes=changes.summary())
    return ReloadOutcome(new, True, (), changes)


Apply = Callable[[ReloadOutcome], Awaitable[None]]


async def reload_on_sighup(
    path: str | None,
    running: Callable[[], LoadedConfig],
    models: ModelsFactory,
    apply: Apply,
    stop: asyncio.Event,
    loader: Loader = load_config,
    results: dict[str, int] | None = None,
) -> None:
    """Until `stop`: on each SIGHUP, reload and hand an accepted outcome to `apply`.

    Signals that arrive while one reload runs collapse into one more reload after it.
    `results` counts the reloads by result (applied, rejected), for the metrics.
    """
    loop = asyncio.get_running_loop()
    hup = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    try:
        while True:
            stopping = asyncio.ensure_future(stop.wait())
            hupped = asyncio.ensure_future(hup.wait())
            await asyncio.wait([stopping, hupped], return_when=asyncio.FIRST_COMPLETED)
            for waiter in (stopping, hupped):
                waiter.cancel()
            if stop.is_set():
                return
            hup.clear()
            # Reading files and YAML off the loop keeps /healthz and the watches responsive.
            outcome = await asyncio.to_thread(reload_config, path, running(), models, loader)
            if results is not None:
                result = "applied" if outcome.accepted else "rejected"
                results[result] = results.get(result, 0) + 1
            if outcome.accepted:
                await apply(outcome)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)

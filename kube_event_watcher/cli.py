"""Command line: run, check-config, doctor, test-notify, replay, examples, demo."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

import shtab
import structlog
import yaml
from pydantic import BaseModel, SecretStr

from kube_event_watcher import __version__
from kube_event_watcher.config.errors import ConfigError
from kube_event_watcher.config.loading import LoadedConfig, load_config
from kube_event_watcher.config.secrets import MASK, mask_url, redact
from kube_event_watcher.kube.errors import ClusterAccessError
from kube_event_watcher.kube.lease import LeadershipLost
from kube_event_watcher.notifiers.registry import config_models
from kube_event_watcher.ops.eventloop import EventLoopChoiceError
from kube_event_watcher.ops.eventloop import run as run_on_loop
from kube_event_watcher.ops.logging import configure_logging
from kube_event_watcher.ops.memory import pin_mmap_threshold
from kube_event_watcher.ops.reload import reload_on_sighup
from kube_event_watcher.ops.sdnotify import SystemdNotifier, run_watchdog, watchdog_interval

EXIT_CONFIG = 2
EXIT_CLUSTER = 3
# HA: the lease was lost; the process exits so that systemd/Kubernetes start it afresh as a
# candidate (simpler and safer than re-arming every stage in place).
EXIT_LEADERSHIP_LOST = 4


def files(action: argparse.Action) -> None:
    """Mark an argument as a file, for the shell completion (shtab reads `complete`)."""
    action.complete = shtab.FILE  # type: ignore[attr-defined]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kube-event-watcher",
        description="Turns the Kubernetes event stream into few, well-explained alerts.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        files(
            p.add_argument(
                "-c",
                "--config",
                help="config file (default: built-in: Warning events of the current context to "
                "stdout)",
            )
        )
        files(
            p.add_argument(
                "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
            )
        )
        p.add_argument("--context", help="kubeconfig context (default: current-context)")

    run = sub.add_parser("run", help="watch events and send alerts (the default command)")
    common(run)
    check = sub.add_parser("check-config", help="validate the config and print it, secrets masked")
    common(check)
    doctor = sub.add_parser(
        "doctor", help="check the path to each cluster and receiver, step by step"
    )
    common(doctor)
    doctor.add_argument("--output", choices=["text", "json"], default="text")
    doctor.add_argument(
        "--send-test", action="store_true", help="send a test alert to each receiver"
    )
    notify = sub.add_parser(
        "test-notify", help="send a sample alert to one receiver and print its answer"
    )
    notify.add_argument("receiver", help="the receiver's name in the config")
    common(notify)
    replay = sub.add_parser(
        "replay", help="show what recorded events (watch lines, kubectl get events -o json) send"
    )
    common(replay)
    files(replay.add_argument("file", help="recorded events; - for standard input"))
    replay.add_argument("--output", choices=["text", "json"], default="text")
    replay.add_argument("--cluster", default="default", help="cluster name to label events with")
    objects = replay.add_argument(
        "--objects",
        action="append",
        default=[],
        metavar="FILE",
        help="recorded Pods, Nodes, owners (watch lines, a List, one object) to enrich from, "
        "as they were when each notification went out; repeatable",
    )
    files(objects)
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash: source <(kube-event-watcher completion bash))",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    shown = sub.add_parser(
        "examples",
        help="list the example configs, or print one (examples minimal > config.yaml)",
    )
    shown.add_argument("name", nargs="?", help="the example to print (default: list them)")
    demo = sub.add_parser(
        "demo",
        help="start a local cluster with broken workloads and watch it (source checkout, Go)",
    )
    demo.add_argument("--workdir", help="keep the cluster's files here (default: a temp dir)")
    return parser


def _masked(value: Any, dumped: Any) -> Any:
    """`dumped` (a value as `model_dump(mode="json")` writes it: durations as `30s`, not
    30.0) with each secret of `value` masked; a secret URL keeps its scheme and host."""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return mask_url(secret) if "://" in secret else MASK
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        return {k: _masked(getattr(value, k), dumped[k]) for k in type(value).model_fields}
    if isinstance(value, dict) and isinstance(dumped, dict):
        return {k: _masked(v, d) for (k, d), v in zip(dumped.items(), value.values(), strict=True)}
    if isinstance(value, list | tuple) and isinstance(dumped, list):
        return [_masked(v, d) for v, d in zip(value, dumped, strict=True)]
    return dumped


def effective_config(loaded: LoadedConfig) -> dict[str, Any]:
    """The config as the daemon will use it (defaults filled in), with every secret masked."""
    doc: dict[str, Any] = loaded.config.model_dump(mode="json", exclude={"receivers"})
    doc["receivers"] = [
        _masked(model, model.model_dump(mode="json")) for model in loaded.receivers.values()
    ]
    stream = loaded.fleet_stream
    if stream is not None:  # as its receiver model reads it: defaults in, secrets masked
        consume = _masked(stream, stream.model_dump(mode="json"))
        consume.pop("name", None)
        doc["fleet"]["consume"] = consume
    return doc


def _load(args: argparse.Namespace) -> LoadedConfig:
    return load_config(args.config, config_models())


def check_config(args: argparse.Namespace) -> int:
    loaded = _load(args)
    text = yaml.safe_dump(effective_config(loaded), sort_keys=False, allow_unicode=True)
    sys.stdout.write(f"# {loaded.source}: valid\n" + redact(text))
    return 0


async def _doctor(args: argparse.Namespace) -> int:
    from kube_event_watcher.doctor import run_doctor
    from kube_event_watcher.kube.diagnosis import exit_code, render_json, render_text

    checks = await run_doctor(
        _load(args), kubeconfig=args.kubeconfig, context=args.context, send_test=args.send_test
    )
    render = render_json if args.output == "json" else render_text
    sys.stdout.write(redact(render(checks)))
    return exit_code(checks)


async def _run(args: argparse.Namespace) -> int:
    from kube_event_watcher.daemon import Daemon
    from kube_event_watcher.shards import ShardedDaemon

    loaded = _load(args)
    configure_logging(loaded.config.log.level, loaded.config.log.format)
    pin_mmap_threshold()
    daemon: Daemon | ShardedDaemon
    if loaded.config.ha.shards:
        daemon = ShardedDaemon(loaded, kubeconfig=args.kubeconfig, context=args.context)
    else:
        daemon = Daemon(loaded, kubeconfig=args.kubeconfig, context=args.context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    helpers = [
        asyncio.create_task(
            reload_on_sighup(
                args.config,
                lambda: daemon.loaded,
                config_models,
                daemon.apply_reload,
                stop,
                results=daemon.reloads,
            ),
            name="sighup",
        ),
        asyncio.create_task(_tell_systemd(daemon, stop), name="sd_notify"),
    ]
    try:
        await daemon.run(stop)
    finally:
        stop.set()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    """Build/start the local cluster, run the daemon against it until Ctrl-C, stop it all."""
    import shutil
    import tempfile
    from pathlib import Path

    from kube_event_watcher.daemon import Daemon
    from kube_event_watcher.demo import INTRO, local_cluster, write_config

    def say(message: str) -> None:
        sys.stderr.write(f"demo: {message}\n")
        sys.stderr.flush()

    sys.stderr.write(INTRO + "\n")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="kew-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    starting = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        if starting is not None and not stop.is_set() and daemon_started.is_set():
            stop.set()
        elif starting is not None:
            starting.cancel()  # still building or starting: stop that

    daemon_started = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, interrupt)
    try:
        async with local_cluster(say, workdir=workdir) as cluster:
            loaded = load_config(str(write_config(cluster.kubeconfig, workdir)), config_models())
            configure_logging(loaded.config.log.level, loaded.config.log.format)
            daemon = Daemon(loaded, kubeconfig=None, context=None)
            say(
                f"cluster up, kubeconfig {cluster.kubeconfig} (kubectl --kubeconfig ... works); "
                f"broken workloads: {', '.join(cluster.scenarios)}"
            )
            say("watching: grouped, enriched alerts appear below within a minute; Ctrl-C stops all")
            daemon_started.set()
            await daemon.run(stop)
    except asyncio.CancelledError:
        say("interrupted; everything started is stopped")
        return 130
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    say("stopped; nothing left running")
    return 0


async def _tell_systemd(daemon: Any, stop: asyncio.Event) -> None:
    """Type=notify: READY=1 once every watch has listed and is watching (so /readyz is green
    too), then watchdog pings, STOPPING=1. A daemon that never connects never says READY, and
    systemd's start timeout reports it."""
    notifier = SystemdNotifier.from_env()
    if notifier is None:
        return

    async def watching() -> None:
        await daemon.ready.wait()
        await asyncio.gather(*(r.wait_watching(1, timeout=None) for r in daemon.runners))

    ready = asyncio.create_task(watching())
    # HA: a standby is up and doing its job; without READY=1 systemd would kill it.
    standby = asyncio.create_task(daemon.standing_by.wait())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([ready, standby, stopping], return_when=asyncio.FIRST_COMPLETED)
    for task in (ready, standby, stopping):
        task.cancel()
    if stop.is_set():
        return
    if daemon.standing_by.is_set() and not daemon.ready.is_set():
        notifier.notify("READY=1", "STATUS=standby: another replica holds the lease")
    else:
        notifier.notify("READY=1", f"STATUS=watching {len(daemon.watches)} scope(s)")
    interval = watchdog_interval()
    try:
        if interval is not None:
            await run_watchdog(notifier, interval, stop)
        else:
            await stop.wait()
    finally:
        notifier.notify("STOPPING=1")


def show_examples(name: str | None) -> int:
    from kube_event_watcher.examples import example, examples

    if name is None:
        listed = examples()
        width = max(len(e.name) for e in listed)
        for found in listed:
            sys.stdout.write(f"{found.name:<{width}}  {found.summary}\n")
        return 0
    try:
        sys.stdout.write(example(name).text)
    except KeyError as exc:
        sys.stderr.write(f"examples: {exc.args[0]}\n")
        return EXIT_CONFIG
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "run"
    if args.command is None:
        args = _parser().parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
    configure_logging()
    log = structlog.get_logger("kube_event_watcher")
    try:
        if command == "check-config":
            return check_config(args)
        if command == "doctor":
            return run_on_loop(_doctor(args))
        if command == "test-notify":
            from kube_event_watcher.notifiers.testnotify import run_test_notify

            return run_on_loop(run_test_notify(_load(args), args.receiver))
        if command == "replay":
            from kube_event_watcher.replay import run_replay

            return run_replay(
                _load(args).config, args.file, args.output, args.cluster, args.objects
            )
        if command == "completion":
            sys.stdout.write(shtab.complete(_parser(), shell=args.shell))
            return 0
        if command == "examples":
            return show_examples(args.name)
        if command == "demo":
            from kube_event_watcher.demo import DemoError

            try:
                return run_on_loop(_demo(args))
            except DemoError as exc:
                sys.stderr.write(f"demo: {exc}\n")
                return EXIT_CLUSTER
        return run_on_loop(_run(args))
    except (ConfigError, EventLoopChoiceError) as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_CONFIG
    except ClusterAccessError as exc:
        log.error("cannot reach the cluster", error=redact(str(exc)))
        return EXIT_CLUSTER
    except LeadershipLost as exc:
        log.error("exiting: leadership lost", reason=str(exc))
        return EXIT_LEADERSHIP_LOST
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

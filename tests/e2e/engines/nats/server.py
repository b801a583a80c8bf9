"""A real nats-server with JetStream (its file store in a directory the test owns), built by
`build.sh` beside this file, on free loopback ports; stopped, killed and restarted on the same
store and port for fault tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build.sh"


class NatsServerError(RuntimeError):
    pass


def build_nats_server() -> Path:
    """The nats-server binary (built or found in the cache by build.sh)."""
    try:
        done = subprocess.run(
            ["bash", str(BUILD)], capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NatsServerError(f"{BUILD} did not run: {exc}") from exc
    if done.returncode != 0:
        raise NatsServerError(f"{BUILD} failed:\n{done.stderr[-2000:]}")
    binary = Path(done.stdout.strip().splitlines()[-1]) / "nats-server"
    if not os.access(binary, os.X_OK):
        raise NatsServerError(f"{BUILD} printed {binary.parent}, which has no nats-server")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """`nats-server -js -sd STORE` on 127.0.0.1; `config` is a server config file's text
    (accounts, users, permissions) written beside the store."""

    def __init__(self, binary: Path, directory: Path, config: str | None = None) -> None:
        self.binary = binary
        self.directory = directory
        self.store = directory / "jetstream"
        self.port = free_port()
        self.monitor_port = free_port()
        self.log = directory / "nats-server.log"
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js", "-sd", str(self.store),
        ]  # fmt: skip
        if self.config is not None:
            conf = self.directory / "nats-server.conf"
            conf.write_text(self.config)
            argv += ["-c", str(conf)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        """Until /healthz says JetStream is up (it has read its store back), or fail."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise NatsServerError(f"nats-server exited:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise NatsServerError(f"nats-server not healthy in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM (the store is flushed), waiting for the exit."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: what the store has on disk is all that survives."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.kill() if _value is not None else self.stop()


StoredMessage = tuple[str, dict[str, str], bytes]


async def read_stream(url: str, stream: str, **auth: str) -> list[StoredMessage]:
    """Every message the stream holds, in order: (subject, headers, body), as a consumer
    reading the whole stream from its first message sees them."""
    from nats.aio.client import Client

    nc = Client()
    await nc.connect(servers=[url], allow_reconnect=False, connect_timeout=5, **auth)
    try:
        jsm = nc.jsm()
        state = (await jsm.stream_info(stream)).state
        out = []
        for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
            msg = await jsm.get_msg(stream, seq)
            out.append((msg.subject or "", dict(msg.headers or {}), msg.data or b""))
        return out
    finally:
        await nc.close()


async def stream_count(url: str, stream: str, **auth: str) -> int:
    """How many messages the stream holds (0 while the server or the stream is not there)."""
    from nats.aio.client import Client

    nc = Client()
    try:
        await nc.connect(servers=[url], allow_reconnect=False, connect_timeout=2, **auth)
        return int((await nc.jsm().stream_info(stream)).state.messages)
    except Exception:
        return 0
    finally:
        await nc.close()

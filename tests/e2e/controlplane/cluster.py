"""A real kube-apiserver + etcd on loopback, for the end-to-end tests.

`ControlPlane` starts etcd and kube-apiserver (built from source by ``build.sh``) on random
free loopback ports in a temp dir, with a throwaway CA, an admin client certificate
(``O=system:masters``) and a service-account key pair, and tears them down again. Small
synchronous HTTP helpers talk to the API as the admin, so tests can set up objects and
provoke failures (an apiserver crash, an etcd compaction) without a client library.

There is no kube-controller-manager or scheduler: namespaces get no ``default`` ServiceAccount
(hence ``--disable-admission-plugins=ServiceAccount``, as controller-runtime's envtest does),
Pods are never scheduled and deleted namespaces stay ``Terminating``. ``LocalCluster``
(``localcluster.py``) adds them, and kwok's fake Nodes, on a ControlPlane of its own.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.tls import TestCA

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
BIN_ENV = "KEW_CONTROLPLANE_BIN"
CONTROL_PLANE_BINARIES = ("kube-apiserver", "etcd")
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"

JSON = dict[str, Any]


class ControlPlaneError(RuntimeError):
    """etcd or kube-apiserver could not be built, started or reached."""


class ApiError(RuntimeError):
    """The API server answered a helper request with an error status."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        self.status_body: JSON | None = parsed if isinstance(parsed, dict) else None
        detail = (
            self.status_body.get("message")
            if self.status_body
            else body[:500].decode(errors="replace")
        )
        super().__init__(f"{method} {path} -> HTTP {status}: {detail}")

    @property
    def reason(self) -> str | None:
        """The Status ``reason`` (``NotFound``, ``Expired``, ...) if the body was a Status."""
        return self.status_body.get("reason") if self.status_body else None


class Stream:
    """An open streaming response (a watch), read line by line as data arrives.

    http.client's own readline()/iteration can block on a chunked body after a complete
    line has arrived (it wants the next chunk header), so lines() reads with read1().
    """

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response
        self.status = response.status
        self.headers = response.headers
        self._buffer = b""

    def lines(self) -> Iterator[bytes]:
        """Each line (ending in b"\\n", except a last partial one) until the server closes."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                yield line
                continue
            chunk = self.response.read1(65536)
            if not chunk:
                if self._buffer:
                    line, self._buffer = self._buffer, b""
                    yield line
                return
            self._buffer += chunk

    def read(self) -> bytes:
        """The rest of the body, until the server closes the stream."""
        rest, self._buffer = self._buffer + self.response.read(), b""
        return rest


@dataclass(frozen=True, slots=True)
class Response:
    """A whole (non-streaming) HTTP response from the API server."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def rfc3339_micro(when: dt.datetime | None = None) -> str:
    """``2026-11-24T01:02:03.000000Z``: the MicroTime format of ``eventTime``."""
    when = when or dt.datetime.now(dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def missing_binaries(bin_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Those of `names` that are not a file in `bin_dir`."""
    return [name for name in names if not (bin_dir / name).is_file()]


def find_binaries(timeout: float = 3600) -> Path:
    """The dir holding ``kube-apiserver`` and ``etcd`` (and, when build.sh made it, the local
    cluster's binaries too): ``$KEW_CONTROLPLANE_BIN``, else build.sh.

    Raises ControlPlaneError with the tail of the build output when the build fails.
    """
    env_dir = os.environ.get(BIN_ENV)
    if env_dir:
        bin_dir = Path(env_dir)
        missing = missing_binaries(bin_dir, CONTROL_PLANE_BINARIES)
        if missing:
            raise ControlPlaneError(
                f"${BIN_ENV}={env_dir} lacks {', '.join(missing)}; unset it to build with "
                f"{BUILD_SCRIPT}"
            )
        return bin_dir
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ControlPlaneError(f"running {BUILD_SCRIPT} failed: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise ControlPlaneError(
            f"{BUILD_SCRIPT} exited with {proc.returncode}; last output:\n{tail}"
        )
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


@dataclass(slots=True)
class _Pki:
    """File paths of the generated certificates and keys, plus the PEM bytes the helpers need."""

    dir: Path
    ca_cert: Path = field(init=False)
    serving_cert: Path = field(init=False)
    serving_key: Path = field(init=False)
    admin_cert: Path = field(init=False)
    admin_key: Path = field(init=False)
    sa_public: Path = field(init=False)
    sa_private: Path = field(init=False)
    ca: TestCA | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.ca_cert = self.dir / "ca.crt"
        self.serving_cert = self.dir / "apiserver.crt"
        self.serving_key = self.dir / "apiserver.key"
        self.admin_cert = self.dir / "admin.crt"
        self.admin_key = self.dir / "admin.key"
        self.sa_public = self.dir / "sa.pub"
        self.sa_private = self.dir / "sa.key"

    def generate(self) -> None:
        """A CA, an apiserver serving cert, an admin client cert and an RSA service-account key."""
        self.dir.mkdir(parents=True, exist_ok=True)
        # Longer than doctor's 14-day "renew soon" warning, so a healthy setup reads healthy.
        ca = self.ca = TestCA("kube-event-watcher-e2e-ca", valid_for=dt.timedelta(days=30))
        self.ca_cert.write_bytes(ca.cert_pem)
        serving = ca.issue(
            "kube-apiserver",
            hosts=(
                "127.0.0.1",
                KUBERNETES_SERVICE_IP,
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ),
        )
        admin = ca.issue("admin", organization="system:masters", client=True)
        for issued, cert_path, key_path in (
            (serving, self.serving_cert, self.serving_key),
            (admin, self.admin_cert, self.admin_key),
        ):
            cert_path.write_bytes(issued.cert_pem)
            key_path.write_bytes(issued.key_pem)
            key_path.chmod(0o600)

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_private.write_bytes(_private_pem(sa_key))
        self.sa_private.chmod(0o600)
        self.sa_public.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def issue_client(self, name: str, organization: str | None = None) -> tuple[Path, Path]:
        """A client certificate (CN=`name`, O=`organization`) and its key, as file paths."""
        if self.ca is None:
            raise ControlPlaneError("the PKI is not generated yet")
        issued = self.ca.issue(name, organization=organization, client=True)
        stem = name.replace(":", "-")
        cert_path, key_path = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        cert_path.write_bytes(issued.cert_pem)
        key_path.write_bytes(issued.key_pem)
        key_path.chmod(0o600)
        return cert_path, key_path


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _Process:
    """One child process with its output going to a log file."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running:
            raise ControlPlaneError(f"{self.name} is already running")
        self._log = self.log_path.open("ab")
        self._log.write(f"\n==== starting {self.name} at {rfc3339_micro()} ====\n".encode())
        self._log.flush()
        self._popen = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def stop(self, *, kill: bool = False, timeout: float = 15) -> None:
        """SIGTERM (or SIGKILL when kill=True), then SIGKILL after `timeout` seconds."""
        popen, self._popen = self._popen, None
        try:
            if popen is not None:
                if popen.poll() is None:
                    popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                    try:
                        popen.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        popen.kill()
                        popen.wait()
                else:
                    popen.wait()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


class ControlPlane:
    """etcd + kube-apiserver on random loopback ports, with admin HTTP helpers.

    Use as a context manager, or call start() and stop(). The apiserver keeps its port and
    certificates across restart_apiserver(), and etcd its data across kill_etcd()/start_etcd().
    """

    def __init__(
        self,
        bin_dir: Path,
        *,
        workdir: Path | None = None,
        ready_timeout: float = 120,
        extra_apiserver_args: list[str] | None = None,
        service_account_admission: bool = False,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        # Off by default: without a controller-manager no `default` ServiceAccount exists.
        self.service_account_admission = service_account_admission
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kew-controlplane-"))
        self.ready_timeout = ready_timeout
        self.pki = _Pki(self.workdir / "pki")
        self.etcd_client_port = free_port()
        self.etcd_peer_port = free_port()
        self.apiserver_port = free_port()
        self.etcd_url = f"http://127.0.0.1:{self.etcd_client_port}"
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.etcd_log = self.workdir / "etcd.log"
        self.apiserver_log = self.workdir / "kube-apiserver.log"
        self._ssl: ssl.SSLContext | None = None
        self._etcd = _Process("etcd", self._etcd_args(), self.etcd_log)
        self._apiserver = _Process(
            "kube-apiserver",
            self._apiserver_args() + list(extra_apiserver_args or []),
            self.apiserver_log,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Generate the PKI, start etcd and kube-apiserver, wait for both, write the kubeconfig."""
        # If the test run dies without calling stop(), do not leave the processes behind.
        atexit.register(self.stop)
        try:
            self.pki.generate()
            self._ssl = self._admin_ssl_context()
            self.start_etcd()
            self.start_apiserver()
            self._write_kubeconfig()
        except BaseException:
            self.stop(keep_workdir=True)  # the error names it; its logs explain the failure
            raise

    def stop(self, *, keep_workdir: bool = False) -> None:
        """Stop the apiserver, then etcd (SIGTERM, SIGKILL after a timeout); remove the temp dir
        unless `keep_workdir`."""
        atexit.unregister(self.stop)
        try:
            self._apiserver.stop()
        finally:
            try:
                self._etcd.stop()
            finally:
                if self._own_workdir and not keep_workdir:
                    shutil.rmtree(self.workdir, ignore_errors=True)

    def start_etcd(self) -> None:
        self._etcd.start()
        self._wait("etcd", self._etcd, self._etcd_healthy)

    def kill_etcd(self) -> None:
        """SIGKILL etcd; its data dir stays, so start_etcd() brings the same data back."""
        self._etcd.stop(kill=True)

    def start_apiserver(self) -> None:
        self._apiserver.start()
        self._wait("kube-apiserver", self._apiserver, self._apiserver_ready)

    def restart_apiserver(self, *, kill: bool = True) -> None:
        """Stop kube-apiserver (SIGKILL by default, else SIGTERM) and start it again.

        Same port, certificates and etcd, so clients see a dropped connection and then the
        same server; returns once /readyz is ok again.
        """
        self._apiserver.stop(kill=kill)
        self.start_apiserver()

    def compact_etcd(self) -> int:
        """Compact etcd so that every resourceVersion seen before this call is gone.

        Compacting at revision R keeps R itself readable, so this first writes a probe key
        outside /registry to move etcd past anything a client may hold, then compacts at
        that new revision (returned). A list/continue/watch that must read an older
        revision from etcd then gets 410 Gone. Uses etcd's JSON gRPC gateway
        (``/v3/kv/put``, ``/v3/kv/compaction``); no etcdctl needed.
        """
        probe = base64.b64encode(b"/kube-event-watcher-e2e/compaction-probe").decode()
        value = base64.b64encode(rfc3339_micro().encode()).decode()
        header = self._etcd_post("/v3/kv/put", {"key": probe, "value": value})["header"]
        revision = int(header["revision"])
        self._etcd_post("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    # -- HTTP helpers ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Response:
        """One request to the API server; returns the response whatever its status.

        Authenticates with the admin client certificate, or with `token` as a bearer token
        (the client certificate is then not sent).
        """
        url = self.url(path, params)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        context = self._token_ssl_context() if token is not None else self._admin_ssl()
        try:
            with urllib.request.urlopen(req, context=context, timeout=timeout) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, dict(err.headers.items()), err.read())

    @contextlib.contextmanager
    def stream(
        self,
        path: str,
        params: Mapping[str, str | int | bool] | None = None,
        *,
        timeout: float = 30,
    ) -> Iterator[Stream]:
        """A GET whose body is read incrementally (a watch); yields the open Stream.

        Yielded whatever its status, since a watch the server refuses outright answers
        4xx/5xx; `timeout` is the socket read timeout.
        """
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.apiserver_port, context=self._admin_ssl(), timeout=timeout
        )
        try:
            conn.request(
                "GET",
                self.url(path, params).removeprefix(self.server),
                headers={"Accept": "application/json"},
            )
            with conn.getresponse() as resp:
                yield Stream(resp)
        finally:
            conn.close()

    def url(self, path: str, params: Mapping[str, str | int | bool] | None = None) -> str:
        query = ""
        if params:
            query = "?" + urllib.parse.urlencode(
                {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
            )
        return f"{self.server}{path}{query}"

    def get(self, path: str, params: Mapping[str, str | int | bool] | None = None) -> Any:
        return self._ok("GET", path, params=params)

    def create_object(self, path: str, body: JSON) -> Any:
        """POST `body` to a collection path such as ``/api/v1/namespaces/ns/pods``."""
        return self._ok("POST", path, body)

    def patch(self, path: str, patch: JSON) -> Any:
        """A JSON merge patch (RFC 7386) of the object at `path`."""
        return self._ok("PATCH", path, patch, content_type="application/merge-patch+json")

    def patch_status(self, path: str, patch: JSON) -> Any:
        """A JSON merge patch of the status subresource of the object at `path` (Pod, Node)."""
        return self.patch(path.rstrip("/") + "/status", patch)

    def delete(self, path: str) -> Any:
        return self._ok("DELETE", path)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> Any:
        body: JSON = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        if labels:
            body["metadata"]["labels"] = dict(labels)
        return self.create_object("/api/v1/namespaces", body)

    def create_event(
        self,
        namespace: str,
        name: str,
        regarding: Mapping[str, str],
        reason: str,
        note: str,
        type: str = "Warning",
        series_count: int | None = None,
        *,
        action: str = "Testing",
        reporting_controller: str = "kube-event-watcher.e2e/recorder",
        reporting_instance: str = "e2e-recorder-1",
    ) -> JSON:
        """Create an events.k8s.io/v1 Event the way client-go's events recorder does.

        `regarding` is an ObjectReference (kind, namespace, name, uid, apiVersion, ...).
        With `series_count` (>= 2) the event is created already carrying a series.
        """
        now = rfc3339_micro()
        body: JSON = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "eventTime": now,
            "reportingController": reporting_controller,
            "reportingInstance": reporting_instance,
            "action": action,
            "reason": reason,
            "note": note,
            "type": type,
            "regarding": dict(regarding),
        }
        if series_count is not None:
            body["series"] = {"count": series_count, "lastObservedTime": now}
        event: JSON = self.create_object(
            f"/apis/events.k8s.io/v1/namespaces/{namespace}/events", body
        )
        return event

    def pod_warning(self, namespace: str, pod: str, reason: str, note: str = "x") -> str:
        """A Warning Event about Pod `pod` (a fresh Event name each time); its uid."""
        ref = {"kind": "Pod", "namespace": namespace, "name": pod, "apiVersion": "v1"}
        event = self.create_event(namespace, f"{pod}.{uuid.uuid4().hex[:8]}", ref, reason, note)
        return str(event["metadata"]["uid"])

    def update_event_series(self, namespace: str, name: str, count: int) -> JSON:
        """Record a repeat of an Event as a recorder does: set its ``series`` count and time."""
        event: JSON = self.patch(
            f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/{name}",
            {"series": {"count": count, "lastObservedTime": rfc3339_micro()}},
        )
        return event

    def create_service_account_token(
        self,
        namespace: str,
        service_account: str,
        audiences: list[str] | None = None,
        expiration_seconds: int = 3600,
    ) -> str:
        """A bound token for an existing ServiceAccount, from the TokenRequest API."""
        spec: JSON = {"expirationSeconds": expiration_seconds}
        if audiences is not None:
            spec["audiences"] = audiences
        result = self.create_object(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        token: str = result["status"]["token"]
        return token

    # -- internals -------------------------------------------------------------------------

    def _ok(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        resp = self.request(method, path, body, params=params, content_type=content_type)
        if resp.status >= 400:
            raise ApiError(method, path, resp.status, resp.body)
        return resp.json()

    def _etcd_args(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(self.bin_dir / "etcd"),
            "--name=e2e",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e2e={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            "--log-outputs=stderr",
        ]

    def _apiserver_args(self) -> list[str]:
        return [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # Since 1.37 the endpoint reconciler refuses a loopback advertise address; nothing
            # here needs the `kubernetes` Service's endpoints.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={self.pki.serving_cert}",
            f"--tls-private-key-file={self.pki.serving_key}",
            f"--client-ca-file={self.pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={self.pki.sa_public}",
            f"--service-account-signing-key-file={self.pki.sa_private}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            *(
                []
                if self.service_account_admission
                # No controller-manager creates a `default` ServiceAccount, so this admission
                # plugin would reject every Pod (envtest disables it too). PodSecurity stays on.
                else ["--disable-admission-plugins=ServiceAccount"]
            ),
            "--v=1",
        ]

    def _admin_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def _admin_ssl(self) -> ssl.SSLContext:
        if self._ssl is None:
            raise ControlPlaneError("the control plane is not started")
        return self._ssl

    def _token_ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def _etcd_post(self, path: str, body: JSON) -> JSON:
        req = urllib.request.Request(
            self.etcd_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                result: JSON = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            with err:
                raise ControlPlaneError(
                    f"etcd {path} failed: HTTP {err.code}: {err.read()[:500]!r}"
                ) from None
        return result

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        try:
            return self.request("GET", "/readyz", timeout=5).status == 200
        except OSError:
            return False

    def _wait(self, name: str, process: _Process, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if ready():
                return
            if not process.running:
                problem = f"{name} exited with code {process.returncode} before it was ready"
                break
            if time.monotonic() > deadline:
                problem = f"{name} was not ready within {self.ready_timeout:.0f}s"
                break
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{problem} (work dir {self.workdir}).\n"
            f"--- kube-apiserver log ({self.apiserver_log}) ---\n{tail(self.apiserver_log)}\n"
            f"--- etcd log ({self.etcd_log}) ---\n{tail(self.etcd_log)}"
        )

    def _write_kubeconfig(self) -> None:
        self.write_kubeconfig(self.kubeconfig, "admin", self.pki.admin_cert, self.pki.admin_key)

    def write_kubeconfig(self, path: Path, user: str, cert: Path, key: Path) -> None:
        """A kubeconfig (mode 0600) for this apiserver that authenticates with `cert`/`key`."""

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
                }
            ],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

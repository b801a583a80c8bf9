"""A fake kube-apiserver over real TLS on loopback, and kubeconfigs pointing at it.

Certificates come from the shared tests.support.tls. The server here is not the shared
ApiDouble because doctor needs what that double does not model: several identities (bearer
tokens and client-certificate CNs), SelfSubjectReview, SelfSubjectAccessReview with chosen
denials, discovery, /version, a watch that ends on time, and a forged `Date` header."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.conftest import write_kubeconfig as shared_write_kubeconfig
from tests.support.tls import Issued, TestCA

DAY = 86400.0


def days(n: float) -> dt.datetime:
    """A moment `n` days from now (negative: ago), for certificate validity bounds."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=n)


@dataclass
class Pki:
    ca: TestCA
    other_ca: TestCA
    server: Issued
    admin: Issued


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca = TestCA("test-cluster-ca")
    return Pki(
        ca=ca,
        other_ca=TestCA("some-other-ca"),
        # Far from expiry, so doctor's "renew soon" warning stays quiet in the healthy case.
        server=ca.issue("kube-apiserver", hosts=("kubernetes", "127.0.0.1"), not_after=days(30)),
        admin=ca.issue("admin", organization="system:masters", client=True, not_after=days(30)),
    )


@dataclass
class FakeApiServer:
    """The endpoints doctor needs. Identity comes from a bearer token or the client cert's CN;
    `denied` lists (verb, resource, namespace) the SelfSubjectAccessReview answers no to;
    `date` overrides the Date header (a server whose clock differs from ours)."""

    tokens: dict[str, str] = field(default_factory=dict)
    denied: set[tuple[str, str, str]] = field(default_factory=set)
    deny_all_for: set[str] = field(default_factory=set)
    date: float | None = None
    port: int = 0
    reviews: list[dict[str, Any]] = field(default_factory=list)

    def user(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self.tokens.get(auth[7:])
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        return str(value)
        return None

    def app(self) -> web.Application:
        @web.middleware
        async def auth(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.path != "/version" and self.user(request) is None:
                response: web.StreamResponse = web.json_response(
                    {
                        "kind": "Status",
                        "code": 401,
                        "reason": "Unauthorized",
                        "message": "Unauthorized",
                    },
                    status=401,
                )
            else:
                response = await handler(request)
            if self.date is not None:
                response.headers["Date"] = formatdate(self.date, usegmt=True)
            return response

        async def version(request: web.Request) -> web.Response:
            return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake"})

        async def whoami(request: web.Request) -> web.Response:
            user = self.user(request) or ""
            groups = ["system:masters"] if user == "admin" else ["system:serviceaccounts"]
            return web.json_response(
                {
                    "kind": "SelfSubjectReview",
                    "status": {"userInfo": {"username": user, "groups": groups}},
                },
                status=201,
            )

        async def access(request: web.Request) -> web.Response:
            body = await request.json()
            attrs = body["spec"]["resourceAttributes"]
            self.reviews.append(attrs)
            resource = f"{attrs.get('group', '')}/{attrs['resource']}".lstrip("/")
            key = (attrs["verb"], resource, attrs.get("namespace", ""))
            allowed = key not in self.denied and self.user(request) not in self.deny_all_for
            return web.json_response(
                {"kind": "SelfSubjectAccessReview", "status": {"allowed": allowed}}, status=201
            )

        async def discovery(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "kind": "APIResourceList",
                    "groupVersion": "events.k8s.io/v1",
                    "resources": [
                        {
                            "name": "events",
                            "namespaced": True,
                            "verbs": ["create", "get", "list", "watch"],
                        }
                    ],
                }
            )

        async def events(request: web.Request) -> web.StreamResponse:
            if request.query.get("watch"):
                response = web.StreamResponse()
                response.content_type = "application/json"
                await response.prepare(request)
                await response.write(
                    b'{"type":"BOOKMARK","object":{"kind":"Event",'
                    b'"metadata":{"resourceVersion":"101"}}}\n'
                )
                return response
            return web.json_response(
                {"kind": "EventList", "metadata": {"resourceVersion": "100"}, "items": []}
            )

        app = web.Application(middlewares=[auth])
        app.router.add_get("/version", version)
        app.router.add_post("/apis/authentication.k8s.io/v1/selfsubjectreviews", whoami)
        app.router.add_post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", access)
        app.router.add_get("/apis/events.k8s.io/v1", discovery)
        app.router.add_get("/apis/events.k8s.io/v1/events", events)
        app.router.add_get("/apis/events.k8s.io/v1/namespaces/{ns}/events", events)
        return app


StartServer = Callable[..., Awaitable[FakeApiServer]]


@pytest.fixture
async def start_apiserver(pki: Pki, tmp_path: Path) -> AsyncIterator[StartServer]:
    runners: list[web.AppRunner] = []

    async def start(serving: Issued | None = None, **options: Any) -> FakeApiServer:
        fake = FakeApiServer(**options)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert_path, key_path = (serving or pki.server).write(tmp_path, f"serving{len(runners)}")
        context.load_cert_chain(cert_path, key_path)
        context.load_verify_locations(cadata=pki.ca.cert_pem.decode())
        context.verify_mode = ssl.CERT_OPTIONAL  # kube-apiserver asks for, not requires, one
        runner = web.AppRunner(fake.app(), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        runners.append(runner)
        fake.port = runner.addresses[0][1]
        return fake

    yield start
    for runner in runners:
        await runner.cleanup()


WriteKubeconfig = Callable[..., Path]


@pytest.fixture
def kubeconfig_for(pki: Pki, tmp_path: Path) -> WriteKubeconfig:
    """`kubeconfig_for(server, ca=, user=, tls_server_name=)`: a new kubeconfig file for
    `server` (a port on 127.0.0.1, or a whole URL); it trusts the test CA and signs in with
    the admin client certificate unless `ca` (PEM) or `user` (a kubeconfig user) say
    otherwise, and sets `tls-server-name` when a case needs it."""
    written = itertools.count()

    def write(
        server: int | str,
        *,
        ca: bytes | None = None,
        user: dict[str, Any] | None = None,
        tls_server_name: str | None = None,
    ) -> Path:
        url = f"https://127.0.0.1:{server}" if isinstance(server, int) else server
        path = tmp_path / f"kc{next(written)}"
        shared_write_kubeconfig(path, url, ca or pki.ca.cert_pem, user or cert_user(pki.admin))
        if tls_server_name:
            doc = yaml.safe_load(path.read_text())
            doc["clusters"][0]["cluster"]["tls-server-name"] = tls_server_name
            path.write_text(yaml.safe_dump(doc))
        return path

    return write


def cert_user(issued: Issued) -> dict[str, str]:
    return {
        "client-certificate-data": base64.b64encode(issued.cert_pem).decode(),
        "client-key-data": base64.b64encode(issued.key_pem).decode(),
    }

"""A fake kube-apiserver over real TLS on loopback, certificates made with `cryptography`,
and kubeconfigs pointing at it: the fixtures for `doctor`'s tests."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DAY = 86400.0


@dataclass
class Issued:
    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path


def issue(
    common_name: str,
    *,
    issuer: Issued | None = None,
    ca: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    organization: str | None = None,
    not_before: float | None = None,
    not_after: float | None = None,
    client: bool = False,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attrs)
    now = time.time()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(not_before or now - DAY, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(not_after or now + 30 * DAY, dt.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
    if dns or ips:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    signer = issuer.key if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    return Issued(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert,
        key,
    )


@dataclass
class Pki:
    ca: Issued
    other_ca: Issued
    server: Issued
    admin: Issued


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca = issue("test-cluster-ca", ca=True)
    return Pki(
        ca=ca,
        other_ca=issue("some-other-ca", ca=True),
        server=issue("kube-apiserver", issuer=ca, dns=("kubernetes",), ips=("127.0.0.1",)),
        admin=issue("admin", issuer=ca, organization="system:masters", client=True),
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


def write_kubeconfig(
    path: Path,
    server: str,
    *,
    ca: bytes | None,
    user: dict[str, Any],
    tls_server_name: str | None = None,
) -> Path:
    cluster: dict[str, Any] = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "tester", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "tester"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def cert_user(issued: Issued) -> dict[str, str]:
    return {
        "client-certificate-data": base64.b64encode(issued.cert_pem).decode(),
        "client-key-data": base64.b64encode(issued.key_pem).decode(),
    }

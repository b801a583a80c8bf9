"""What `doctor` concludes from what it observed: facts in, findings and fixes out. No I/O.

Each function takes the facts one probe gathered (an errno, a certificate, an HTTP status,
"now") and returns a `Check` an operator can act on: what was seen and the next step.
"""

from __future__ import annotations

import errno as errno_codes
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import yaml

from kube_event_watcher.config.detectors import object_watch_rules
from kube_event_watcher.config.enrichment import EnrichmentConfig, RbacRule
from kube_event_watcher.kube.certificates import CertFacts

Status = Literal["ok", "warn", "fail", "skip"]
# A clock this far from the server's is worth a warning: tokens and certificates are checked
# against the server's time, and event timestamps are compared with ours.
SKEW_WARN_SECONDS = 30.0
CERT_RENEW_WARN_SECONDS = 14 * 86400.0
ROLE_NAME = "kube-event-watcher"

# OpenSSL X509_V_ERR_* codes that `ssl.SSLCertVerificationError.verify_code` carries.
X509_NOT_YET_VALID = 9
X509_EXPIRED = 10
X509_DEPTH_ZERO_SELF_SIGNED = 18
X509_SELF_SIGNED_IN_CHAIN = 19
X509_UNABLE_TO_GET_ISSUER_LOCALLY = 20
X509_UNABLE_TO_VERIFY_LEAF = 21
X509_HOSTNAME_MISMATCH = 62
X509_IP_MISMATCH = 64
_UNKNOWN_AUTHORITY = {
    X509_DEPTH_ZERO_SELF_SIGNED,
    X509_SELF_SIGNED_IN_CHAIN,
    X509_UNABLE_TO_GET_ISSUER_LOCALLY,
    X509_UNABLE_TO_VERIFY_LEAF,
    2,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
}

UNSAFE_LAST_RESORT = (
    "UNSAFE, last resort only, never in production: `insecure-skip-tls-verify: true` turns "
    "verification off, so anyone on the path can read and forge the event stream"
)


@dataclass(frozen=True, slots=True)
class Check:
    """One step's result: a status, a one-line summary, what was seen, and what to do."""

    scope: str
    step: str
    status: Status
    summary: str
    seen: tuple[str, ...] = ()
    fix: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


def human_duration(seconds: float) -> str:
    """`3d 4h`, `5m 2s`, `0s`: the two largest units of an absolute duration."""
    left = round(abs(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- 1. config source --------------------------------------------------------------------------


def explain_exec_failure(scope: str, command: Sequence[str], message: str) -> Check:
    program = command[0] if command else "?"
    return Check(
        scope,
        "config",
        "fail",
        f"the exec credential plugin {program!r} failed",
        seen=(f"plugin: {' '.join(command)}", f"its output: {message}"),
        fix=(
            f"run the plugin by hand to see the full error: {' '.join(command)}",
            "if it is not found, install it or put it on $PATH (a systemd unit has a short PATH: "
            "give the absolute path in the kubeconfig's users[].user.exec.command)",
            "if it needs a login (cloud CLI, OIDC), log in as the user the watcher runs as, "
            "or use a ServiceAccount token for unattended runs",
        ),
        data={"exec_command": list(command), "output": message},
    )


# --- 2. DNS and TCP ----------------------------------------------------------------------------


def explain_dns_failure(scope: str, host: str, error_number: int | None, message: str) -> Check:
    seen = (f"getaddrinfo({host!r}) failed: {message}",)
    if error_number == socket.EAI_AGAIN:
        summary = f"no DNS answer for {host} (temporary failure: the resolver is unreachable)"
        fix: tuple[str, ...] = (
            "check /etc/resolv.conf and that the DNS server answers (`getent hosts "
            f"{host}`); a VPN may need to be connected first",
        )
    else:
        summary = f"{host} does not resolve (no such name)"
        fix = (
            f"check the spelling of the server host in the kubeconfig (`{host}`)",
            "a private API endpoint's name may resolve only on the VPN or inside the VPC; "
            "connect it, or add the name to /etc/hosts for a bastion",
        )
    return Check(scope, "dns", "fail", summary, seen, fix, {"host": host, "errno": error_number})


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    """One TCP connect attempt to one resolved address."""

    address: str
    kind: Literal["ok", "refused", "timeout", "unreachable", "error"]
    seconds: float
    detail: str = ""


def connect_kind(exc: BaseException) -> Literal["refused", "timeout", "unreachable", "error"]:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in (
        errno_codes.ENETUNREACH,
        errno_codes.EHOSTUNREACH,
        errno_codes.EADDRNOTAVAIL,
    ):
        return "unreachable"
    return "error"


def explain_connect(
    scope: str, host: str, port: int, outcomes: Sequence[ConnectOutcome], timeout: float
) -> Check:
    seen = tuple(
        f"{o.address}:{port}: "
        + (f"connected in {o.seconds * 1000:.0f} ms" if o.kind == "ok" else o.kind)
        + (f" ({o.detail})" if o.detail and o.kind in ("unreachable", "error") else "")
        for o in outcomes
    )
    data = {"host": host, "port": port, "attempts": [o.address for o in outcomes]}
    if any(o.kind == "ok" for o in outcomes):
        failed = [o for o in outcomes if o.kind != "ok"]
        if failed:
            return Check(
                scope,
                "tcp",
                "warn",
                f"{host}:{port} reachable on some addresses only",
                seen,
                (
                    "the unreachable addresses slow every new connection; fix or remove them "
                    "from DNS (often IPv6 without a route)",
                ),
                data,
            )
        return Check(scope, "tcp", "ok", f"{host}:{port} accepts connections", seen, (), data)
    kinds = {o.kind for o in outcomes}
    if "refused" in kinds:
        summary = f"connection to {host}:{port} refused: nothing listens there"
        fix: tuple[str, ...] = (
            f"check the port in the kubeconfig's server URL (:{port}; kube-apiserver "
            "usually listens on 6443, managed clusters on 443)",
            "check the API server is running (`systemctl status kube-apiserver`, the static "
            "pod, or the cloud console) and that a load balancer in front has healthy backends",
        )
    elif "timeout" in kinds:
        summary = f"connection to {host}:{port} timed out after {human_duration(timeout)}"
        fix = (
            "packets are dropped on the way: a firewall, security group or an API server "
            "allow-list (authorized networks) does not admit this machine's address",
            "or the address is wrong / the VPN is down; try `nc -vz "
            f"{host} {port}` from this machine",
        )
    elif "unreachable" in kinds:
        summary = f"no route to {host}:{port}"
        fix = ("this machine has no route to that network: connect the VPN or check routing",)
    else:
        summary = f"cannot connect to {host}:{port}"
        fix = ("see the error above; check the server URL in the kubeconfig",)
    return Check(scope, "tcp", "fail", summary, seen, fix, data)


# --- 3. TLS ------------------------------------------------------------------------------------


def _describe_cert(label: str, cert: CertFacts) -> list[str]:
    return [
        f"{label}: subject {cert.subject}",
        f"{label}: issuer  {cert.issuer}",
        f"{label}: valid {iso(cert.not_before)} .. {iso(cert.not_after)}",
    ]


def name_in_sans(name: str, cert: CertFacts) -> bool:
    """RFC 6125 matching as OpenSSL does it: IPs against IP SANs, names against DNS SANs
    with a single left-most wildcard label."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None:
        return any(ipaddress.ip_address(a) == address for a in cert.ip_addresses)
    name = name.lower().rstrip(".")
    for pattern in (p.lower().rstrip(".") for p in cert.dns_names):
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def clock_skew(local_now: float, server_date: float | None) -> float | None:
    """Seconds our clock is ahead of the server's (negative: behind), from its `Date`."""
    return None if server_date is None else local_now - server_date


def skew_line(skew: float | None) -> str:
    if skew is None:
        return "the server sent no Date header, so the clock skew is unknown"
    if abs(skew) < 1:
        return "this machine's clock agrees with the server's Date header"
    direction = "ahead of" if skew > 0 else "behind"
    return f"this machine's clock is {human_duration(skew)} {direction} the server's Date header"


def _local_clock_wrong(scope: str, summary: str, seen: list[str], data: dict[str, Any]) -> Check:
    """The server certificate is valid by the server's clock but not by ours: ours is wrong."""
    fix = (
        "fix the time on this machine: enable NTP (`timedatectl set-ntp true`, "
        "chrony or systemd-timesyncd) and check `timedatectl status`"
    )
    return Check(scope, "tls", "fail", summary, tuple(seen), (fix,), data)


def _validity_check(
    scope: str,
    cert: CertFacts,
    local_now: float,
    server_date: float | None,
    seen: list[str],
    data: dict[str, Any],
) -> Check:
    skew = clock_skew(local_now, server_date)
    seen.append(f"local time {iso(local_now)}; " + skew_line(skew))
    data["skew_seconds"] = skew
    valid_at_server = server_date is not None and cert.not_before <= server_date <= cert.not_after
    if local_now < cert.not_before:
        data["case"] = "not_yet_valid"
        if valid_at_server:
            return _local_clock_wrong(
                scope,
                f"this machine's clock is {human_duration(skew or 0)} behind: the server "
                "certificate is not valid yet by our clock, but is by the server's",
                seen,
                data,
            )
        return Check(
            scope,
            "tls",
            "fail",
            f"the server certificate is not valid until {iso(cert.not_before)}",
            tuple(seen),
            (
                "the certificate was issued with a future start date, or the server's clock "
                "is also wrong; reissue it, and check NTP on the API server hosts",
            ),
            data,
        )
    data["case"] = "expired"
    if valid_at_server:
        return _local_clock_wrong(
            scope,
            f"this machine's clock is {human_duration(skew or 0)} ahead: the server "
            "certificate looks expired by our clock, but is valid by the server's",
            seen,
            data,
        )
    return Check(
        scope,
        "tls",
        "fail",
        f"the API server's certificate expired {human_duration(local_now - cert.not_after)} "
        f"ago ({iso(cert.not_after)})",
        tuple(seen),
        (
            "renew the API server's serving certificate (kubeadm: `kubeadm certs "
            "check-expiration`, then `kubeadm certs renew apiserver` and restart "
            "kube-apiserver); managed clusters rotate it themselves: contact the provider",
        ),
        data,
    )


def explain_tls_failure(
    scope: str,
    *,
    verify_code: int | None,
    verify_message: str,
    server_name: str,
    tls_server_name: str | None,
    presented: CertFacts | None,
    configured_cas: Sequence[CertFacts],
    ca_source: str,
    local_now: float,
    server_date: float | None,
) -> Check:
    """Why the verified handshake failed, from OpenSSL's code and the presented certificate."""
    seen = [f"verified handshake failed: {verify_message or 'certificate verify failed'}"]
    if presented is not None:
        seen += _describe_cert("presented", presented)
        if presented.sans:
            seen.append(f"presented: names (SANs) {', '.join(presented.sans)}")
    for ca in configured_cas:
        seen.append(f"configured CA ({ca_source}): subject {ca.subject}")
    if not configured_cas:
        seen.append(f"configured CA: {ca_source}")
    data: dict[str, Any] = {
        "verify_code": verify_code,
        "presented": _cert_json(presented),
        "configured_cas": [_cert_json(c) for c in configured_cas],
    }

    if verify_code in (X509_EXPIRED, X509_NOT_YET_VALID) and presented is not None:
        return _validity_check(scope, presented, local_now, server_date, seen, data)

    if verify_code in (X509_HOSTNAME_MISMATCH, X509_IP_MISMATCH):
        data["case"] = "name_mismatch"
        names = ", ".join(presented.sans) if presented and presented.sans else "(none)"
        checked = tls_server_name or server_name
        fix = [
            f"connect by a name the certificate lists ({names}): change the kubeconfig's "
            "clusters[].cluster.server to use it",
            "or keep the address and set clusters[].cluster.tls-server-name: <a listed name> "
            "(e.g. `kubernetes` or the load balancer's name), which is what is checked",
            "or reissue the API server certificate with this name added (kubeadm: "
            "--apiserver-cert-extra-sans)",
        ]
        return Check(
            scope,
            "tls",
            "fail",
            f"{checked!r} is not among the names in the API server's certificate",
            tuple(seen),
            tuple(fix),
            data,
        )

    if verify_code in _UNKNOWN_AUTHORITY or "unable to get local issuer" in verify_message:
        data["case"] = "unknown_authority"
        fix = [
            "put the CA that signed the API server's certificate into the kubeconfig: "
            "clusters[].cluster.certificate-authority-data (base64 PEM) or "
            "certificate-authority (a file path); for kubeadm it is /etc/kubernetes/pki/ca.crt",
            "fetch it from a working kubeconfig (`kubectl config view --raw --minify`) or the "
            "cluster's kube-root-ca.crt ConfigMap",
        ]
        same_name = presented is not None and any(
            ca.subject == presented.issuer for ca in configured_cas
        )
        if same_name:
            seen.append(
                "the configured CA has the issuer's name but a different key: the cluster's "
                "CA was probably regenerated (cluster rebuilt) since this kubeconfig was made"
            )
            fix.insert(0, "get a fresh kubeconfig for the rebuilt cluster")
        if presented is not None and presented.self_signed:
            seen.append("the presented certificate is self-signed")
        if ca_source.startswith("system"):
            fix.insert(
                0,
                "no certificate-authority is set, so the system trust store was used: a "
                "cluster CA is almost never in it; set certificate-authority-data",
            )
        fix.append(UNSAFE_LAST_RESORT)
        issuer = presented.issuer if presented else "an unknown issuer"
        return Check(
            scope,
            "tls",
            "fail",
            f"the server's certificate is signed by an authority we do not trust ({issuer})",
            tuple(seen),
            tuple(fix),
            data,
        )

    data["case"] = "other"
    return Check(
        scope,
        "tls",
        "fail",
        "the API server's certificate could not be verified",
        tuple(seen),
        ("compare the presented certificate with the configured CA above", UNSAFE_LAST_RESORT),
        data,
    )


def explain_client_cert(cert: CertFacts, local_now: float) -> tuple[Status, list[str], list[str]]:
    """A local look at the client certificate: expired, not yet valid, or near expiry."""
    seen = _describe_cert("client certificate", cert)
    fix: list[str] = []
    status: Status = "ok"
    renew = (
        "renew the client certificate and its kubeconfig (kubeadm: `kubeadm certs renew "
        "admin.conf` / `kubeadm kubeconfig user`; or sign a new CSR with the cluster CA)"
    )
    if local_now > cert.not_after:
        status = "fail"
        seen.append(
            f"the client certificate expired {human_duration(local_now - cert.not_after)}"
            " ago: the API server will reject it"
        )
        fix.append(renew)
    elif local_now < cert.not_before:
        status = "fail"
        seen.append("the client certificate is not valid yet (check this machine's clock)")
        fix.append("fix the clock (NTP) or reissue the certificate")
    elif cert.not_after - local_now < CERT_RENEW_WARN_SECONDS:
        status = "warn"
        seen.append(
            f"the client certificate expires in {human_duration(cert.not_after - local_now)}"
        )
        fix.append(renew)
    return status, seen, fix


def explain_client_rejected(
    scope: str, error: str, client: CertFacts | None, local_now: float
) -> Check:
    """The server aborted the TLS session over our client certificate (a handshake alert)."""
    seen = [f"the server ended the TLS session: {error}"]
    fix: list[str] = []
    if client is not None:
        _, more_seen, more_fix = explain_client_cert(client, local_now)
        seen += more_seen
        fix += more_fix
    fix.append(
        "the client certificate must be signed by a CA in the API server's --client-ca-file "
        "and be within its validity; get a fresh kubeconfig for this user"
    )
    return Check(
        scope,
        "tls",
        "fail",
        "the API server rejected our client certificate",
        tuple(seen),
        tuple(fix),
        {"case": "client_certificate_rejected", "client": _cert_json(client)},
    )


def _cert_json(cert: CertFacts | None) -> dict[str, Any] | None:
    if cert is None:
        return None
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "not_before": iso(cert.not_before),
        "not_after": iso(cert.not_after),
        "sans": list(cert.sans),
    }


# --- 4. who am I -------------------------------------------------------------------------------


def explain_whoami(scope: str, user_info: Mapping[str, Any]) -> Check:
    username = str(user_info.get("username") or "")
    groups = [str(g) for g in user_info.get("groups") or []]
    seen = (f"user: {username or '(none)'}", f"groups: {', '.join(groups) or '(none)'}")
    data = {"username": username, "groups": groups}
    if username == "system:anonymous":
        return Check(
            scope,
            "whoami",
            "fail",
            "the API server sees us as system:anonymous: no credentials were sent or accepted",
            seen,
            (
                "set a user with a token, client certificate or exec plugin in the kubeconfig "
                "context, or mount the ServiceAccount token in the pod",
            ),
            data,
        )
    return Check(scope, "whoami", "ok", f"authenticated as {username}", seen, (), data)


def explain_unauthorized(
    scope: str,
    *,
    auth_method: str,
    message: str,
    exec_command: Sequence[str],
    token_claims: Mapping[str, object],
    client: CertFacts | None,
    configured_cas: Sequence[CertFacts],
    local_now: float,
) -> Check:
    """A 401: the server did not accept the credential. Say which one and why it may be."""
    seen = [f"401 Unauthorized with auth method {auth_method}: {message or '(no message)'}"]
    fix: list[str] = []
    exp = token_claims.get("exp")
    if isinstance(exp, int | float):
        if exp < local_now:
            seen.append(
                f"the bearer token expired {human_duration(local_now - exp)} ago ({iso(exp)})"
            )
            fix.append(
                "get a new token (a ServiceAccount token: `kubectl create token NAME "
                "--duration=...`; a projected token is rotated by the kubelet)"
            )
        else:
            seen.append(f"the bearer token is valid until {iso(exp)} by this machine's clock")
    if token_claims.get("iss"):
        seen.append(f"token issuer: {token_claims['iss']}")
        fix.append(
            "a token from another cluster or a rotated service-account signing key is "
            "rejected too: check the issuer matches this cluster (--service-account-issuer)"
        )
    if exec_command:
        fix.append(
            f"the exec plugin's credential was rejected; run `{' '.join(exec_command)}` "
            "by hand, check its expirationTimestamp, and log in again"
        )
    if client is not None:
        status, more_seen, more_fix = explain_client_cert(client, local_now)
        seen += more_seen
        fix += more_fix
        if status == "ok":
            if configured_cas and not any(ca.subject == client.issuer for ca in configured_cas):
                seen.append(
                    f"the client certificate is issued by {client.issuer}, not by the "
                    "cluster CA; the server accepts only certificates signed by its "
                    "--client-ca-file"
                )
            fix.append(
                "sign the client certificate with the CA in the API server's "
                "--client-ca-file (for kubeadm the cluster CA)"
            )
    if "token" in auth_method and not fix:
        fix.append(
            "the token is unknown to this cluster (deleted ServiceAccount or Secret, "
            "wrong cluster): get a new one"
        )
    if not fix:
        fix.append(
            "check the user entry of the kubeconfig context; `kubectl auth whoami` "
            "with the same kubeconfig shows the same error"
        )
    return Check(
        scope,
        "whoami",
        "fail",
        "the API server rejected our credentials (401 Unauthorized)",
        tuple(seen),
        tuple(fix),
        {"status": 401, "auth_method": auth_method},
    )


# --- 5. RBAC -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessNeed:
    """One verb on one resource the loaded config needs; namespace None means cluster-wide."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    why: str
    subresource: str = ""

    @property
    def resource_name(self) -> str:
        full = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.group}/{full}" if self.group else full

    def review_body(self) -> dict[str, Any]:
        attributes: dict[str, str] = {
            "verb": self.verb,
            "group": self.group,
            "resource": self.resource,
        }
        if self.subresource:
            attributes["subresource"] = self.subresource
        if self.namespace:
            attributes["namespace"] = self.namespace
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }


_CLUSTER_SCOPED = {("", "nodes")}


def _section(sections: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = sections.get(name)
    return value if isinstance(value, Mapping) else None


def _enabled(section: Mapping[str, Any] | None, default: bool = True) -> bool:
    if section is None:
        return False
    return bool(section.get("enabled", default))


def required_access(
    sections: Mapping[str, Any],
    namespaces: Sequence[str | None],
    default_namespace: str,
) -> list[AccessNeed]:
    """Every verb the config needs, in every watched namespace (None = all namespaces).

    `sections` is the config as plain data (`Config.model_dump()`); the enrichment, ha and
    configmap-state sections are read when present, so this works before and after they exist.
    """
    needs: list[AccessNeed] = []
    scopes = list(dict.fromkeys(namespaces)) or [None]
    for ns in scopes:
        for verb in ("list", "watch"):
            needs.append(AccessNeed(verb, "events.k8s.io", "events", ns, "event source"))
    enrichment = _section(sections, "enrichment")
    rules: list[RbacRule] = []
    if enrichment is not None:
        # The enrichment section says itself which rules its enabled lookups need.
        enrich = EnrichmentConfig.model_validate(enrichment)
        rules += enrich.rbac_rules()
        if enrich.enabled and enrich.watch_objects:
            rules += object_watch_rules()
    detectors = _section(sections, "detectors")
    if _enabled(detectors, default=False) and not any("list" in r.verbs for r in rules):
        rules += object_watch_rules()
    for rule in rules:
        for resource in rule.resources:
            plural, _, sub = resource.partition("/")
            cluster_scoped = (rule.api_group, plural) in _CLUSTER_SCOPED
            for ns in [None] if cluster_scoped else scopes:
                for verb in rule.verbs:
                    needs.append(AccessNeed(verb, rule.api_group, plural, ns, rule.purpose, sub))
    ha = _section(sections, "ha")
    if _enabled(ha, default=False):
        assert ha is not None
        ns = str(ha.get("namespace") or default_namespace)
        for verb in ("get", "create", "update"):
            needs.append(AccessNeed(verb, "coordination.k8s.io", "leases", ns, "ha: leader lease"))
    state = _section(sections, "state")
    if state is not None and state.get("backend") == "configmap":
        ns = str(state.get("namespace") or default_namespace)
        for verb in ("get", "create", "update"):
            needs.append(AccessNeed(verb, "", "configmaps", ns, "state: ConfigMap store"))
    return needs


def _subject(username: str, default_namespace: str) -> dict[str, str]:
    parts = username.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return {"kind": "ServiceAccount", "name": parts[3], "namespace": parts[2]}
    if username and username != "system:anonymous":
        return {"kind": "User", "name": username, "apiGroup": "rbac.authorization.k8s.io"}
    return {"kind": "ServiceAccount", "name": ROLE_NAME, "namespace": default_namespace}


def _rules(needs: Iterable[AccessNeed]) -> list[dict[str, Any]]:
    verbs: dict[tuple[str, str], set[str]] = {}
    for need in needs:
        resource = f"{need.resource}/{need.subresource}" if need.subresource else need.resource
        verbs.setdefault((need.group, resource), set()).add(need.verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(v)}
        for (group, resource), v in sorted(verbs.items())
    ]


def rbac_snippet(denied: Sequence[AccessNeed], username: str, default_namespace: str) -> str:
    """Ready-to-apply YAML granting exactly what was denied: a ClusterRole for cluster-wide
    needs and cluster-scoped resources, a Role per namespace for the rest, with bindings."""
    subject = _subject(username, default_namespace)
    cluster_wide = [
        n for n in denied if n.namespace is None or (n.group, n.resource) in _CLUSTER_SCOPED
    ]
    by_namespace: dict[str, list[AccessNeed]] = {}
    for need in denied:
        if need not in cluster_wide and need.namespace is not None:
            by_namespace.setdefault(need.namespace, []).append(need)
    docs: list[dict[str, Any]] = []
    if cluster_wide:
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": ROLE_NAME},
                "rules": _rules(cluster_wide),
            }
        )
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": ROLE_NAME},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": ROLE_NAME,
                },
                "subjects": [subject],
            }
        )
    for ns, needs in sorted(by_namespace.items()):
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": ROLE_NAME, "namespace": ns},
                "rules": _rules(needs),
            }
        )
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": ROLE_NAME, "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": ROLE_NAME,
                },
                "subjects": [subject],
            }
        )
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=None)


@dataclass(frozen=True, slots=True)
class AccessAnswer:
    need: AccessNeed
    allowed: bool
    reason: str = ""


def explain_rbac(
    scope: str, answers: Sequence[AccessAnswer], username: str, default_namespace: str
) -> Check:
    rows: list[dict[str, Any]] = [
        {
            "verb": a.need.verb,
            "resource": a.need.resource_name,
            "namespace": a.need.namespace or "(all)",
            "allowed": a.allowed,
            "why": a.need.why,
        }
        for a in answers
    ]
    denied = [a.need for a in answers if not a.allowed]
    table = _table(
        ("verb", "resource", "namespace", "allowed", "needed for"),
        [
            (
                a.need.verb,
                a.need.resource_name,
                a.need.namespace or "(all)",
                "yes" if a.allowed else "DENIED",
                a.need.why,
            )
            for a in answers
        ],
    )
    if not denied:
        return Check(
            scope,
            "rbac",
            "ok",
            f"all {len(answers)} permissions the config needs are granted",
            tuple(table),
            (),
            {"checks": rows},
        )
    snippet = rbac_snippet(denied, username, default_namespace)
    return Check(
        scope,
        "rbac",
        "fail",
        f"{len(denied)} of {len(answers)} permissions the config needs are denied",
        tuple(table),
        (
            f"grant them to {username or 'this identity'}: save this as rbac-fix.yaml and "
            "run `kubectl apply -f rbac-fix.yaml` as a cluster admin:",
            snippet,
        ),
        {"checks": rows, "snippet": snippet},
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


# --- 7. receivers -----------------------------------------------------------------------------


def explain_receiver_tls(
    scope: str, masked_url: str, verify_message: str, error: str, presented: CertFacts | None
) -> Check:
    seen = [f"{masked_url}: {verify_message or error}"]
    if presented is not None:
        seen += _describe_cert("presented", presented)
    return Check(
        scope,
        "receiver",
        "fail",
        f"TLS to {masked_url} failed",
        tuple(seen),
        (
            "a TLS-intercepting proxy or a private CA signs this endpoint: add its CA to the "
            "system trust store (update-ca-certificates) or point SSL_CERT_FILE at a bundle "
            "that has it",
        ),
        {"url": masked_url},
    )


# --- output ------------------------------------------------------------------------------------

_MARK: dict[Status, str] = {"ok": "[ ok ]", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}


def render_text(checks: Sequence[Check]) -> str:
    """A readable checklist: one line per step, what was seen, and a fix under each problem."""
    out: list[str] = []
    scope = None
    for check in checks:
        if check.scope != scope:
            scope = check.scope
            out.append(("\n" if out else "") + f"== {scope}")
        out.append(f"{_MARK[check.status]} {check.step:<8} {check.summary}")
        for line in check.seen:
            out.append(f"         {line}")
        if check.status in ("fail", "warn") and check.fix:
            for item in check.fix:
                lines = item.rstrip("\n").split("\n")
                if len(lines) > 1:  # a YAML snippet: indent it as a block
                    out.extend(f"             {line}" for line in lines)
                else:
                    out.append(f"    fix: {item}")
    counts = {s: sum(1 for c in checks if c.status == s) for s in _MARK}
    out.append(
        f"\n{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed, "
        f"{counts['skip']} skipped"
    )
    return "\n".join(out) + "\n"


def render_json(checks: Sequence[Check]) -> str:
    doc = {
        "ok": not any(c.status == "fail" for c in checks),
        "checks": [
            {
                "scope": c.scope,
                "step": c.step,
                "status": c.status,
                "summary": c.summary,
                "seen": list(c.seen),
                "fix": list(c.fix),
                "data": dict(c.data),
            }
            for c in checks
        ],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def exit_code(checks: Sequence[Check]) -> int:
    return 1 if any(c.status == "fail" for c in checks) else 0

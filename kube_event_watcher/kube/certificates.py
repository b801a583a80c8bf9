"""X.509 facts for `doctor`: what a certificate says, parsed with `cryptography`, no I/O.

The standard `ssl` module only parses certificates it has verified; to explain *why* one
failed we must read the one the server presented without trusting it, and the configured CA.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson
from cryptography import x509
from cryptography.x509.oid import ExtensionOID


@dataclass(frozen=True, slots=True)
class CertFacts:
    """The fields an operator compares when a TLS handshake fails."""

    subject: str
    issuer: str
    not_before: float
    not_after: float
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    is_ca: bool = False
    subject_key_id: str = ""
    authority_key_id: str = ""

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer

    @property
    def sans(self) -> tuple[str, ...]:
        return (*(f"DNS:{n}" for n in self.dns_names), *(f"IP:{a}" for a in self.ip_addresses))


def cert_facts(cert: x509.Certificate) -> CertFacts:
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    is_ca = False
    ski = aki = ""
    for ext in cert.extensions:
        value = ext.value
        if ext.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME and isinstance(
            value, x509.SubjectAlternativeName
        ):
            dns = tuple(value.get_values_for_type(x509.DNSName))
            ips = tuple(str(a) for a in value.get_values_for_type(x509.IPAddress))
        elif isinstance(value, x509.BasicConstraints):
            is_ca = value.ca
        elif isinstance(value, x509.SubjectKeyIdentifier):
            ski = value.digest.hex()
        elif isinstance(value, x509.AuthorityKeyIdentifier) and value.key_identifier:
            aki = value.key_identifier.hex()
    return CertFacts(
        subject=cert.subject.rfc4514_string() or "(empty subject)",
        issuer=cert.issuer.rfc4514_string() or "(empty issuer)",
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        dns_names=dns,
        ip_addresses=ips,
        is_ca=is_ca,
        subject_key_id=ski,
        authority_key_id=aki,
    )


def facts_from_der(der: bytes) -> CertFacts | None:
    try:
        return cert_facts(x509.load_der_x509_certificate(der))
    except ValueError:
        return None


def facts_from_pem(pem: bytes) -> list[CertFacts]:
    """Every certificate in a PEM bundle (a CA file may hold several)."""
    try:
        return [cert_facts(c) for c in x509.load_pem_x509_certificates(pem)]
    except ValueError:
        return []


def token_claims(token: str) -> dict[str, object]:
    """The non-secret claims of a JWT bearer token (exp, iat, nbf, iss, sub), unverified.

    Only to explain a 401 ("your token expired 3h ago"); the signature is the server's job.
    An opaque (non-JWT) token gives {}."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    if not isinstance(claims, dict):
        return {}
    return {k: claims[k] for k in ("exp", "iat", "nbf", "iss", "sub") if k in claims}

#!/usr/bin/env python3
"""Throwaway test PKI for chatsvc's integration tests.

Writes into OUTDIR (created if missing):

    ca.pem / ca.key                    test CA (self-signed), trusted by test servers
    server.pem / server.key            server cert signed by the CA; SANs: DNS:localhost,
                                       IP:127.0.0.1, IP:::1, DNS:<--cn-server> and any --san;
                                       EKU serverAuth + clientAuth
    client.pem / client.key            client cert, CN=chatsvc-test-client, signed by the CA
    client-encrypted.key               the same client key, PKCS#8 encrypted with the password
    client-key-password.txt            ... stored here (no trailing newline): "test-pass"
    untrusted-ca.pem / untrusted-ca.key      a second CA that nothing trusts
    untrusted-client.pem / untrusted-client.key
                                       client cert (CN=chatsvc-untrusted-client) signed by
                                       the untrusted CA -- a TLS server requiring client
                                       certs from ca.pem must reject it

Certificates are leaf-only PEM (no chain); private keys are unencrypted PKCS#8 PEM
(mode 0600) except client-encrypted.key. Keys are EC P-256 by default (--key-type rsa
for RSA 2048). Certificates are valid for --days (default 10) from one hour ago.

Idempotent: when every file is present, the chain verifies, keys match their certs,
the server cert carries the requested names and nothing expires within a day, the
files are left alone (exit 0, "up to date"). Otherwise -- or with --force -- the whole
set is regenerated, so clients never see a mix of old and new files.

Usage:
    python scripts/testca.py OUTDIR [--cn-server NAME] [--san DNS:x|IP:y ...]
                                    [--days N] [--key-type ec|rsa] [--force] [--quiet]

Needs only the `cryptography` package. Used by scripts/kafka (Kafka SSL listener) and
meant for reuse by other TLS tests (gRPC mTLS, nginx TLS, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_CN = "chatsvc-test-client"
UNTRUSTED_CLIENT_CN = "chatsvc-untrusted-client"
KEY_PASSWORD = "test-pass"
ORG = "chatsvc test"

CERT_FILES = ("ca.pem", "server.pem", "client.pem", "untrusted-ca.pem", "untrusted-client.pem")
KEY_FILES = ("ca.key", "server.key", "client.key", "untrusted-ca.key", "untrusted-client.key")
ALL_FILES = CERT_FILES + KEY_FILES + ("client-encrypted.key", "client-key-password.txt")

DEFAULT_SANS = ("DNS:localhost", "IP:127.0.0.1", "IP:::1")

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key(key_type: str) -> Key:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _parse_san(entry: str) -> x509.GeneralName:
    kind, _, value = entry.partition(":")
    kind = kind.upper()
    if kind == "DNS" and value:
        return x509.DNSName(value)
    if kind == "IP" and value:
        return x509.IPAddress(ipaddress.ip_address(value))
    raise ValueError(f"bad SAN {entry!r}: expected DNS:name or IP:address")


def _sans(cn_server: str, extra: list[str]) -> list[x509.GeneralName]:
    entries = [*DEFAULT_SANS, f"DNS:{cn_server}", *extra]
    out: list[x509.GeneralName] = []
    for e in entries:
        g = _parse_san(e)
        if g not in out:
            out.append(g)
    return out


def _make_ca(cn: str, key: Key, days: int) -> x509.Certificate:
    now = _now()
    pub = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(key, hashes.SHA256())
    )


def _make_leaf(
    cn: str,
    key: Key,
    ca_cert: x509.Certificate,
    ca_key: Key,
    days: int,
    sans: list[x509.GeneralName] | None,
    server: bool,
) -> x509.Certificate:
    now = _now()
    pub = key.public_key()
    ekus = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        ekus.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Key, password: str | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    pem: bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    return pem


def _write(path: Path, data: bytes, private: bool) -> None:
    """Write atomically (temp file + rename) so readers never see a torn file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check(outdir: Path, cn_server: str, extra_sans: list[str], key_type: str) -> str | None:
    """Return None if OUTDIR holds a complete, consistent, fresh set; else the reason."""
    missing = [f for f in ALL_FILES if not (outdir / f).is_file()]
    if missing:
        return "missing " + ", ".join(missing)
    try:
        certs = {f: x509.load_pem_x509_certificate((outdir / f).read_bytes()) for f in CERT_FILES}
        keys = {f: serialization.load_pem_private_key((outdir / f).read_bytes(), None) for f in KEY_FILES}
        password = (outdir / "client-key-password.txt").read_bytes().strip()
        enc_key = serialization.load_pem_private_key((outdir / "client-encrypted.key").read_bytes(), password)
    except Exception as e:  # any parse failure means regenerate
        return f"unreadable file ({e})"

    def pub(obj: x509.Certificate | PrivateKeyTypes) -> bytes:
        der: bytes = obj.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return der

    for c, k in zip(CERT_FILES, KEY_FILES, strict=True):
        if pub(certs[c]) != pub(keys[k]):
            return f"{k} does not match {c}"
    if pub(enc_key) != pub(keys["client.key"]):
        return "client-encrypted.key does not match client.key"
    try:
        for leaf, issuer in (
            ("ca.pem", "ca.pem"),
            ("server.pem", "ca.pem"),
            ("client.pem", "ca.pem"),
            ("untrusted-ca.pem", "untrusted-ca.pem"),
            ("untrusted-client.pem", "untrusted-ca.pem"),
        ):
            certs[leaf].verify_directly_issued_by(certs[issuer])
    except Exception as e:
        return f"chain does not verify ({e})"
    want_cls = rsa.RSAPrivateKey if key_type == "rsa" else ec.EllipticCurvePrivateKey
    if not all(isinstance(k, want_cls) for k in keys.values()):
        return f"keys are not {key_type}"
    soon = _now() + dt.timedelta(days=1)
    for name, cert in certs.items():
        if cert.not_valid_after_utc <= soon:
            return f"{name} expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    try:
        have = certs["server.pem"].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "server.pem has no SAN"
    want = _sans(cn_server, extra_sans)
    if any(g not in have for g in want):
        return "server.pem lacks requested SANs"
    cn = certs["server.pem"].subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != cn_server:
        return "server.pem CN differs from --cn-server"
    return None


def generate(outdir: Path, cn_server: str, extra_sans: list[str], days: int, key_type: str) -> None:
    ca_key = _new_key(key_type)
    ca = _make_ca("chatsvc test CA", ca_key, days)
    server_key = _new_key(key_type)
    server = _make_leaf(cn_server, server_key, ca, ca_key, days, _sans(cn_server, extra_sans), True)
    client_key = _new_key(key_type)
    client = _make_leaf(CLIENT_CN, client_key, ca, ca_key, days, None, False)
    uca_key = _new_key(key_type)
    uca = _make_ca("chatsvc untrusted test CA", uca_key, days)
    uclient_key = _new_key(key_type)
    uclient = _make_leaf(UNTRUSTED_CLIENT_CN, uclient_key, uca, uca_key, days, None, False)

    files: list[tuple[str, bytes, bool]] = [
        ("ca.key", _key_pem(ca_key), True),
        ("ca.pem", _cert_pem(ca), False),
        ("server.key", _key_pem(server_key), True),
        ("server.pem", _cert_pem(server), False),
        ("client.key", _key_pem(client_key), True),
        ("client.pem", _cert_pem(client), False),
        ("client-encrypted.key", _key_pem(client_key, KEY_PASSWORD), True),
        ("client-key-password.txt", KEY_PASSWORD.encode(), True),
        ("untrusted-ca.key", _key_pem(uca_key), True),
        ("untrusted-ca.pem", _cert_pem(uca), False),
        ("untrusted-client.key", _key_pem(uclient_key), True),
        ("untrusted-client.pem", _cert_pem(uclient), False),
    ]
    for name, data, private in files:
        _write(outdir / name, data, private)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Generate a throwaway test CA, server/client certs and an untrusted "
        "client into OUTDIR (idempotent).",
        epilog="See the module docstring for the list of files written.",
    )
    p.add_argument("outdir", type=Path)
    p.add_argument(
        "--cn-server",
        default="localhost",
        help="server cert CN, also added as a DNS SAN (default: localhost)",
    )
    p.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="DNS:x|IP:y",
        help="extra server SAN (repeatable)",
    )
    p.add_argument("--days", type=int, default=10, help="validity in days (default: 10)")
    p.add_argument(
        "--key-type",
        choices=("ec", "rsa"),
        default="ec",
        help="ec = P-256 (default), rsa = RSA 2048",
    )
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)

    try:
        for s in a.san:
            _parse_san(s)
    except ValueError as e:
        p.error(str(e))
    if a.days < 2:
        p.error("--days must be at least 2")

    outdir: Path = a.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    reason = "--force" if a.force else check(outdir, a.cn_server, a.san, a.key_type)
    if reason is None:
        if not a.quiet:
            print(f"testca: {outdir} up to date")
        return 0
    generate(outdir, a.cn_server, a.san, a.days, a.key_type)
    if not a.quiet:
        print(f"testca: generated test PKI in {outdir} ({reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""deploy/certs/gen-certs.sh, the docker-compose PKI init service, run for real.

It must produce a CA, a broker certificate for the names compose uses, and a client
certificate that the broker accepts in a mutual-TLS handshake; keep keys private; leave
a valid set alone on the next run; and never keep the CA key.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.deploy.support import REPO

SCRIPT = REPO / "deploy" / "certs" / "gen-certs.sh"


def run(tmp: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PKI_BROKER_DIR": str(tmp / "broker"),
        "PKI_CLIENT_DIR": str(tmp / "chatsvc"),
        "PKI_EDGE_DIR": str(tmp / "edge"),
        **extra,
    }
    proc = subprocess.run(
        ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_makes_a_ca_broker_client_and_edge_certificate(tmp_path: Path) -> None:
    run(tmp_path)
    broker, client, edge = tmp_path / "broker", tmp_path / "chatsvc", tmp_path / "edge"
    assert sorted(p.name for p in broker.iterdir()) == ["broker.key", "broker.pem", "ca.pem"]
    assert sorted(p.name for p in client.iterdir()) == ["ca.pem", "client.key", "client.pem"]
    assert sorted(p.name for p in edge.iterdir()) == ["ca.pem", "server.key", "server.pem"]
    assert not list(tmp_path.rglob("ca.key")), "the CA key must not outlive the run"
    for key in (broker / "broker.key", client / "client.key", edge / "server.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o400
    if os.geteuid() == 0:
        assert (broker / "broker.key").stat().st_uid == 101  # redpanda in its image
        assert (client / "client.key").stat().st_uid == 10001  # chatsvc in ours

    names = cert(broker / "broker.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert {"redpanda", "localhost"} <= set(names.value.get_values_for_type(x509.DNSName))
    usage = cert(client / "client.pem").extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    common_names = cert(client / "client.pem").subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [a.value for a in common_names] == ["chatsvc"]  # the Kafka principal


def test_the_broker_accepts_the_client_certificate_in_mutual_tls(tmp_path: Path) -> None:
    run(tmp_path)
    broker, client = tmp_path / "broker", tmp_path / "chatsvc"
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(broker / "ca.pem"))
    server_ctx.load_cert_chain(broker / "broker.pem", broker / "broker.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(client / "ca.pem"))
    client_ctx.load_cert_chain(client / "client.pem", client / "client.key")

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peer: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            peer["cert"] = tls.getpeercert()
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_ctx.wrap_socket(raw, server_hostname="redpanda") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    listener.close()
    subject = dict(item[0] for item in peer["cert"]["subject"])  # type: ignore[index]
    assert subject["commonName"] == "chatsvc"


def test_a_valid_set_is_left_alone_and_force_renews_it(tmp_path: Path) -> None:
    run(tmp_path)
    ca = (tmp_path / "broker" / "ca.pem").read_bytes()
    again = run(tmp_path)
    assert "up to date" in again.stderr
    assert (tmp_path / "broker" / "ca.pem").read_bytes() == ca
    run(tmp_path, FORCE="1")
    renewed = (tmp_path / "broker" / "ca.pem").read_bytes()
    assert renewed != ca
    assert (
        (tmp_path / "chatsvc" / "ca.pem").read_bytes()
        == renewed
        == (tmp_path / "edge" / "ca.pem").read_bytes()
    )

"""The one place TLS contexts are built: for the HTTPS listener and for every client
connection chatsvc makes (Kafka, ScyllaDB).

Every context requires TLS 1.2 or later. A client context verifies the server's chain and
host name, against ``ca_cert`` or else the system's CAs, and offers a client certificate
when one is given. gRPC takes PEM bytes rather than a context (chatsvc.admin), so it is
not built here. Errors (unreadable files, a key not matching its certificate, a wrong
password) are ``OSError``/``ssl.SSLError``/``ValueError``: each caller names its own
variables when it reports them.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from chatsvc.settings import Secret


def tls_context(
    *,
    server: bool = False,
    ca_cert: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    key_password: Secret | None = None,
) -> ssl.SSLContext:
    """A context for a TLS server (``server=True``: ``cert`` and ``key`` required) or client.

    For a server, ``ca_cert`` (if given) makes it mutual TLS: clients must present a
    certificate that CA signed.
    """
    if server:
        if cert is None or key is None:
            raise ValueError("a TLS server needs a certificate and its key")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_cert is not None:
        context.load_verify_locations(cafile=str(ca_cert))
        if server:  # mutual TLS: a client without a certificate from ca_cert is refused
            context.verify_mode = ssl.CERT_REQUIRED
    elif not server:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None and key is not None:
        password = key_password.reveal() if key_password is not None else None
        context.load_cert_chain(str(cert), str(key), password=password)
    return context

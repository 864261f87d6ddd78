"""The origin check for browser handshakes: same origin plus an explicit allow-list.

Same origin honours ``X-Forwarded-Proto``/``X-Forwarded-Host`` so that a deployment behind
a TLS-terminating Ingress accepts its own public web origin. Never ``*`` unless configured.
"""

from __future__ import annotations

from typing import Any


def _first(value: str) -> str:
    return value.split(",", maxsplit=1)[0].strip()


class OriginPolicy:
    """Callable given to Engine.IO as ``cors_allowed_origins``."""

    def __init__(self, allowed: tuple[str, ...], *, scheme: str = "http") -> None:
        self._any = "*" in allowed
        self._allowed = frozenset(o.lower() for o in allowed if o != "*")
        # Our own scheme: "https" when serving TLS directly. Engine.IO's aiohttp driver puts
        # X-Forwarded-Proto or else "http" in wsgi.url_scheme, whatever the socket is.
        self._scheme = scheme

    def same_origins(self, environ: dict[str, Any]) -> set[str]:
        """The origins this request would have if it came from our own page."""
        host = environ.get("HTTP_HOST")
        scheme = self._scheme
        if not host:
            return set()
        origins = {f"{scheme}://{host}".lower()}
        fwd_proto = environ.get("HTTP_X_FORWARDED_PROTO")
        fwd_host = environ.get("HTTP_X_FORWARDED_HOST")
        if fwd_proto or fwd_host:
            proto = _first(fwd_proto) if fwd_proto else scheme
            fhost = _first(fwd_host) if fwd_host else host
            origins.add(f"{proto}://{fhost}".lower())
            for default_port, prefix in ((":443", "https://"), (":80", "http://")):
                if fhost.endswith(default_port) and proto + "://" == prefix:
                    origins.add(f"{proto}://{fhost[: -len(default_port)]}".lower())
        return origins

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return True
        if self._any:
            return True
        origin = origin.lower()
        return origin in self._allowed or origin in self.same_origins(environ)

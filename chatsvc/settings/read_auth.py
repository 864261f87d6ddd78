"""Reading how tokens are verified: an HMAC secret, a public key file or an identity
provider's JWKS (``CHATSVC_JWT_*``), and the development secret kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from chatsvc.settings.model import (
    JWT_HMAC_ALGORITHMS,
    JWT_JWKS_ALGORITHMS,
    JWT_PUBLIC_KEY_ALGORITHMS,
    JwtSettings,
    Secret,
)
from chatsvc.settings.reader import EnvReader, SettingsError


def read_jwt(env: EnvReader, environment: str, data_dir: Path) -> JwtSettings:
    """``CHATSVC_JWT_*``: exactly one of a JWKS URL, a public key file or an HMAC secret, the
    algorithms that fit it; in development without any, a secret kept in ``data_dir``."""
    secret = env.secret("CHATSVC_JWT_SECRET")
    public_key = env.readable_file("CHATSVC_JWT_PUBLIC_KEY")
    jwks_url = env.optional("CHATSVC_JWT_JWKS_URL")
    if jwks_url is not None:
        return _jwks(env, jwks_url, environment, secret is not None or public_key is not None)
    if secret is not None and public_key is not None:
        raise SettingsError(
            "CHATSVC_JWT_PUBLIC_KEY",
            "set either CHATSVC_JWT_SECRET (HMAC) or CHATSVC_JWT_PUBLIC_KEY (RSA/EC), not both",
        )
    default_algorithms = "RS256,ES256" if public_key else "HS256"
    algorithms = env.items("CHATSVC_JWT_ALGORITHMS") or tuple(default_algorithms.split(","))
    allowed = JWT_PUBLIC_KEY_ALGORITHMS if public_key else JWT_HMAC_ALGORITHMS
    wrong = [a for a in algorithms if a not in allowed]
    if wrong:
        kind = "a public key" if public_key else "an HMAC secret"
        raise SettingsError(
            "CHATSVC_JWT_ALGORITHMS",
            f"{', '.join(wrong)} cannot be used with {kind}; allowed: {', '.join(sorted(allowed))}",
        )
    if secret is not None and len(secret.reveal()) < 32:
        raise SettingsError("CHATSVC_JWT_SECRET", "must be at least 32 characters")
    generated = False
    if secret is None and public_key is None:
        if environment == "production":
            raise SettingsError(
                "CHATSVC_JWT_SECRET",
                "production needs CHATSVC_JWT_SECRET or CHATSVC_JWT_PUBLIC_KEY",
            )
        secret = Secret(_dev_secret(data_dir))
        generated = True
    return JwtSettings(
        secret=secret,
        public_key_file=public_key,
        algorithms=algorithms,
        issuer=env.optional("CHATSVC_JWT_ISSUER"),
        audience=env.optional("CHATSVC_JWT_AUDIENCE"),
        leeway_seconds=env.number("CHATSVC_JWT_LEEWAY", 0.0),
        dev_secret_generated=generated,
    )


def _jwks(env: EnvReader, url: str, environment: str, other_key: bool) -> JwtSettings:
    """Keys from an identity provider's JWKS instead of a secret or a PEM file."""
    if other_key:
        raise SettingsError(
            "CHATSVC_JWT_JWKS_URL",
            "set one of CHATSVC_JWT_JWKS_URL, CHATSVC_JWT_PUBLIC_KEY or CHATSVC_JWT_SECRET",
        )
    _validate_jwks_url(url, environment)
    algorithms = env.items("CHATSVC_JWT_ALGORITHMS") or JWT_JWKS_ALGORITHMS
    wrong = [a for a in algorithms if a not in JWT_JWKS_ALGORITHMS]
    if wrong:
        raise SettingsError(
            "CHATSVC_JWT_ALGORITHMS",
            f"{', '.join(wrong)} cannot be used with a JWKS; allowed: {', '.join(JWT_JWKS_ALGORITHMS)}",
        )
    interval = env.number("CHATSVC_JWT_JWKS_MIN_INTERVAL", 30.0, minimum=1.0)
    if interval > 3600:
        raise SettingsError("CHATSVC_JWT_JWKS_MIN_INTERVAL", f"at most 3600 seconds, got {interval:g}")
    return JwtSettings(
        secret=None,
        public_key_file=None,
        algorithms=algorithms,
        issuer=env.optional("CHATSVC_JWT_ISSUER"),
        audience=env.optional("CHATSVC_JWT_AUDIENCE"),
        leeway_seconds=env.number("CHATSVC_JWT_LEEWAY", 0.0),
        jwks_url=url,
        jwks_min_interval_seconds=interval,
    )


def _validate_jwks_url(url: str, environment: str) -> None:
    """https, or http to a loopback host in development (a local test provider)."""
    parsed = urlsplit(url)
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if not parsed.hostname or port == -1 or parsed.username or parsed.password:
        raise SettingsError("CHATSVC_JWT_JWKS_URL", f"expected https://host[:port]/path, got {url!r}")
    if parsed.scheme == "https":
        return
    loopback = parsed.hostname in {"localhost", "127.0.0.1", "::1"}
    if parsed.scheme == "http" and loopback and environment == "development":
        return
    raise SettingsError(
        "CHATSVC_JWT_JWKS_URL",
        f"must be an https:// URL (plain http only to a loopback host in development), got {url!r}",
    )


def _dev_secret(data_dir: Path) -> str:
    """A development HMAC secret kept in the data dir, so tokens survive a restart."""
    path = data_dir / "dev-jwt-secret"
    try:
        if path.is_file():
            value = path.read_text().strip()
            if len(value) >= 32:
                return value
        data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value
    except OSError as exc:
        raise SettingsError(
            "CHATSVC_DATA_DIR", f"cannot keep the dev JWT secret in {data_dir}: {exc}"
        ) from None

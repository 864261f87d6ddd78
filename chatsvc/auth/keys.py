"""Which JWT algorithm a signing key implies (``chatsvc token --private-key``).

The key decides the algorithm: RSA signs RS256, an EC key the ES algorithm of its curve,
Ed25519 EdDSA. Refusing a mismatch here turns what PyJWT would report as a traceback
(an EC key with the RS256 default) into one line that says what to pass instead.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
_EC_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class SigningKeyError(ValueError):
    """The key cannot sign as asked; the message names the cause and the fix."""


def load_private_key(pem: bytes, where: str) -> object:
    """Parse an unencrypted PEM private key; ``where`` names it in the error."""
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise SigningKeyError(f"{where} is encrypted; decrypt it first (openssl pkey -in KEY)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{where} is not a PEM private key (RSA, EC or Ed25519)") from None


def _algorithms_of(key: object) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPrivateKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_CURVES:
        return (_EC_CURVES[key.curve.name],)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ("EdDSA",)
    raise SigningKeyError(f"{type(key).__name__} keys cannot sign JWTs; use RSA, EC P-256/384/521 or Ed25519")


def signing_algorithm(key: object, requested: str | None, where: str) -> str:
    """The algorithm ``key`` signs with: ``requested`` if it fits the key, else the key's default."""
    fitting = _algorithms_of(key)
    if requested is None:
        return fitting[0]
    if requested not in fitting:
        raise SigningKeyError(
            f"--algorithm {requested} does not fit {where} ({_describe(key)}); "
            f"use {' or '.join(fitting)}, or omit --algorithm"
        )
    return requested


def matches_public_key(key: object, public_pem: bytes) -> bool:
    """Whether the private ``key`` is the pair of the PEM public key ``public_pem``."""
    try:
        public = serialization.load_pem_public_key(public_pem)
    except (ValueError, UnsupportedAlgorithm):
        return False
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.DER, fmt)  # type: ignore[attr-defined]
    return bool(mine == public.public_bytes(serialization.Encoding.DER, fmt))


def _describe(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA-{key.key_size} key"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC {key.curve.name} key"
    return "an Ed25519 key"

"""Configuration: read once from the environment into one frozen, validated object.

Every variable the service understands is declared in this package and documented in the
README. A bad value raises :class:`SettingsError` naming the variable, and the process stops
before it binds a port. Secrets are wrapped in :class:`Secret` so that neither logs nor
reprs ever show them.

* :mod:`.model`: the frozen section dataclasses, :class:`Secret` and the constants.
* :mod:`.reader`: the environment reader's typed getters and :class:`SettingsError`.
* :mod:`.root`: the root :class:`Settings` (``from_env``, ``describe``) and the process-wide
  variables; it calls each section's reader:
* :mod:`.read_auth` (JWT), :mod:`.read_limits` (limits, spam, modes), :mod:`.read_kafka`
  (Kafka and notifications), :mod:`.read_store` (the store backend and ScyllaDB).
* :mod:`.blocklist`: the spam blocklist file.

Import the names below from ``chatsvc.settings``, not from the modules.
"""

from __future__ import annotations

from chatsvc.settings.blocklist import (
    BLOCKLIST_MAX_BYTES,
    BLOCKLIST_MAX_ENTRIES,
    BLOCKLIST_PATTERN_MAX,
    BLOCKLIST_PROBE,
    load_blocklist,
)
from chatsvc.settings.model import (
    CASHTAG_PATTERN,
    CONSISTENCY_LEVELS,
    FAST_PATHS,
    JWT_HMAC_ALGORITHMS,
    JWT_JWKS_ALGORITHMS,
    JWT_PUBLIC_KEY_ALGORITHMS,
    SASL_MECHANISMS,
    STORE_BACKENDS,
    GrpcSettings,
    JwtSettings,
    KafkaSettings,
    Limits,
    ModeSettings,
    ScyllaSettings,
    Secret,
    SpamSettings,
    TlsFiles,
)
from chatsvc.settings.reader import SettingsError
from chatsvc.settings.root import Settings

__all__ = [
    "BLOCKLIST_MAX_BYTES",
    "BLOCKLIST_MAX_ENTRIES",
    "BLOCKLIST_PATTERN_MAX",
    "BLOCKLIST_PROBE",
    "CASHTAG_PATTERN",
    "CONSISTENCY_LEVELS",
    "FAST_PATHS",
    "JWT_HMAC_ALGORITHMS",
    "JWT_JWKS_ALGORITHMS",
    "JWT_PUBLIC_KEY_ALGORITHMS",
    "SASL_MECHANISMS",
    "STORE_BACKENDS",
    "GrpcSettings",
    "JwtSettings",
    "KafkaSettings",
    "Limits",
    "ModeSettings",
    "ScyllaSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "SpamSettings",
    "TlsFiles",
    "load_blocklist",
]

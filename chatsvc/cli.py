"""``chatsvc`` command line: serve, token, migrate, admin."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from chatsvc import __version__, logs
from chatsvc.admin.client import register as register_admin
from chatsvc.cliargs import OneLineParser, UsageError, fail, positive_duration
from chatsvc.errors import ChatError, StartupError
from chatsvc.settings import Settings, SettingsError

log = logging.getLogger("chatsvc")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"chatsvc: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _signing_key(settings: Settings, args: argparse.Namespace) -> tuple[str, str]:
    """The key and algorithm to sign with; a :class:`UsageError` says what to change."""
    from chatsvc.auth import keys  # noqa: PLC0415 - cryptography only for this command

    jwt = settings.jwt
    if not args.private_key:
        if jwt.secret is None:
            raise UsageError(
                "the server verifies tokens with a public key (CHATSVC_JWT_PUBLIC_KEY); "
                "pass --private-key FILE with its private key"
            )
        algorithm = args.algorithm or jwt.algorithms[0]
        if algorithm not in keys.HMAC_ALGORITHMS:
            raise UsageError(
                f"--algorithm {algorithm} needs a private key, but the server uses an HMAC secret "
                f"(CHATSVC_JWT_SECRET); use {' or '.join(keys.HMAC_ALGORITHMS)}, or omit --algorithm"
            )
        return jwt.secret.reveal(), algorithm
    where = f"--private-key {args.private_key}"
    try:
        pem = Path(args.private_key).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {where}: {exc.strerror}; pass the path of a PEM private key") from None
    try:
        key = keys.load_private_key(pem, where)
        algorithm = keys.signing_algorithm(key, args.algorithm, where)
    except keys.SigningKeyError as exc:
        raise UsageError(str(exc)) from None
    if jwt.public_key_file is not None:
        public = Path(jwt.public_key_file)
        if not keys.matches_public_key(key, public.read_bytes()):
            raise UsageError(
                f"{where} is not the pair of CHATSVC_JWT_PUBLIC_KEY ({public}); "
                "pass the private key of that public key"
            )
        if algorithm not in jwt.algorithms:
            raise UsageError(
                f"the server accepts {','.join(jwt.algorithms)}, not {algorithm} (the key's algorithm); "
                f"add {algorithm} to CHATSVC_JWT_ALGORITHMS"
            )
    return pem.decode(), algorithm


def _mint(settings: Settings, args: argparse.Namespace) -> str:
    from chatsvc.auth.jwt import mint_token  # noqa: PLC0415

    key, algorithm = _signing_key(settings, args)
    return mint_token(
        key=key,
        algorithm=algorithm,
        sub=args.sub,
        name=args.name,
        roles=args.role or (),
        rooms=args.rooms.split(",") if args.rooms else None,
        ttl_seconds=args.ttl,
        issuer=settings.jwt.issuer,
        audience=settings.jwt.audience,
    )


def _cmd_token(args: argparse.Namespace) -> int:
    try:
        token = _mint(_settings(), args)
    except UsageError as exc:
        return fail("chatsvc token", exc)
    print(token)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    log.info("chatsvc %s starting with %s", __version__, settings.describe())
    if settings.jwt.dev_secret_generated:
        from chatsvc.auth.jwt import mint_token  # noqa: PLC0415

        assert settings.jwt.secret is not None
        token = mint_token(
            key=settings.jwt.secret.reveal(), algorithm="HS256", sub="dev", name="Dev", ttl_seconds=86400
        )
        banner = "=" * 72
        scheme = "https" if settings.tls_cert else "http"
        host = "localhost" if settings.host in {"127.0.0.1", "0.0.0.0"} else settings.host
        print(
            f"{banner}\n"
            "DEVELOPMENT MODE: no CHATSVC_JWT_SECRET or CHATSVC_JWT_PUBLIC_KEY is set, so tokens\n"
            f"are signed with a generated secret kept in {settings.data_dir / 'dev-jwt-secret'}.\n"
            "Never run production like this (CHATSVC_ENV=production refuses to).\n\n"
            f"URL:       {scheme}://{host}:{settings.port}   (Socket.IO path /socket.io, v4)\n"
            f"Dev token: {token}\n"
            "More:      .venv/bin/chatsvc token --sub alice --name Alice --ttl 1h\n"
            f"{banner}",
            file=sys.stderr,
            flush=True,
        )
    try:
        from chatsvc.server import run  # noqa: PLC0415

        run(settings)
    except StartupError as exc:
        print(f"chatsvc: startup failed: {exc}", file=sys.stderr)
        return 3
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    from chatsvc.app import build_store  # noqa: PLC0415

    async def run() -> None:
        store = build_store(settings)
        try:
            await store.open()
            await store.migrate()
        finally:
            await store.aclose()

    try:
        asyncio.run(run())
    except ChatError as exc:
        print(f"chatsvc migrate: {exc.message}", file=sys.stderr)
        return 3
    print("schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the admin subcommands and tests)."""
    parser = OneLineParser(prog="chatsvc", description="ST00CK real-time chat backend")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    serve = sub.add_parser("serve", help="run the server (configured from the environment)")
    serve.set_defaults(func=_cmd_serve)

    token = sub.add_parser("token", help="mint a JWT with the configured key")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--name", help="display name")
    token.add_argument(
        "--ttl", type=positive_duration, default=3600.0, help="lifetime >= 1s, e.g. 30m, 1h (default 1h)"
    )
    token.add_argument("--role", action="append", help="a role, e.g. admin (repeatable)")
    token.add_argument("--rooms", help="comma-separated rooms or prefix* patterns the user may join")
    token.add_argument("--private-key", help="PEM private key when the server verifies with a public key")
    token.add_argument(
        "--algorithm",
        help="signing algorithm (default: the key's: RSA RS256, EC P-256 ES256, P-384 ES384, "
        "Ed25519 EdDSA; an HMAC secret the first of CHATSVC_JWT_ALGORITHMS)",
    )
    token.set_defaults(func=_cmd_token)

    migrate = sub.add_parser("migrate", help="create or upgrade the history store's schema")
    migrate.set_defaults(func=_cmd_migrate)

    register_admin(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chatsvc`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))

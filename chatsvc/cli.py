"""``chatsvc`` command line: serve, token, migrate, admin."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from chatsvc import __version__, logs
from chatsvc.errors import ChatError, StartupError
from chatsvc.settings import Settings, SettingsError

log = logging.getLogger("chatsvc")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` → seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration like 30m or 1h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"chatsvc: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _mint(settings: Settings, args: argparse.Namespace) -> str:
    from chatsvc.auth.jwt import mint_token  # noqa: PLC0415

    jwt = settings.jwt
    if args.private_key:
        key = Path(args.private_key).read_text()
        algorithm = args.algorithm or jwt.algorithms[0]
    elif jwt.secret is not None:
        key = jwt.secret.reveal()
        algorithm = jwt.algorithms[0]
    else:
        raise SystemExit("chatsvc token: the server verifies with a public key; pass --private-key FILE")
    return mint_token(
        key=key,
        algorithm=algorithm,
        sub=args.sub,
        name=args.name,
        roles=args.role or (),
        rooms=args.rooms.split(",") if args.rooms else None,
        ttl_seconds=args.ttl,
        issuer=jwt.issuer,
        audience=jwt.audience,
    )


def _cmd_token(args: argparse.Namespace) -> int:
    print(_mint(_settings(), args))
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
    parser = argparse.ArgumentParser(prog="chatsvc", description="ST00CK real-time chat backend")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (configured from the environment)")
    serve.set_defaults(func=_cmd_serve)

    token = sub.add_parser("token", help="mint a JWT with the configured key")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--name", help="display name")
    token.add_argument(
        "--ttl", type=parse_duration, default=3600.0, help="lifetime, e.g. 30m, 1h (default 1h)"
    )
    token.add_argument("--role", action="append", help="a role, e.g. admin (repeatable)")
    token.add_argument("--rooms", help="comma-separated rooms or prefix* patterns the user may join")
    token.add_argument("--private-key", help="PEM private key when the server verifies with a public key")
    token.add_argument("--algorithm", help="signing algorithm with --private-key (default: first allowed)")
    token.set_defaults(func=_cmd_token)

    migrate = sub.add_parser("migrate", help="create or upgrade the history store's schema")
    migrate.set_defaults(func=_cmd_migrate)

    from chatsvc.admin.client import register  # noqa: PLC0415 - it imports this module

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chatsvc`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))

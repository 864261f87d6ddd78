"""The web chat client served by chatsvc, and its development-only token endpoint.

The client is plain files under ``static/`` (ES modules, CSS, the vendored socket.io-client):
nothing is built and nothing is fetched from another origin, which the Content-Security-Policy
sent with every file also enforces in the browser. Only files that exist when the app is
assembled are served (an allow-list, so no path from a request ever reaches the filesystem).

``POST /dev/token`` mints a short-lived token for any ``sub`` so the page has a one-click
sign-in. It exists only in development with an HMAC secret: production never registers it,
whatever ``CHATSVC_WEB_APP`` says, and it never grants roles or room restrictions.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from chatsvc.auth.jwt import mint_token
from chatsvc.settings import Settings

STATIC_DIR = Path(__file__).parent / "static"
#: Served under their own paths (``chatsvc.web.admin_ui``), not as part of the app.
EXCLUDED = ("vendor/admin-ui/",)
DEV_TOKEN_TTL_SECONDS = 3600
DEV_TOKEN_MAX_BODY = 1024
_SUB = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_NAME_MAX = 64

#: Everything the page loads comes from here; socket.io connects back to the same origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load (ETag/Last-Modified make that cheap), so an upgrade is seen.
    "Cache-Control": "no-cache",
}


def app_files(root: Path = STATIC_DIR) -> dict[str, Path]:
    """Relative POSIX path -> file, for every file of the app under ``root``."""
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(EXCLUDED) and not path.name.startswith("."):
            files[rel] = path
    return files


def dev_token_enabled(settings: Settings) -> bool:
    """``POST /dev/token`` exists: development, with an HMAC secret to sign with."""
    return not settings.is_production and settings.jwt.secret is not None


def routes(settings: Settings) -> list[web.RouteDef]:
    """``GET /``, ``GET /app/...`` and, in development, ``POST /dev/token``; nothing when the
    app is off (``CHATSVC_WEB_APP``, off by default in production)."""
    if not settings.web_app:
        return []
    files = app_files()
    config = {"dev_sign_in": dev_token_enabled(settings), "environment": settings.environment}

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(files["index.html"], headers=SECURITY_HEADERS)

    async def asset(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(text="not found")
        return web.FileResponse(path, headers=SECURITY_HEADERS)

    async def app_config(_: web.Request) -> web.Response:
        return web.json_response(config, headers=SECURITY_HEADERS)

    defs = [
        web.get("/", index),
        web.get("/app/config.json", app_config),
        web.get("/app/{name:.+}", asset),
    ]
    if dev_token_enabled(settings):
        defs.append(web.post("/dev/token", _dev_token_handler(settings)))
    return defs


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _dev_token_handler(settings: Settings) -> Callable[[web.Request], Awaitable[web.Response]]:
    jwt = settings.jwt
    assert jwt.secret is not None

    async def dev_token(request: web.Request) -> web.Response:
        # A JSON body is what a cross-site <form> cannot send without a CORS preflight, and
        # a browser's Origin header must be this server's own: other pages cannot mint.
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() != f"{request.scheme}://{request.host}".lower():
            return _error(403, "forbidden", "dev sign-in is only for this server's own page")
        if request.content_type != "application/json":
            return _error(415, "invalid_payload", "send {sub, name} as application/json")
        if request.content_length is None or request.content_length > DEV_TOKEN_MAX_BODY:
            return _error(413, "too_large", f"the body must be at most {DEV_TOKEN_MAX_BODY} bytes")
        try:
            body = json.loads(await request.content.read(DEV_TOKEN_MAX_BODY))
        except ValueError:
            return _error(400, "invalid_payload", "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_payload", "the body must be a JSON object {sub, name}")
        sub, name = body.get("sub"), body.get("name", "")
        if not isinstance(sub, str) or not _SUB.fullmatch(sub):
            return _error(400, "invalid_payload", "sub: 1..64 letters, digits or _ . @ -")
        if not isinstance(name, str) or len(name) > _NAME_MAX or not name.isprintable():
            return _error(400, "invalid_payload", f"name: at most {_NAME_MAX} printable characters")
        token = mint_token(
            key=jwt.secret.reveal() if jwt.secret is not None else "",
            algorithm=jwt.algorithms[0],
            sub=sub,
            name=name.strip() or sub,
            ttl_seconds=DEV_TOKEN_TTL_SECONDS,
            issuer=jwt.issuer,
            audience=jwt.audience,
        )
        expires = int(time.time()) + DEV_TOKEN_TTL_SECONDS
        return web.json_response({"token": token, "expires_in": DEV_TOKEN_TTL_SECONDS, "exp": expires})

    return dev_token

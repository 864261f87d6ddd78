"""The Socket.IO Admin UI, served by chatsvc itself so operators need no external site.

The files are the ``@socket.io/admin-ui`` npm package's built UI and the ``@mdi/font`` icon
font it uses, vendored under ``static/vendor/admin-ui`` (``manifest.json`` there records
versions, licences and checksums). The files are the packages' own, except ``index.html``:
npm's links Google Fonts and a CDN copy of the icon font, and the vendored copy drops the
first (the UI falls back to system fonts) and points the second at the vendored font, so the
page loads nothing from another origin (the test restores both links and checks the npm
file's checksum). Served at ``/admin-ui/`` only when ``CHATSVC_ADMIN_UI_USERNAME``/``PASSWORD`` are set,
which is also what turns on the ``/admin`` namespace it connects to.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from chatsvc.settings import Settings

ROOT = Path(__file__).parent / "static" / "vendor" / "admin-ui"
PREFIX = "/admin-ui/"
#: Vuetify sets inline styles, hence 'unsafe-inline' for styles (never for scripts).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def ui_files(root: Path = ROOT) -> dict[str, Path]:
    """URL path under ``/admin-ui/`` -> vendored file (the UI at the top, the font under mdi/)."""
    files: dict[str, Path] = {}
    for folder, prefix in ((root / "ui", ""), (root / "mdi", "mdi/")):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != "LICENSE":
                files[prefix + path.relative_to(folder).as_posix()] = path
    return files


def routes(settings: Settings) -> list[web.RouteDef]:
    """``/admin-ui/`` and its files when the Admin UI is configured, else nothing."""
    if not (settings.admin_ui_username and settings.admin_ui_password):
        return []
    files = ui_files()

    async def index(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(files["index.html"], headers=HEADERS)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(PREFIX)

    async def asset(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound(text="not found")
        return web.FileResponse(path, headers=HEADERS)

    return [
        web.get(PREFIX.rstrip("/"), redirect),
        web.get(PREFIX, index),
        web.get(PREFIX + "{name:.+}", asset),
    ]

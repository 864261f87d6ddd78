"""The Socket.IO Admin UI served by chatsvc: vendored files as the manifest records them,
served only with the admin UI credentials set, and usable in a real browser without a
single request to another origin."""

from __future__ import annotations

import hashlib
import json

from playwright.async_api import expect

from chatsvc.web.admin_ui import ROOT, ui_files
from tests.conftest import ServerFactory
from tests.support.browser import PAGE_WAIT_MS, chromium, visitor

USER, PASSWORD = "ops", "admin-ui-test-password"

expect.set_options(timeout=PAGE_WAIT_MS)

#: npm's index.html links these two stylesheets on other origins; the vendored copy has no
#: Google Fonts link and this local icon-font link instead of the CDN one.
_GOOGLE_FONTS = "https://fonts.googleapis.com/css?family=Roboto:100,300,400,500,700,900"
_MDI_CDN = "https://cdn.jsdelivr.net/npm/@mdi/font@latest/css/materialdesignicons.min.css"
FOREIGN_LINKS = (
    f'<link rel="stylesheet" href="{_GOOGLE_FONTS}">',
    f'<link rel="stylesheet" href="{_MDI_CDN}">',
)
LOCAL_MDI = '<link rel="stylesheet" href="mdi/css/materialdesignicons.min.css">'


def test_vendored_files_are_the_ones_the_manifest_records() -> None:
    manifest = json.loads((ROOT / "manifest.json").read_text())
    recorded = {}
    for folder, package in manifest["packages"].items():
        assert (ROOT / package["licence_file"]).read_text().strip()
        assert package["version"] and package["tarball_integrity"].startswith("sha512-")
        for name, digest in package["files"].items():
            recorded[f"{folder}/{name}"] = digest
    present = {
        path.relative_to(ROOT).as_posix(): "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        for path in ROOT.rglob("*")
        if path.is_file() and path.name not in {"LICENSE", "manifest.json"}
    }
    assert present == recorded  # every file listed, none changed, none extra
    # What is served: every vendored file but the licences.
    assert set(ui_files()) == {k.removeprefix("ui/") for k in recorded}


def test_vendored_index_is_npms_with_only_its_two_foreign_links_changed() -> None:
    manifest = json.loads((ROOT / "manifest.json").read_text())
    html = (ROOT / "ui" / "index.html").read_text(encoding="utf-8")
    assert html.count(LOCAL_MDI) == 1
    original = html.replace(LOCAL_MDI, "".join(FOREIGN_LINKS)).encode()
    npm = manifest["packages"]["ui"]["index_html_from_npm"]["sha256"]
    assert "sha256:" + hashlib.sha256(original).hexdigest() == npm


def test_served_index_links_no_other_origin() -> None:
    html = (ROOT / "ui" / "index.html").read_text(encoding="utf-8")
    assert "https://" not in html and "http://" not in html and "//" not in html.replace("<!DOCTYPE", "")
    assert 'href="mdi/css/materialdesignicons.min.css"' in html
    assert all(link not in html for link in FOREIGN_LINKS)


async def test_off_without_credentials(server_factory: ServerFactory) -> None:
    server = server_factory(name="no-admin-ui")
    for path in ("/admin-ui/", "/admin-ui", "/admin-ui/js/app.0d7d7845.js"):
        assert server.http_status(path) == 404, path


async def test_an_operator_connects_from_the_served_ui(server_factory: ServerFactory) -> None:
    server = server_factory(
        name="admin-ui", CHATSVC_ADMIN_UI_USERNAME=USER, CHATSVC_ADMIN_UI_PASSWORD=PASSWORD
    )
    assert server.http_status("/admin-ui/mdi/LICENSE") == 404  # licences are not served
    async with chromium() as browser:
        operator = await visitor(browser, viewport={"width": 1280, "height": 800})
        page = operator.page
        await page.goto(f"{server.url}/admin-ui")  # redirected to /admin-ui/
        assert page.url.startswith(f"{server.url}/admin-ui/")
        await page.get_by_label("Server URL").fill(server.url)
        await page.get_by_label("Username").fill(USER)
        await page.get_by_label("Password").fill("wrong-password")
        await page.get_by_role("button", name="Connect").click()
        await expect(page.get_by_text("Error: authentication failed")).to_be_visible()
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Connect").click()
        await expect(page.locator("header").get_by_text("connected", exact=True).first).to_be_visible()
        await expect(page.get_by_role("cell", name="/admin")).to_be_visible()  # namespaces table
    assert operator.origins() == {server.url}, operator.urls
    assert operator.errors == []

"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright for Python.

Playwright never downloads a browser here: it launches the system Chromium through
``executable_path``. A missing Chromium is a failure that says how to install it (``make
test`` does), never a skip. Every request and websocket a page opens is recorded, so a test
can assert that the page talks to no other origin.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

#: Bound on every wait for something to appear in a page (milliseconds).
PAGE_WAIT_MS = 15000


def chromium_path() -> str:
    """The system Chromium; fail (never skip) with how to install it."""
    for candidate in (os.environ.get("CHATSVC_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.fail("headless Chromium is needed: `apt-get install chromium` (scripts/test does it)")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium for one test; closed (and its processes ended) afterwards."""
    async with async_playwright() as playwright:
        # --no-sandbox: the tests may run as root (CI), where Chromium refuses its sandbox.
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"], timeout=30000
        )
        try:
            yield browser
        finally:
            await browser.close()


def origin(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


@dataclass
class Visitor:
    """One user in their own browser context (own cookies and storage), with what it loaded."""

    context: BrowserContext
    page: Page
    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page
    console: list[str] = field(default_factory=list)  # console errors (e.g. failed loads)

    def origins(self) -> set[str]:
        """Every origin this user's page made a request or opened a websocket to."""
        return {origin(url) for url in self.urls}


async def visitor(browser: Browser, **context_options: Any) -> Visitor:
    """A new context and page that record requests, websockets and page errors."""
    context = await browser.new_context(**context_options)
    context.set_default_timeout(PAGE_WAIT_MS)
    page = await context.new_page()
    seen = Visitor(context, page)
    context.on("request", lambda request: seen.urls.append(request.url))
    page.on("websocket", lambda ws: seen.urls.append(ws.url))
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on("console", lambda msg: seen.console.append(msg.text) if msg.type == "error" else None)
    return seen

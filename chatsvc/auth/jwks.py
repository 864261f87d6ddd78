"""An identity provider's published signing keys (a JWKS), fetched and cached off the hot path.

Verification never does I/O: it looks keys up in the cache by ``kid``. A background task
(one ``cleanup_ctx`` in the app) fetches the document with aiohttp, keeps it as long as the
provider's ``Cache-Control: max-age`` says (bounded to [the least fetch interval, one hour]),
and fetches again sooner when a token names a ``kid`` the cache lacks, but never more often
than once per ``CHATSVC_JWT_JWKS_MIN_INTERVAL``: a flood of tokens with made-up kids costs
one fetch per interval, not one per connect. When a fetch fails the keys already held stay
in use (a provider outage must not lock every user out); failures back off exponentially
up to a cap and are logged once each.

Turning a JWK into a key object is the JWT library's job: the parser is handed in
(``chatsvc.auth.jwt.parse_jwk``), so PyJWT stays imported in one module only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Final, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp

from chatsvc.errors import KeysUnavailable

log = logging.getLogger(__name__)

K = TypeVar("K")
K_co = TypeVar("K_co", covariant=True)

#: Cache lifetime when the provider sends no ``max-age``.
DEFAULT_TTL_SECONDS: Final = 300.0
#: Longest a fetched JWKS is trusted without asking again (a removed key dies within this).
MAX_TTL_SECONDS: Final = 3600.0
#: Longest wait between retries after failures.
BACKOFF_CAP_SECONDS: Final = 300.0
FETCH_TIMEOUT_SECONDS: Final = 5.0
MAX_DOCUMENT_BYTES: Final = 256 * 1024
MAX_KEYS: Final = 64
MAX_KID_LENGTH: Final = 256

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)", re.IGNORECASE)


class KeySet(Protocol[K_co]):
    """Signing keys by ``kid``, as :class:`chatsvc.auth.jwt.JwtVerifier` needs them."""

    def lookup(self, kid: str | None) -> K_co | None:
        """The key named ``kid`` (``None``: the only key, when there is exactly one)."""

    def request_refetch(self) -> None:
        """A token named an unknown ``kid``: fetch again soon (rate-limited, never blocks)."""

    async def refetch(self, within: float) -> None:
        """Ask for a fetch and wait for it, at most ``within`` seconds; never raises."""


class JwksError(Exception):
    """One fetch failed; the message names the cause (no secrets: the URL is public)."""


def cache_seconds(cache_control: str | None, *, minimum: float) -> float:
    """How long to keep a document, from its ``Cache-Control`` header, within bounds."""
    if cache_control:
        if _NO_CACHE.search(cache_control):
            return minimum
        match = _MAX_AGE.search(cache_control)
        if match:
            return min(MAX_TTL_SECONDS, max(minimum, float(match.group(1))))
    return min(MAX_TTL_SECONDS, max(minimum, DEFAULT_TTL_SECONDS))


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The body, refused as soon as it exceeds :data:`MAX_DOCUMENT_BYTES`."""
    too_big = JwksError(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
    if (response.content_length or 0) > MAX_DOCUMENT_BYTES:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_DOCUMENT_BYTES:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


class JwksKeys(Generic[K]):
    """The cache and its refresher. ``parse`` turns one JWK into a key or raises ``ValueError``."""

    def __init__(self, url: str, *, min_interval: float, parse: Callable[[dict[str, Any]], K]) -> None:
        self._url = url
        self._where = urlsplit(url).netloc
        self._min_interval = min_interval
        self._parse = parse
        self._keys: dict[str, K] = {}
        self._ttl = min_interval
        self._last_attempt: float | None = None
        self._failing: str | None = None
        self._skipped: set[str] = set()
        self._wanted = asyncio.Event()
        self._fetched = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        #: Fetches attempted (tests count them; also logged at DEBUG).
        self.fetches = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the refresher and wait (bounded) for the first fetch; a failure is not fatal:
        readiness reports it and the refresher keeps trying."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
            headers={"Accept": "application/json"},
        )
        self._task = asyncio.create_task(self._refresher(), name="jwks-refresher")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FETCH_TIMEOUT_SECONDS + 1):
                await self._fetched.wait()

    async def aclose(self) -> None:
        """Stop the refresher and close the HTTP session; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self) -> None:
        """Readiness: raise ``KeysUnavailable`` while no key has ever been fetched."""
        if not self._keys:
            cause = self._failing or "not fetched yet"
            raise KeysUnavailable(f"no JWT signing keys from {self._where}: {cause}")

    # -- KeySet ---------------------------------------------------------------------------

    def lookup(self, kid: str | None) -> K | None:
        """The cached key for ``kid``; with no ``kid``, the only key if there is one."""
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def request_refetch(self) -> None:
        """Wake the refresher; it still waits out the least interval since the last fetch."""
        self._wanted.set()

    async def refetch(self, within: float) -> None:
        """Wait for the next fetch when it may happen within ``within`` seconds; else return at once."""
        loop = asyncio.get_running_loop()
        if self._last_attempt is not None:
            earliest = self._last_attempt + self._min_interval
            if earliest - loop.time() > within:
                self.request_refetch()
                return
        fetched = self._fetched
        self.request_refetch()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await fetched.wait()

    # -- the refresher --------------------------------------------------------------------

    async def _refresher(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self._wanted.clear()
            self._last_attempt = loop.time()
            try:
                await self._fetch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # JwksError, or a bug: the refresher must outlive both
                failures += 1
                self._failed(str(exc) if isinstance(exc, JwksError) else f"unexpected {type(exc).__name__}")
                delay = min(BACKOFF_CAP_SECONDS, self._min_interval * 2 ** min(failures - 1, 16))
            else:
                failures = 0
                delay = self._ttl
            # Wake whoever waits for this fetch; later waiters wait for the next one.
            self._fetched.set()
            self._fetched = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wanted.wait()
            # Rate limit: however many unknown kids arrive, one fetch per least interval.
            assert self._last_attempt is not None
            wait = self._last_attempt + self._min_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)

    def _failed(self, message: str) -> None:
        if self._failing != message:  # each kind of failure once, not every retry
            self._failing = message
            held = f"; keeping {len(self._keys)} cached key(s)" if self._keys else ""
            log.warning("JWKS fetch from %s failed: %s%s", self._where, message, held)

    async def _fetch(self) -> None:
        session = self._session
        assert session is not None
        self.fetches += 1
        log.debug("fetching JWKS from %s", self._where)
        try:
            async with session.get(self._url, allow_redirects=False) as response:
                if response.status != 200:
                    raise JwksError(f"HTTP {response.status}")
                body = await _read_bounded(response)
                cache_control = response.headers.get("Cache-Control")
        except aiohttp.ClientConnectorError as exc:
            raise JwksError(f"cannot connect ({exc.os_error.strerror or exc.os_error})") from None
        except aiohttp.ClientError as exc:
            raise JwksError(f"request failed ({type(exc).__name__})") from None
        except TimeoutError:
            raise JwksError(f"no answer within {FETCH_TIMEOUT_SECONDS:.0f}s") from None
        keys = self._keys_of(body)
        self._keys = keys
        self._ttl = cache_seconds(cache_control, minimum=self._min_interval)
        if self._failing is not None:
            log.info("JWKS fetch from %s succeeds again (after: %s)", self._where, self._failing)
            self._failing = None
        log.debug("JWKS from %s: %d key(s), kept %.0fs", self._where, len(keys), self._ttl)

    def _keys_of(self, body: bytes) -> dict[str, K]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise JwksError("the document is not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise JwksError("the document has no 'keys' list")
        keys: dict[str, K] = {}
        for entry in entries[:MAX_KEYS]:
            kid = entry.get("kid") if isinstance(entry, dict) else None
            if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
                self._skip(repr(kid)[:40], "no usable 'kid'")
                continue
            assert isinstance(entry, dict)
            try:
                keys[kid] = self._parse(entry)
            except ValueError as exc:
                self._skip(kid, str(exc))
        if not keys:
            raise JwksError("no usable RSA or EC signing key in the document")
        return keys

    def _skip(self, kid: str, why: str) -> None:
        if kid not in self._skipped and len(self._skipped) < 1024:  # once per key, not per refresh
            self._skipped.add(kid)
            log.warning("JWKS key %s skipped: %s", kid[:40], why)

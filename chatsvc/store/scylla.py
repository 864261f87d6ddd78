"""History in ScyllaDB (or Apache Cassandra): the production store. The only module that
imports the CQL driver (``scylla-driver``, imported as ``cassandra``).

Data model (Discord style, see docs/scylla.md): a room's messages are split into
partitions of ``(room, bucket)`` where a bucket is ten days (``store.base.BUCKET_MS``),
clustered by the time-sortable message id, newest first, so that even the busiest ticker
room never grows an unbounded partition. Reads walk buckets: backwards for history,
forwards for catch-up and unread counts, between the room's first bucket and the bucket of
its last message (both kept in ``rooms``).

Rules this module keeps:

* Every query is a prepared statement; every request goes through :meth:`ScyllaStore._run`,
  which bridges the driver's ``ResponseFuture`` callbacks (run on the driver's IO thread) to
  an asyncio future with ``loop.call_soon_threadsafe``, under a semaphore of
  ``max_in_flight``. Blocking driver calls (connect, prepare, DDL, shutdown) run in a thread.
* No nulls are written (a null is a tombstone): absent values are ``UNSET_VALUE`` or simply
  not in the statement; "until lifted" moderation is stored as a far-future instant.
* No lightweight transactions. Cells that must only move one way (last message id, read
  markers, a room's first bucket) are written ``USING TIMESTAMP`` derived from the value
  itself, so that last-write-wins keeps the right one whatever the order of arrival.
* Any driver exception becomes :class:`~chatsvc.errors.StoreUnavailable` with a short
  message of our own; ``append`` raises rather than return unless the message is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from cassandra import (
    AuthenticationFailed,
    ConsistencyLevel,
    CoordinationFailure,
    InvalidRequest,
    OperationTimedOut,
    Timeout,
    Unauthorized,
    Unavailable,
    UnresolvableContactPoints,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.query import UNSET_VALUE, tuple_factory

from chatsvc.chat.ids import id_value, is_message_id, lowest_id_at, timestamp_ms
from chatsvc.errors import InvalidPayload, NotFound, StoreUnavailable
from chatsvc.settings import ScyllaSettings
from chatsvc.store.base import (
    BUCKET_MS,
    EVENT_RETENTION_SECONDS,
    HistoryPage,
    Message,
    Moderation,
    RoomEvent,
    RoomInfo,
    SessionRecord,
    bucket_of,
)
from chatsvc.store.diagnose import failing_hosts

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 2
SCHEMA_SCOPE: Final = "chatsvc"

#: A history call that meets this many consecutive empty buckets returns what it has with a
#: cursor at the last bucket it looked at; the client pages on from there. This bounds the
#: work of one call (a quiet room is mostly empty buckets) without ever hiding older history.
EMPTY_BUCKET_LIMIT: Final = 8
#: Rows per query at most. Longer reads page on by clustering key (keyset paging, resumable
#: and stateless), so no result ever exceeds one driver page and no paging state is needed.
SCAN_CHUNK: Final = 1000
#: Retried sends are recognised for this long (the key rows expire; see docs/scylla.md).
IDEMPOTENCY_TTL_SECONDS: Final = 7 * 24 * 3600
#: Rooms whose creation this process has written (skips rewriting it on every send).
ROOM_CACHE_SIZE: Final = 10_000
DDL_TIMEOUT_SECONDS: Final = 60.0
PING_TIMEOUT_SECONDS: Final = 1.5
#: Stored for "until lifted" instead of a null.
PERMANENT_UNTIL_MS: Final = 2**63 - 1
#: Sorts after every id character (Crockford base32 is digits and upper case).
_ID_CEILING: Final = "~"
#: ``created_at``/``first_bucket`` are written USING TIMESTAMP (this - created ms), so the
#: earliest creation wins last-write-wins; the result stays a valid past timestamp.
_CREATION_TS_BASE: Final = 1 << 44
#: Extra wait on top of the driver's own request timeout before we give up on a callback.
_CALLBACK_GRACE_SECONDS: Final = 2.0

_COLUMNS = "id, user_id, user_name, text, created_at, client_msg_id, edited_at, deleted, kind"

#: Schema, one tuple of statements per version. ``{ks}`` is the (validated) keyspace name.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS {ks}.messages (
            room text,
            bucket int,
            id text,
            user_id text,
            user_name text,
            text text,
            created_at bigint,
            client_msg_id text,
            edited_at bigint,
            deleted boolean,
            kind text,
            PRIMARY KEY ((room, bucket), id)
        ) WITH CLUSTERING ORDER BY (id DESC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.rooms (
            name text PRIMARY KEY,
            created_at bigint,
            first_bucket int,
            last_message_id text
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.room_names (
            shard int,
            name text,
            PRIMARY KEY (shard, name)
        ) WITH CLUSTERING ORDER BY (name ASC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.client_msg_ids (
            room text,
            user_id text,
            client_msg_id text,
            message_id text,
            created_at bigint,
            PRIMARY KEY ((room, user_id, client_msg_id))
        ) WITH default_time_to_live = """
        + str(IDEMPOTENCY_TTL_SECONDS)
        + """
          AND gc_grace_seconds = 10800
          AND compaction = {{'class': 'TimeWindowCompactionStrategy',
                             'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}}""",
        """CREATE TABLE IF NOT EXISTS {ks}.read_markers (
            room text,
            user_id text,
            message_id text,
            PRIMARY KEY ((room, user_id))
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.moderation (
            kind text,
            room text,
            user_id text,
            until_ms bigint,
            reason text,
            PRIMARY KEY ((kind, room, user_id))
        )""",
    ),
    # Connection state recovery: edit/delete events (replayed in id order with messages)
    # and dropped sockets' sessions. Both only ever expire (TTL): no deletes but the one
    # conditional delete that consumes a session.
    2: (
        """CREATE TABLE IF NOT EXISTS {ks}.room_events (
            room text,
            bucket int,
            id text,
            kind text,
            message_id text,
            payload text,
            PRIMARY KEY ((room, bucket), id)
        ) WITH CLUSTERING ORDER BY (id ASC)
          AND default_time_to_live = """
        + str(EVENT_RETENTION_SECONDS)
        + """
          AND gc_grace_seconds = 10800
          AND compaction = {{'class': 'TimeWindowCompactionStrategy',
                             'compaction_window_unit': 'HOURS', 'compaction_window_size': 6}}""",
        """CREATE TABLE IF NOT EXISTS {ks}.sessions (
            pid text PRIMARY KEY,
            user_id text,
            data text,
            expires_at bigint
        ) WITH gc_grace_seconds = 10800""",
    ),
}

_SCHEMA_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS {ks}.schema_version (
    scope text,
    version int,
    applied_at timestamp,
    PRIMARY KEY (scope, version)
) WITH CLUSTERING ORDER BY (version DESC)"""

#: Every statement the store runs, prepared once per session.
_STATEMENTS: Final[dict[str, str]] = {
    "ping": "SELECT release_version FROM system.local WHERE key = 'local'",
    "version_get": "SELECT version FROM {ks}.schema_version WHERE scope = ? LIMIT 1",
    "version_put": "INSERT INTO {ks}.schema_version (scope, version, applied_at) VALUES (?, ?, ?)",
    "msg_insert": (
        f"INSERT INTO {{ks}}.messages (room, bucket, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "msg_get": (
        f"SELECT {_COLUMNS}, writetime(text) FROM {{ks}}.messages WHERE room = ? AND bucket = ? AND id = ?"
    ),
    "msg_before": f"SELECT {_COLUMNS} FROM {{ks}}.messages WHERE room = ? AND bucket = ? AND id < ? LIMIT ?",
    "msg_after": (
        f"SELECT {_COLUMNS} FROM {{ks}}.messages WHERE room = ? AND bucket = ? AND id > ?"
        " ORDER BY id ASC LIMIT ?"
    ),
    "msg_between": (
        "SELECT id, user_id, deleted FROM {ks}.messages"
        " WHERE room = ? AND bucket = ? AND id > ? AND id < ? LIMIT ?"
    ),
    "msg_edit": "UPDATE {ks}.messages SET text = ?, edited_at = ? WHERE room = ? AND bucket = ? AND id = ?",
    "msg_delete": (
        "UPDATE {ks}.messages SET text = '', deleted = true, edited_at = ?"
        " WHERE room = ? AND bucket = ? AND id = ?"
    ),
    "msg_scrub": (
        "UPDATE {ks}.messages USING TIMESTAMP ? SET text = '' WHERE room = ? AND bucket = ? AND id = ?"
    ),
    "key_get": (
        "SELECT message_id, created_at FROM {ks}.client_msg_ids"
        " WHERE room = ? AND user_id = ? AND client_msg_id = ?"
    ),
    "key_put": (
        "INSERT INTO {ks}.client_msg_ids (room, user_id, client_msg_id, message_id, created_at)"
        " VALUES (?, ?, ?, ?, ?)"
    ),
    "room_create": "UPDATE {ks}.rooms USING TIMESTAMP ? SET created_at = ?, first_bucket = ? WHERE name = ?",
    "room_last": "UPDATE {ks}.rooms USING TIMESTAMP ? SET last_message_id = ? WHERE name = ?",
    "room_get": "SELECT created_at, first_bucket, last_message_id FROM {ks}.rooms WHERE name = ?",
    "room_name_put": "INSERT INTO {ks}.room_names (shard, name) VALUES (0, ?)",
    "room_names": "SELECT name FROM {ks}.room_names WHERE shard = 0 AND name > ? LIMIT ?",
    "marker_put": (
        "UPDATE {ks}.read_markers USING TIMESTAMP ? SET message_id = ? WHERE room = ? AND user_id = ?"
    ),
    "marker_get": "SELECT message_id FROM {ks}.read_markers WHERE room = ? AND user_id = ?",
    "mod_put": "INSERT INTO {ks}.moderation (kind, room, user_id, until_ms, reason) VALUES (?, ?, ?, ?, ?)",
    "mod_get": "SELECT until_ms, reason FROM {ks}.moderation WHERE kind = ? AND room = ? AND user_id = ?",
    "mod_delete": "DELETE FROM {ks}.moderation WHERE kind = ? AND room = ? AND user_id = ?",
    "ev_insert": (
        "INSERT INTO {ks}.room_events (room, bucket, id, kind, message_id, payload) VALUES (?, ?, ?, ?, ?, ?)"
    ),
    "ev_after": (
        "SELECT id, kind, message_id, payload FROM {ks}.room_events WHERE room = ? AND bucket = ? AND id > ?"
        " LIMIT ?"
    ),
    "sess_put": (
        "INSERT INTO {ks}.sessions (pid, user_id, data, expires_at) VALUES (?, ?, ?, ?) USING TTL ?"
    ),
    "sess_get": "SELECT user_id, data, expires_at FROM {ks}.sessions WHERE pid = ?",
    "sess_take": "DELETE FROM {ks}.sessions WHERE pid = ? IF expires_at > ?",
}
#: Statements a retry could change the outcome of (a conditional delete applied twice says
#: "not applied" the second time).
_NOT_IDEMPOTENT: Final = frozenset({"sess_take"})

Row = tuple[Any, ...]
T = TypeVar("T")


def replication_cql(spec: str) -> str:
    """``SimpleStrategy:3`` / ``NetworkTopologyStrategy:dc1=3,dc2=3`` as a CQL replication map."""
    strategy, _, rest = spec.partition(":")
    if strategy == "SimpleStrategy":
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {int(rest)}}}"
    pairs = []
    for part in rest.split(","):
        dc, _, factor = part.partition("=")
        pairs.append(f"'{dc.strip().replace(chr(39), chr(39) * 2)}': {int(factor)}")
    return "{'class': 'NetworkTopologyStrategy', " + ", ".join(pairs) + "}"


def id_write_time(message_id: str) -> int:
    """A CQL write timestamp (microseconds) that orders exactly like message ids.

    The id's millisecond times 1000, plus its top ten random bits scaled into 0..999: ids of
    one millisecond still map in order, and equal timestamps fall back to CQL's tie-break
    (the larger value wins), which for ids is again the later one.
    """
    value = id_value(message_id)
    return (value >> 80) * 1000 + ((((value >> 70) & 0x3FF) * 1000) >> 10)


def _checked(message_id: str) -> str:
    if not is_message_id(message_id):
        raise InvalidPayload("not a message id")
    return message_id


def _bucket(message_id: str) -> int:
    return bucket_of(timestamp_ms(_checked(message_id)))


def _message(room: str, row: Row) -> Message:
    id_, user_id, user_name, text, created, client_msg_id, edited, deleted, kind = row[:9]
    gone = bool(deleted)
    return Message(
        id=str(id_),
        room=room,
        user_id=str(user_id),
        user_name=str(user_name or ""),
        text="" if gone else str(text or ""),
        created_at_ms=int(created) if created is not None else timestamp_ms(str(id_)),
        client_msg_id=None if client_msg_id is None else str(client_msg_id),
        edited_at_ms=None if edited is None else int(edited),
        deleted=gone,
        kind=str(kind or "user"),
    )


def _messages(room: str, rows: list[Row]) -> list[Message]:
    # A row without an author would be a partial row resurrected by an update racing a
    # delete (Discord's failure mode); our deletes are updates, but never show one.
    return [_message(room, r) for r in rows if r[1] is not None]


def _settle(future: asyncio.Future[list[Row]], rows: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(list(rows or ()))


def _describe_failure(exc: BaseException) -> str:
    """A short, secret-free description of a driver exception."""
    if isinstance(exc, NoHostAvailable):
        causes = list((getattr(exc, "errors", None) or {}).values())
        if any(isinstance(c, AuthenticationFailed) for c in causes):
            return "ScyllaDB authentication failed (check SCYLLA_USERNAME/SCYLLA_PASSWORD)"
        if any(isinstance(c, ssl.SSLError) or "SSL" in type(c).__name__ for c in causes):
            return "TLS handshake with ScyllaDB failed (check SCYLLA_SSL_* files)"
        kinds = sorted({type(c).__name__ for c in causes})
        return "no ScyllaDB node reachable" + (f" ({', '.join(kinds)})" if kinds else "")
    if isinstance(exc, UnresolvableContactPoints):
        return "cannot resolve SCYLLA_CONTACT_POINTS"
    if isinstance(exc, AuthenticationFailed):
        return "ScyllaDB authentication failed (check SCYLLA_USERNAME/SCYLLA_PASSWORD)"
    if isinstance(exc, OperationTimedOut | Timeout | TimeoutError):
        return "ScyllaDB request timed out"
    if isinstance(exc, Unavailable):
        return "not enough ScyllaDB replicas alive for the configured consistency"
    if isinstance(exc, CoordinationFailure):
        return "ScyllaDB replicas failed the request"
    if isinstance(exc, Unauthorized):
        return "the ScyllaDB user lacks a permission chatsvc needs"
    if isinstance(exc, InvalidRequest):
        text = str(exc).lower()
        if "unconfigured table" in text or "does not exist" in text or "keyspace" in text:
            return "ScyllaDB schema is missing or outdated; run `chatsvc migrate`"
        return "ScyllaDB rejected a query"
    if isinstance(exc, ConnectionException | OSError):
        return "lost the connection to ScyllaDB"
    return f"ScyllaDB error ({type(exc).__name__})"


def _quiet_driver_logs() -> None:
    """The driver logs a full traceback for every failed (re)connection attempt, every few
    seconds during an outage. This adapter reports failures itself, once per kind and with
    a short message; the driver's own logs stay available with ``CHATSVC_LOG_LEVEL=DEBUG``."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("cassandra").setLevel(logging.CRITICAL)


class ScyllaStore:
    """:class:`~chatsvc.store.base.MessageStore` on a ScyllaDB (or Cassandra) cluster."""

    def __init__(self, settings: ScyllaSettings) -> None:
        _quiet_driver_logs()
        self._settings = settings
        self._ks = settings.keyspace
        self._timeout = settings.request_timeout_seconds
        self._consistency = ConsistencyLevel.name_to_value[settings.consistency]
        self._cluster: Any = None
        self._session: Any = None
        self._stmts: dict[str, Any] | None = None
        self._prepare_lock = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        self._rooms_written: OrderedDict[str, int] = OrderedDict()  # room -> earliest created ms
        self._failing: str | None = None

    # -- connection -----------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self._settings.tls
        if tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cafile=str(tls.ca_cert))
        if tls.client_cert is not None and tls.client_key is not None:
            context.load_cert_chain(
                str(tls.client_cert),
                str(tls.client_key),
                password=tls.key_password.reveal() if tls.key_password else None,
            )
        return context

    def _cluster_for(self, context: ssl.SSLContext | None) -> Any:
        s = self._settings
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=s.local_dc)),
            consistency_level=self._consistency,
            request_timeout=s.request_timeout_seconds,
            row_factory=tuple_factory,
        )
        auth = None
        if s.username is not None and s.password is not None:
            auth = PlainTextAuthProvider(username=s.username, password=s.password.reveal())
        return Cluster(
            contact_points=list(s.contact_points),
            port=s.port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            auth_provider=auth,
            ssl_context=context,
            # Short cap so a replica is back within seconds of the cluster (default: 10 min).
            reconnection_policy=ExponentialReconnectionPolicy(0.5, 10.0),
            connect_timeout=s.request_timeout_seconds,
            control_connection_timeout=s.request_timeout_seconds,
        )

    def _connect_blocking(self, context: ssl.SSLContext | None) -> tuple[Any, Any]:
        cluster = self._cluster_for(context)
        try:
            return cluster, cluster.connect()
        except BaseException:
            cluster.shutdown()
            raise

    async def open(self) -> None:
        """Connect to the cluster (in a thread: the driver's connect blocks)."""
        if self._session is not None:
            return
        where = ",".join(self._settings.contact_points) + f":{self._settings.port}"
        try:
            context = self._ssl_context()
        except (OSError, ValueError) as exc:  # CA/cert/key unreadable or invalid (SSLError is an OSError)
            raise StoreUnavailable(f"cannot set up TLS to ScyllaDB: {type(exc).__name__}") from exc
        try:
            self._cluster, self._session = await asyncio.to_thread(self._connect_blocking, context)
        except Exception as exc:
            raise StoreUnavailable(
                f"cannot connect to ScyllaDB at {where}: {_describe_failure(exc)}"
            ) from exc
        log.info("connected to ScyllaDB at %s (keyspace %s)", where, self._ks)

    async def aclose(self) -> None:
        """Shut the driver down (in a thread); idempotent."""
        cluster, self._cluster, self._session, self._stmts = self._cluster, None, None, None
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    def _require_session(self) -> Any:
        if self._session is None:
            raise StoreUnavailable("message store is not open")
        return self._session

    # -- schema ---------------------------------------------------------------------------

    def _migrate_blocking(self) -> int:
        session = self._require_session()
        ks = self._ks
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            f"{replication_cql(self._settings.replication)} AND durable_writes = true",
            timeout=DDL_TIMEOUT_SECONDS,
        )
        session.execute(_SCHEMA_VERSION_TABLE.format(ks=ks), timeout=DDL_TIMEOUT_SECONDS)
        version_get = session.prepare(_STATEMENTS["version_get"].format(ks=ks))
        version_put = session.prepare(_STATEMENTS["version_put"].format(ks=ks))
        row = session.execute(version_get, (SCHEMA_SCOPE,), timeout=self._timeout).one()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"keyspace {ks} has schema version {current}, newer than this chatsvc knows "
                f"({SCHEMA_VERSION}); upgrade chatsvc"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                session.execute(statement.format(ks=ks), timeout=DDL_TIMEOUT_SECONDS)
            session.execute(version_put, (SCHEMA_SCOPE, version, datetime.now(UTC)), timeout=self._timeout)
            log.info("ScyllaDB keyspace %s migrated to schema version %d", ks, version)
        return current

    async def migrate(self) -> None:
        """Create the keyspace and tables up to :data:`SCHEMA_VERSION`; safe to repeat."""
        self._require_session()
        try:
            await asyncio.to_thread(self._migrate_blocking)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"migrating keyspace {self._ks} failed: {_describe_failure(exc)}") from exc
        self._stmts = None  # tables may be new: prepare afresh
        await self._statements()

    def _prepare_blocking(self) -> dict[str, Any]:
        session = self._require_session()
        version_get = session.prepare(_STATEMENTS["version_get"].format(ks=self._ks))
        row = session.execute(version_get, (SCHEMA_SCOPE,), timeout=self._timeout).one()
        current = int(row[0]) if row else 0
        # Older: tables or columns this code needs may be missing. Newer is fine: migrations
        # only add, so replicas not yet upgraded keep working during a rolling upgrade.
        if current < SCHEMA_VERSION:
            raise StoreUnavailable(
                f"keyspace {self._ks} is at schema version {current}, this chatsvc needs "
                f"{SCHEMA_VERSION}; run `chatsvc migrate`"
            )
        prepared = {}
        for name, cql in _STATEMENTS.items():
            statement = session.prepare(cql.format(ks=self._ks))
            # Every statement is safe to retry: inserts of fixed values, updates that set
            # fixed values (or at fixed timestamps), reads.
            statement.is_idempotent = name not in _NOT_IDEMPOTENT
            if name in _NOT_IDEMPOTENT:
                # Paxos within the local DC, like LOCAL_QUORUM for everything else.
                statement.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL
            prepared[name] = statement
        return prepared

    async def _statements(self) -> dict[str, Any]:
        if self._stmts is not None:
            return self._stmts
        async with self._prepare_lock:
            if self._stmts is None:
                try:
                    self._stmts = await asyncio.to_thread(self._prepare_blocking)
                except StoreUnavailable:
                    raise
                except Exception as exc:
                    raise self._failed(exc) from exc
            return self._stmts

    # -- requests -------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> StoreUnavailable:
        message = _describe_failure(exc)
        if self._failing != message:  # log each kind of failure once, not every request
            self._failing = message
            log.warning("ScyllaDB request failed: %s (%s)", message, type(exc).__name__)
        return StoreUnavailable(message)

    def _succeeded(self) -> None:
        if self._failing is not None:
            log.info("ScyllaDB requests succeed again (after: %s)", self._failing)
            self._failing = None

    async def _run(
        self, name: str, params: Sequence[object], *, time_limit: float | None = None
    ) -> list[Row]:
        """Execute one prepared statement without blocking the loop; rows as tuples."""
        statements = await self._statements()
        session = self._require_session()
        timeout = self._timeout if time_limit is None else time_limit
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Row]] = loop.create_future()

        def on_rows(rows: Any) -> None:  # driver IO thread
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, done, rows, None)

        def on_error(exc: BaseException) -> None:  # driver IO thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, done, None, exc)

        async with self._in_flight:
            try:
                future = session.execute_async(statements[name].bind(params), timeout=timeout)
                future.add_callbacks(on_rows, on_error)
                async with asyncio.timeout(timeout + _CALLBACK_GRACE_SECONDS):
                    rows = await done
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                raise
            except Exception as exc:
                raise self._failed(exc) from exc
        self._succeeded()
        return rows

    @staticmethod
    async def _gather(*calls: Awaitable[T]) -> list[T]:
        """Run requests concurrently; wait for all of them, then raise the first failure."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        values: list[T] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            values.append(result)
        return values

    async def ping(self) -> None:
        """A trivial query (and the statements prepared): readiness. A failure names each
        node and why it fails (``127.0.0.1:9042: connection refused``)."""
        hosts = self._cluster.metadata.all_hosts() if self._cluster is not None else []
        try:
            # Bounded here too: the driver may never call back, and readiness allows 2 s.
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                await self._run("ping", (), time_limit=PING_TIMEOUT_SECONDS)
        except TimeoutError:
            late = f"ScyllaDB did not answer within {PING_TIMEOUT_SECONDS}s"
            raise StoreUnavailable(await failing_hosts(None, late, hosts)) from None
        except StoreUnavailable as exc:
            raise StoreUnavailable(await failing_hosts(exc.__cause__, exc.message, hosts)) from exc

    # -- messages -------------------------------------------------------------------------

    async def _room_state(self, room: str) -> tuple[int, int, str | None] | None:
        """(created ms, first bucket, last message id) or None for a room never written."""
        rows = await self._run("room_get", (room,))
        if not rows or rows[0][0] is None or rows[0][1] is None:
            return None
        created, first_bucket, last_id = rows[0]
        return int(created), int(first_bucket), None if last_id is None else str(last_id)

    def _room_writes(self, message: Message) -> list[Awaitable[list[Row]]]:
        writes: list[Awaitable[list[Row]]] = [
            self._run("room_last", (id_write_time(message.id), message.id, message.room))
        ]
        created = message.created_at_ms
        # Rewritten only for a message older than any this process wrote to the room (the
        # write is idempotent and earliest-wins; skipping it is just fewer writes).
        if created < self._rooms_written.get(message.room, created + 1):
            writes.append(
                self._run(
                    "room_create",
                    (_CREATION_TS_BASE - created, created, _bucket(message.id), message.room),
                )
            )
            writes.append(self._run("room_name_put", (message.room,)))
        return writes

    def _remember_room(self, room: str, created_ms: int) -> None:
        self._rooms_written[room] = min(created_ms, self._rooms_written.get(room, created_ms))
        self._rooms_written.move_to_end(room)
        while len(self._rooms_written) > ROOM_CACHE_SIZE:
            self._rooms_written.popitem(last=False)

    async def _write(self, message: Message) -> None:
        # Order matters. The room (first bucket, last id) and the idempotency key are written
        # before the message: once a message exists, paging can reach it and a retry finds it.
        # A failure in between leaves at most an empty bucket, a last id ahead of the newest
        # message, or a key without its message, which the retry completes (see append).
        writes = self._room_writes(message)
        if message.client_msg_id is not None:
            writes.append(
                self._run(
                    "key_put",
                    (
                        message.room,
                        message.user_id,
                        message.client_msg_id,
                        message.id,
                        message.created_at_ms,
                    ),
                )
            )
        await self._gather(*writes)
        await self._run(
            "msg_insert",
            (
                message.room,
                _bucket(message.id),
                message.id,
                message.user_id,
                message.user_name,
                message.text,
                message.created_at_ms,
                UNSET_VALUE if message.client_msg_id is None else message.client_msg_id,
                UNSET_VALUE if message.edited_at_ms is None else message.edited_at_ms,
                True if message.deleted else UNSET_VALUE,
                message.kind,
            ),
        )
        self._remember_room(message.room, message.created_at_ms)

    async def append(self, message: Message) -> tuple[Message, bool]:
        """Store ``message`` unless its ``(room, user_id, client_msg_id)`` was stored before.

        Check-then-write without a lightweight transaction: two sends of the same client
        message *at the same moment* (both past the check before either writes its key) are
        both stored. A client retries only after its ack timed out, so that window is a
        retry racing its own still-running original: rare, and the cost is one visible
        duplicate, never a lost message. An LWT (``INSERT ... IF NOT EXISTS``) would close
        it at the price of a Paxos round (4 round trips) on every send.
        """
        if message.client_msg_id is not None:
            keys = await self._run("key_get", (message.room, message.user_id, message.client_msg_id))
            if keys:
                original_id, created = str(keys[0][0]), int(keys[0][1])
                found = await self._get(message.room, original_id)
                if found is not None:
                    return _message(message.room, found[0]), False
                # An earlier attempt wrote the key and failed before the message: finish it
                # under the original id, so every attempt converges on one message.
                message = replace(message, id=original_id, created_at_ms=created)
        await self._write(message)
        return message, True

    async def _get(self, room: str, message_id: str) -> tuple[Row, int] | None:
        rows = await self._run("msg_get", (room, _bucket(message_id), message_id))
        if not rows or rows[0][1] is None:
            return None
        row = rows[0]
        return row[:9], int(row[9] or 0)

    async def get(self, room: str, message_id: str) -> Message | None:
        """One message by id (its bucket comes from the id)."""
        found = await self._get(room, message_id)
        return None if found is None else _message(room, found[0])

    async def history(self, room: str, *, before: str | None, limit: int) -> HistoryPage:
        """Newest first, strictly older than ``before``, walking buckets backwards.

        Stops when the page is full, at the room's first bucket, or after
        :data:`EMPTY_BUCKET_LIMIT` consecutive empty buckets; in the last case the page may be
        short (even empty) and ``next_before`` points below the last bucket looked at.
        """
        state = await self._room_state(room)
        if state is None or limit <= 0:
            return HistoryPage([], None)
        _created, first_bucket, last_id = state
        top = _bucket(last_id) if last_id is not None else bucket_of(int(time.time() * 1000))
        bucket = top if before is None else min(top, _bucket(before))
        start = before if before is not None else _ID_CEILING
        want = limit + 1
        found: list[Message] = []
        empty_run = 0
        while bucket >= first_bucket:
            in_bucket, ceiling = 0, start
            while len(found) < want:  # by chunks, so no result ever exceeds one driver page
                chunk = min(SCAN_CHUNK, want - len(found))
                rows = await self._run("msg_before", (room, bucket, ceiling, chunk))
                in_bucket += len(rows)
                found.extend(_messages(room, rows))
                if len(rows) < chunk:
                    break
                ceiling = str(rows[-1][0])
            if len(found) >= want:
                break
            empty_run = 0 if in_bucket else empty_run + 1
            if empty_run >= EMPTY_BUCKET_LIMIT and bucket > first_bucket:
                return HistoryPage(found, lowest_id_at(bucket * BUCKET_MS))
            bucket -= 1
        page = found[:limit]
        return HistoryPage(page, page[-1].id if len(found) > limit else None)

    async def after(self, room: str, after_id: str, limit: int) -> list[Message]:
        """Oldest first, strictly newer than ``after_id``: buckets walked forwards up to the
        bucket of the room's last message (no early stop: a short answer means "no more")."""
        state = await self._room_state(room)
        if state is None or limit <= 0:
            return []
        _created, first_bucket, last_id = state
        last = _bucket(last_id) if last_id is not None else bucket_of(int(time.time() * 1000))
        bucket = max(first_bucket, _bucket(after_id))
        floor = after_id
        found: list[Message] = []
        while bucket <= last and len(found) < limit:
            chunk = min(SCAN_CHUNK, limit - len(found))
            rows = await self._run("msg_after", (room, bucket, floor, chunk))
            found.extend(_messages(room, rows))
            if len(rows) == chunk:
                floor = str(rows[-1][0])  # more in this bucket: page on by clustering key
            else:
                bucket += 1
        return found[:limit]

    async def edit(self, room: str, message_id: str, text: str, at_ms: int) -> Message:
        """Replace the text of a live message.

        An edit racing a delete must not bring text back. Our delete is an update (never a
        row delete), so no partial row can appear; and both sides write, then read back
        (at the configured consistency one of the two sees the other's write): if the
        message turned out deleted, the edit scrubs the text again and reports NotFound.
        """
        bucket = _bucket(message_id)
        current = await self.get(room, message_id)
        if current is None or current.deleted:
            raise NotFound(f"no message {message_id} in {room}")
        await self._run("msg_edit", (text, at_ms, room, bucket, message_id))
        after = await self._get(room, message_id)
        if after is None:
            raise NotFound(f"no message {message_id} in {room}")
        row, written_at = after
        if row[7]:
            await self._scrub(room, bucket, message_id, row, written_at)
            raise NotFound(f"no message {message_id} in {room}")
        return _message(room, row)

    async def delete(self, room: str, message_id: str, at_ms: int) -> Message:
        """Clear the text and set ``deleted`` (an update: the message stays as a placeholder)."""
        bucket = _bucket(message_id)
        if await self._get(room, message_id) is None:
            raise NotFound(f"no message {message_id} in {room}")
        await self._run("msg_delete", (at_ms, room, bucket, message_id))
        after = await self._get(room, message_id)
        if after is None:
            raise NotFound(f"no message {message_id} in {room}")
        row, written_at = after
        await self._scrub(room, bucket, message_id, row, written_at)
        return _message(room, row)

    async def _scrub(self, room: str, bucket: int, message_id: str, row: Row, written_at: int) -> None:
        """An edit that landed after the delete (by write time) left text: overwrite it."""
        if row[3]:
            await self._run("msg_scrub", (written_at + 1, room, bucket, message_id))

    # -- read markers ---------------------------------------------------------------------

    async def mark_read(self, room: str, user_id: str, message_id: str) -> None:
        """Written at a timestamp derived from the id, so the marker never moves back."""
        _checked(message_id)
        # An id from the future (a crafted one) would pin the marker: cap its write time.
        written_at = min(id_write_time(message_id), int(time.time() * 1_000_000) + 60_000_000)
        await self._run("marker_put", (written_at, message_id, room, user_id))

    async def unread_count(self, room: str, user_id: str, cap: int) -> int:
        """Messages by others after the marker, newest buckets first, counted up to ``cap``."""
        if cap <= 0:
            return 0
        state, markers = await asyncio.gather(
            self._room_state(room), self._run("marker_get", (room, user_id))
        )
        if state is None:
            return 0
        _created, first_bucket, last_id = state
        marker = str(markers[0][0]) if markers and markers[0][0] is not None else ""
        bottom = max(first_bucket, _bucket(marker)) if marker else first_bucket
        bucket = _bucket(last_id) if last_id is not None else bucket_of(int(time.time() * 1000))
        count = 0
        while bucket >= bottom and count < cap:
            ceiling = _ID_CEILING
            while count < cap:
                rows = await self._run("msg_between", (room, bucket, marker, ceiling, SCAN_CHUNK))
                count += sum(1 for r in rows if r[1] is not None and r[1] != user_id and not r[2])
                if len(rows) < SCAN_CHUNK:
                    break
                ceiling = str(rows[-1][0])
            bucket -= 1
        return min(count, cap)

    # -- rooms ----------------------------------------------------------------------------

    async def list_rooms(self, *, after: str | None, limit: int) -> list[RoomInfo]:
        """Names from the room directory in order, then each room's state (concurrently)."""
        if limit <= 0:
            return []
        rows = await self._run("room_names", (after or "", limit))
        names = [str(r[0]) for r in rows]
        states = await self._gather(*(self._room_state(n) for n in names))
        rooms = []
        for name, state in zip(names, states, strict=True):
            if state is not None:
                created, _first, last_id = state
                rooms.append(RoomInfo(name, created, last_id))
        return rooms

    async def get_room(self, room: str) -> RoomInfo | None:
        """One room, or None if nothing was ever posted there."""
        state = await self._room_state(room)
        if state is None:
            return None
        created, _first, last_id = state
        return RoomInfo(room, created, last_id)

    # -- moderation -----------------------------------------------------------------------

    async def set_moderation(self, record: Moderation) -> None:
        """Upsert (a permanent record stores a far-future instant, not a null)."""
        until = PERMANENT_UNTIL_MS if record.until_ms is None else record.until_ms
        await self._run("mod_put", (record.kind, record.room, record.user_id, until, record.reason))

    async def clear_moderation(self, kind: str, room: str, user_id: str) -> None:
        """Delete the record (a rare single-row delete: one small tombstone)."""
        await self._run("mod_delete", (kind, room, user_id))

    async def get_moderation(self, kind: str, room: str, user_id: str) -> Moderation | None:
        """The record, if any."""
        rows = await self._run("mod_get", (kind, room, user_id))
        if not rows:
            return None
        until, reason = rows[0]
        until_ms = None if until is None or int(until) == PERMANENT_UNTIL_MS else int(until)
        return Moderation(kind, room, user_id, until_ms, str(reason or ""))

    # -- connection state recovery ----------------------------------------------------------

    async def append_event(self, event: RoomEvent) -> None:
        """One row in the event's (room, bucket) partition; expires with the table's TTL."""
        await self._run(
            "ev_insert",
            (
                event.room,
                _bucket(event.id),
                event.id,
                event.kind,
                event.message_id,
                json.dumps(event.payload),
            ),
        )

    async def events_after(self, room: str, after_id: str, limit: int) -> list[RoomEvent]:
        """Buckets walked forwards from ``after_id``'s to now's (events are at most days old)."""
        if limit <= 0:
            return []
        bucket, last = _bucket(after_id), bucket_of(int(time.time() * 1000))
        floor = after_id
        found: list[RoomEvent] = []
        while bucket <= last and len(found) < limit:
            chunk = min(SCAN_CHUNK, limit - len(found))
            rows = await self._run("ev_after", (room, bucket, floor, chunk))
            found.extend(RoomEvent(str(i), room, str(k), str(m), json.loads(str(p))) for i, k, m, p in rows)
            if len(rows) == chunk:
                floor = str(rows[-1][0])
            else:
                bucket += 1
        return found[:limit]

    async def save_session(self, record: SessionRecord) -> None:
        """Written ``USING TTL`` until its expiry: the cluster forgets it by itself."""
        ttl = max(1, -(-(record.expires_at_ms - int(time.time() * 1000)) // 1000))
        await self._run("sess_put", (record.pid, record.user_id, record.data, record.expires_at_ms, ttl))

    async def get_session(self, pid: str) -> SessionRecord | None:
        """The row while unexpired (TTL rounds up to a second, so the expiry is checked too)."""
        rows = await self._run("sess_get", (pid,))
        if not rows or rows[0][0] is None:
            return None
        user_id, data, expires_at = rows[0]
        if int(expires_at) <= int(time.time() * 1000):
            return None
        return SessionRecord(pid, str(user_id), str(data), int(expires_at))

    async def delete_session(self, pid: str) -> bool:
        """A lightweight transaction (``IF expires_at > now``): of two concurrent claims one
        wins. Rare (once per recovery), so the Paxos round is worth a strictly one-use session."""
        rows = await self._run("sess_take", (pid, int(time.time() * 1000)))
        return bool(rows and rows[0][0])

"""The CQL driver behind one small class: TLS, cluster and session, schema migration,
prepared statements, and requests that never block the event loop.

The only module that imports the driver (``scylla-driver``, imported as ``cassandra``);
every driver exception leaves it as :class:`~chatsvc.errors.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Sequence
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

from chatsvc.errors import StoreUnavailable
from chatsvc.settings import ScyllaSettings
from chatsvc.store.diagnose import failing_hosts
from chatsvc.store.scylla.schema import (
    MIGRATIONS,
    NOT_IDEMPOTENT,
    SCHEMA_SCOPE,
    SCHEMA_VERSION,
    SCHEMA_VERSION_TABLE,
    STATEMENTS,
    replication_cql,
)
from chatsvc.tls import tls_context

log = logging.getLogger(__name__)

DDL_TIMEOUT_SECONDS: Final = 60.0
PING_TIMEOUT_SECONDS: Final = 1.5
#: Extra wait on top of the driver's own request timeout before we give up on a callback.
_CALLBACK_GRACE_SECONDS: Final = 2.0
#: A bound value left out of the write (no null, so no tombstone).
UNSET: Final[Any] = UNSET_VALUE

Row = tuple[Any, ...]
T = TypeVar("T")


def _settle(future: asyncio.Future[list[Row]], rows: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(list(rows or ()))


def _column_exists(exc: InvalidRequest) -> bool:
    """Cassandra's and ScyllaDB's words for "that column is already there"."""
    text = str(exc).lower()
    return "already exist" in text or "conflicts with an existing column" in text


def describe_failure(exc: BaseException) -> str:
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


def quiet_driver_logs() -> None:
    """The driver logs a full traceback for every failed (re)connection attempt, every few
    seconds during an outage. This adapter reports failures itself, once per kind and with
    a short message; the driver's own logs stay available with ``CHATSVC_LOG_LEVEL=DEBUG``."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("cassandra").setLevel(logging.CRITICAL)


class ScyllaSession:
    """One cluster connection: opened, migrated and prepared once, then :meth:`run` per request."""

    def __init__(self, settings: ScyllaSettings) -> None:
        quiet_driver_logs()
        self._settings = settings
        self._ks = settings.keyspace
        self._timeout = settings.request_timeout_seconds
        self._consistency = ConsistencyLevel.name_to_value[settings.consistency]
        self._cluster: Any = None
        self._session: Any = None
        self._stmts: dict[str, Any] | None = None
        self._prepare_lock = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        self._failing: str | None = None
        #: Failure descriptions logged since requests last succeeded (a handful at most).
        self._logged_failures: set[str] = set()

    def ssl_context(self) -> ssl.SSLContext | None:
        tls = self._settings.tls
        if tls is None:
            return None
        return tls_context(
            ca_cert=tls.ca_cert, cert=tls.client_cert, key=tls.client_key, key_password=tls.key_password
        )

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
            context = self.ssl_context()
        except (OSError, ValueError) as exc:  # CA/cert/key unreadable or invalid (SSLError is an OSError)
            raise StoreUnavailable(f"cannot set up TLS to ScyllaDB: {type(exc).__name__}") from exc
        try:
            self._cluster, self._session = await asyncio.to_thread(self._connect_blocking, context)
        except Exception as exc:
            raise StoreUnavailable(f"cannot connect to ScyllaDB at {where}: {describe_failure(exc)}") from exc
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
        session.execute(SCHEMA_VERSION_TABLE.format(ks=ks), timeout=DDL_TIMEOUT_SECONDS)
        version_get = session.prepare(STATEMENTS["version_get"].format(ks=ks))
        version_put = session.prepare(STATEMENTS["version_put"].format(ks=ks))
        row = session.execute(version_get, (SCHEMA_SCOPE,), timeout=self._timeout).one()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"keyspace {ks} has schema version {current}, newer than this chatsvc knows "
                f"({SCHEMA_VERSION}); upgrade chatsvc"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                try:
                    session.execute(statement.format(ks=ks), timeout=DDL_TIMEOUT_SECONDS)
                except InvalidRequest as exc:
                    # ALTER ... ADD has no IF NOT EXISTS on every server: a column an
                    # interrupted run of this migration already added is not an error.
                    if not (statement.startswith("ALTER TABLE") and _column_exists(exc)):
                        raise
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
            raise StoreUnavailable(f"migrating keyspace {self._ks} failed: {describe_failure(exc)}") from exc
        self._stmts = None  # tables may be new: prepare afresh
        await self._statements()

    def _prepare_blocking(self) -> dict[str, Any]:
        session = self._require_session()
        version_get = session.prepare(STATEMENTS["version_get"].format(ks=self._ks))
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
        for name, cql in STATEMENTS.items():
            statement = session.prepare(cql.format(ks=self._ks))
            # Every statement is safe to retry: inserts of fixed values, updates that set
            # fixed values (or at fixed timestamps), reads.
            statement.is_idempotent = name not in NOT_IDEMPOTENT
            if name in NOT_IDEMPOTENT:
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
        message = describe_failure(exc)
        # Each kind of failure once per outage, not every request, nor every time a node
        # that is down alternates between timing out and refusing (issue 21).
        if message not in self._logged_failures:
            self._logged_failures.add(message)
            log.warning("ScyllaDB request failed: %s (%s)", message, type(exc).__name__)
        self._failing = message
        return StoreUnavailable(message)

    def _succeeded(self) -> None:
        if self._failing is not None:
            causes = "; ".join(sorted(self._logged_failures))
            log.info("ScyllaDB requests succeed again (after: %s)", causes)
            self._failing = None
            self._logged_failures.clear()

    async def run(self, name: str, params: Sequence[object], *, time_limit: float | None = None) -> list[Row]:
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
    async def gather(*calls: Awaitable[T]) -> list[T]:
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
                await self.run("ping", (), time_limit=PING_TIMEOUT_SECONDS)
        except TimeoutError:
            late = f"ScyllaDB did not answer within {PING_TIMEOUT_SECONDS}s"
            raise StoreUnavailable(await failing_hosts(None, late, hosts)) from None
        except StoreUnavailable as exc:
            raise StoreUnavailable(await failing_hosts(exc.__cause__, exc.message, hosts)) from exc

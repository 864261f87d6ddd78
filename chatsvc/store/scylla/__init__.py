"""History in ScyllaDB (or Apache Cassandra): the production store. The only package that
imports the CQL driver (``scylla-driver``, imported as ``cassandra``), and within it only
:mod:`.driver` does.

* :mod:`.schema`: the tables, their migrations and every CQL statement, as text.
* :mod:`.driver`: the driver itself: TLS, cluster and session, migrating, preparing, running
  requests without blocking the loop, and translating driver exceptions.
* :mod:`.store`: :class:`~chatsvc.store.scylla.store.ScyllaStore`, the store interfaces on
  top of one :class:`~chatsvc.store.scylla.driver.ScyllaSession`; each further concern is a
  mixin module of its own (:mod:`.recovery`, :mod:`.threads`, :mod:`.notifications`, ...),
  and :mod:`.rows` decodes the rows and maps ids to buckets and write timestamps for all.

Data model (Discord style, see docs/scylla.md): a room's messages are split into
partitions of ``(room, bucket)`` where a bucket is ten days (``store.base.BUCKET_MS``),
clustered by the time-sortable message id, newest first, so that even the busiest ticker
room never grows an unbounded partition. Reads walk buckets: backwards for history,
forwards for catch-up and unread counts, between the room's first bucket and the bucket of
its last message (both kept in ``rooms``).

Rules this package keeps:

* Every query is a prepared statement; every request goes through
  :meth:`~chatsvc.store.scylla.driver.ScyllaSession.run`, which bridges the driver's
  ``ResponseFuture`` callbacks (run on the driver's IO thread) to an asyncio future with
  ``loop.call_soon_threadsafe``, under a semaphore of ``max_in_flight``. Blocking driver
  calls (connect, prepare, DDL, shutdown) run in a thread.
* No nulls are written (a null is a tombstone): absent values are ``UNSET`` or simply
  not in the statement; "until lifted" moderation is stored as a far-future instant.
* No lightweight transactions on the hot path (only claiming a recovery session and the
  first open of a direct room, each once). Cells that must only move one way (last message id, read
  markers, a room's first bucket) are written ``USING TIMESTAMP`` derived from the value
  itself, so that last-write-wins keeps the right one whatever the order of arrival.
* Any driver exception becomes :class:`~chatsvc.errors.StoreUnavailable` with a short
  message of our own; ``append`` raises rather than return unless the message is written.
"""

"""The ScyllaDB schema: tables by migration version and every statement the store runs.

Text only (no driver import): :mod:`chatsvc.store.scylla.driver` applies and prepares it.
"""

from __future__ import annotations

from typing import Final

from chatsvc.store.base import EVENT_RETENTION_SECONDS
from chatsvc.store.scylla import cleanup, flagged, pending, relay

SCHEMA_VERSION: Final = 11
SCHEMA_SCOPE: Final = "chatsvc"
#: Retried sends are recognised for this long (the key rows expire; see docs/scylla.md).
IDEMPOTENCY_TTL_SECONDS: Final = 7 * 24 * 3600

COLUMNS = (
    "id, user_id, user_name, text, created_at, client_msg_id, edited_at, deleted, kind, pos, reply_to,"
    " mentions, tickers, sentiment"
)
#: Positions per ``room_stream`` partition: a room's stream is read partition by partition.
STREAM_CHUNK: Final = 10_000

#: Version 6 (issue 25: slow/surge mode, cashtags, sentiment), self-contained so the lead
#: can renumber it at merge. A message's cashtags (JSON list) and sentiment are columns of
#: its row; a room's mode is one row; sentiment is counted per room and UTC day partition in
#: minute (grain 'm') and hour ('h') slots, so the last hour and day are at most two slices
#: of two partitions each (a partition holds at most 1440 + 24 slots per sentiment).
MODES_MIGRATION: Final[tuple[str, ...]] = (
    "ALTER TABLE {ks}.messages ADD tickers text",
    "ALTER TABLE {ks}.messages ADD sentiment text",
    """CREATE TABLE IF NOT EXISTS {ks}.room_modes (
        room text PRIMARY KEY,
        slow_mode_seconds int,
        surge boolean
    )""",
    """CREATE TABLE IF NOT EXISTS {ks}.sentiment_counts (
        room text,
        day int,
        grain text,
        slot bigint,
        sentiment text,
        n counter,
        PRIMARY KEY ((room, day), grain, slot, sentiment)
    )""",
)
#: The statements of version 6's tables.
MODES_STATEMENTS: Final[dict[str, str]] = {
    "mode_get": "SELECT slow_mode_seconds, surge FROM {ks}.room_modes WHERE room = ?",
    "mode_slow": "UPDATE {ks}.room_modes SET slow_mode_seconds = ? WHERE room = ?",
    # A missing row or null flag is "not in surge": != true holds for it, = true does not.
    "mode_surge_on": "UPDATE {ks}.room_modes SET surge = true WHERE room = ? IF surge != true",
    "mode_surge_off": "UPDATE {ks}.room_modes SET surge = false WHERE room = ? IF surge = true",
    "sentiment_add": (
        "UPDATE {ks}.sentiment_counts SET n = n + 1"
        " WHERE room = ? AND day = ? AND grain = ? AND slot = ? AND sentiment = ?"
    ),
    "sentiment_get": (
        "SELECT sentiment, n FROM {ks}.sentiment_counts"
        " WHERE room = ? AND day = ? AND grain = ? AND slot >= ?"
    ),
    # The surge window: ids only, one slice of a (room, bucket) partition.
    "msg_ids_after": "SELECT id FROM {ks}.messages WHERE room = ? AND bucket = ? AND id > ? LIMIT ?",
    "msg_edit_tickers": (
        "UPDATE {ks}.messages SET text = ?, edited_at = ?, tickers = ?"
        " WHERE room = ? AND bucket = ? AND id = ?"
    ),
}

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
    # Room streams (docs/delivery.md): each message and event gets a position in its room's
    # stream. ``room_stream`` is the stream in position order, in partitions of
    # STREAM_CHUNK positions (a message row is a reference, its text stays in ``messages``;
    # an event row carries the event). ``room_heads`` is each room's newest position,
    # written USING TIMESTAMP of the position so it only moves forward; ``stream_meta``
    # holds the epoch. (ALTER ... ADD of a column that exists is tolerated by the driver,
    # so a migration interrupted half way can run again.)
    3: (
        "ALTER TABLE {ks}.messages ADD pos bigint",
        "ALTER TABLE {ks}.room_events ADD pos bigint",
        """CREATE TABLE IF NOT EXISTS {ks}.room_stream (
            room text,
            chunk bigint,
            pos bigint,
            kind text,
            ref text,
            target text,
            payload text,
            PRIMARY KEY ((room, chunk), pos)
        ) WITH CLUSTERING ORDER BY (pos ASC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.room_heads (
            room text PRIMARY KEY,
            head bigint
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.stream_meta (
            scope text PRIMARY KEY,
            epoch text
        )""",
    ),
    # Conversations (issue 24). A room without a ``conversations`` row is public (every
    # room before this version). Members are written twice, one table per query: by room
    # (access checks, member lists) and by user (a user's rooms); both partitions are
    # bounded by settings (members per private room, rooms per user).
    4: (
        """CREATE TABLE IF NOT EXISTS {ks}.conversations (
            name text PRIMARY KEY,
            kind text,
            title text,
            created_by text,
            created_at bigint
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.dm_pairs (
            pair text PRIMARY KEY,
            room text
        )""",
        """CREATE TABLE IF NOT EXISTS {ks}.members_by_room (
            room text,
            user_id text,
            role text,
            added_at bigint,
            PRIMARY KEY (room, user_id)
        ) WITH CLUSTERING ORDER BY (user_id ASC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.rooms_by_user (
            user_id text,
            room text,
            role text,
            added_at bigint,
            PRIMARY KEY (user_id, room)
        ) WITH CLUSTERING ORDER BY (room ASC)""",
        # Public rooms a user joined (the directory), bounded like rooms_by_user.
        """CREATE TABLE IF NOT EXISTS {ks}.joined_rooms (
            user_id text,
            room text,
            joined_at bigint,
            PRIMARY KEY (user_id, room)
        ) WITH CLUSTERING ORDER BY (room ASC)""",
        # Every block question names the blocker: one partition per blocker, bounded by
        # CHATSVC_MAX_BLOCKS_PER_USER; "does Y block X" is one row of Y's partition.
        """CREATE TABLE IF NOT EXISTS {ks}.blocks (
            blocker text,
            blocked text,
            at bigint,
            PRIMARY KEY (blocker, blocked)
        ) WITH CLUSTERING ORDER BY (blocked ASC)""",
    ),
    # Replies and threads (issue 25): a reply carries its parent's reference (JSON); the
    # replies of a parent live in the parent's (room, bucket) partition, clustered by
    # (parent, reply): a thread is a slice, a page's summaries one GROUP BY per bucket.
    5: (
        "ALTER TABLE {ks}.messages ADD reply_to text",
        "ALTER TABLE {ks}.messages ADD mentions text",
        """CREATE TABLE IF NOT EXISTS {ks}.replies (
            room text,
            bucket int,
            parent_id text,
            id text,
            PRIMARY KEY ((room, bucket), parent_id, id)
        ) WITH CLUSTERING ORDER BY (parent_id ASC, id DESC)""",
        # Reactions: counted rows in the message's partition, and the same rows by user.
        """CREATE TABLE IF NOT EXISTS {ks}.reactions (
            room text,
            bucket int,
            message_id text,
            emoji text,
            user_id text,
            PRIMARY KEY ((room, bucket), message_id, emoji, user_id)
        )""",
        # Pins: one partition per room (bounded by CHATSVC_MAX_PINS), newest message first.
        """CREATE TABLE IF NOT EXISTS {ks}.pins (
            room text,
            message_id text,
            pinned_by text,
            at bigint,
            PRIMARY KEY (room, message_id)
        ) WITH CLUSTERING ORDER BY (message_id DESC)""",
        # Mentions by user and room: unread mention counts are one slice after the marker.
        """CREATE TABLE IF NOT EXISTS {ks}.mentions_by_user (
            user_id text,
            room text,
            message_id text,
            PRIMARY KEY ((user_id, room), message_id)
        ) WITH CLUSTERING ORDER BY (message_id DESC)""",
        """CREATE TABLE IF NOT EXISTS {ks}.reactions_by_user (
            room text,
            bucket int,
            user_id text,
            message_id text,
            emoji text,
            PRIMARY KEY ((room, bucket, user_id), message_id, emoji)
        )""",
    ),
    # Spam flags (issue 25): by (room, day) and by day, expiring (chatsvc.store.scylla.flagged).
    6: flagged.MIGRATION,
    # Slow/surge mode, cashtags and sentiment (issue 25; 6 on its branch).
    8: MODES_MIGRATION,
}

#: Offline notifications (issue 24), a self-contained migration (7: spam flags took 6).
#: Two tables, one per query (docs/scylla.md):
#: ``notifications_by_user``: one partition per (user, day of the message), holding that
#: user's notified messages; the claim ``INSERT ... IF NOT EXISTS`` on it makes a (user,
#: message) notified once whichever replica tries, and keeps the position it got.
#: ``notification_log``: what StreamNotifications reads, in position order, one partition
#: per (hour, shard): a stream walks the hours, reading the SHARDS slices of each and merging.
NOTIFY_MIGRATION_VERSION: Final = 7
NOTIFY_MIGRATION: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS {ks}.notifications_by_user (
        user_id text,
        day int,
        message_id text,
        position bigint,
        PRIMARY KEY ((user_id, day), message_id)
    ) WITH CLUSTERING ORDER BY (message_id DESC) AND default_time_to_live = """
    + str(IDEMPOTENCY_TTL_SECONDS),
    """CREATE TABLE IF NOT EXISTS {ks}.notification_log (
        hour int,
        shard int,
        position bigint,
        user_id text,
        message_id text,
        room text,
        sender text,
        preview text,
        kind text,
        created_at bigint,
        PRIMARY KEY ((hour, shard), position, user_id, message_id)
    ) WITH default_time_to_live = """
    + str(IDEMPOTENCY_TTL_SECONDS),
    # The oldest hour with a notification: a stream from position 0 starts there. Written
    # USING TIMESTAMP derived from the hour, so the earliest wins whatever the order.
    """CREATE TABLE IF NOT EXISTS {ks}.notification_meta (
        scope text PRIMARY KEY,
        first_hour int
    )""",
)
MIGRATIONS[NOTIFY_MIGRATION_VERSION] = NOTIFY_MIGRATION
#: The relay of the outbox to CHATSVC_NOTIFY_TOPIC (issue 24; chatsvc.store.scylla.relay).
MIGRATIONS[9] = relay.MIGRATION
#: Messages whose offline notifications the history writer finished (issue 24,
#: ``NotifiedMessages``): a re-run of the records after the writer's last commit skips them
#: rather than judging "offline" again. One row per message, expiring with the idempotency
#: TTL (a re-run reaches back seconds, never days).
MIGRATIONS[10] = (
    """CREATE TABLE IF NOT EXISTS {ks}.notified_messages (
        room text,
        message_id text,
        PRIMARY KEY ((room, message_id))
    ) WITH default_time_to_live = """
    + str(IDEMPOTENCY_TTL_SECONDS),
)
#: Marks of messages whose offline notifications are not written yet, on ScyllaDB without
#: Kafka (issue 24, ``PendingNotifications``; chatsvc.store.scylla.pending).
MIGRATIONS[11] = pending.MIGRATION

SCHEMA_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS {ks}.schema_version (
    scope text,
    version int,
    applied_at timestamp,
    PRIMARY KEY (scope, version)
) WITH CLUSTERING ORDER BY (version DESC)"""

#: Every statement the store runs, prepared once per session.
STATEMENTS: Final[dict[str, str]] = {
    "ping": "SELECT release_version FROM system.local WHERE key = 'local'",
    "version_get": "SELECT version FROM {ks}.schema_version WHERE scope = ? LIMIT 1",
    "version_put": "INSERT INTO {ks}.schema_version (scope, version, applied_at) VALUES (?, ?, ?)",
    "msg_insert": (
        f"INSERT INTO {{ks}}.messages (room, bucket, {COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "msg_get": (
        f"SELECT {COLUMNS}, writetime(text) FROM {{ks}}.messages WHERE room = ? AND bucket = ? AND id = ?"
    ),
    "msg_before": f"SELECT {COLUMNS} FROM {{ks}}.messages WHERE room = ? AND bucket = ? AND id < ? LIMIT ?",
    "msg_after": (
        f"SELECT {COLUMNS} FROM {{ks}}.messages WHERE room = ? AND bucket = ? AND id > ?"
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
        "INSERT INTO {ks}.room_events (room, bucket, id, kind, message_id, payload, pos)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    "ev_get": (
        "SELECT id, kind, message_id, payload, pos FROM {ks}.room_events"
        " WHERE room = ? AND bucket = ? AND id = ?"
    ),
    "ev_after": (
        "SELECT id, kind, message_id, payload, pos FROM {ks}.room_events"
        " WHERE room = ? AND bucket = ? AND id > ? LIMIT ?"
    ),
    "stream_put": (
        "INSERT INTO {ks}.room_stream (room, chunk, pos, kind, ref, target, payload)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    "stream_after": (
        "SELECT pos, kind, ref, target, payload FROM {ks}.room_stream"
        " WHERE room = ? AND chunk = ? AND pos > ? LIMIT ?"
    ),
    "head_put": "UPDATE {ks}.room_heads USING TIMESTAMP ? SET head = ? WHERE room = ?",
    "head_get": "SELECT head FROM {ks}.room_heads WHERE room = ?",
    "epoch_get": "SELECT epoch FROM {ks}.stream_meta WHERE scope = ?",
    "epoch_put": "INSERT INTO {ks}.stream_meta (scope, epoch) VALUES (?, ?) IF NOT EXISTS",
    "sess_put": (
        "INSERT INTO {ks}.sessions (pid, user_id, data, expires_at) VALUES (?, ?, ?, ?) USING TTL ?"
    ),
    "sess_get": "SELECT user_id, data, expires_at FROM {ks}.sessions WHERE pid = ?",
    "sess_take": "DELETE FROM {ks}.sessions WHERE pid = ? IF expires_at > ?",
    "conv_put": (
        "INSERT INTO {ks}.conversations (name, kind, title, created_by, created_at) VALUES (?, ?, ?, ?, ?)"
    ),
    "conv_get": "SELECT kind, title, created_by, created_at FROM {ks}.conversations WHERE name = ?",
    "dm_claim": "INSERT INTO {ks}.dm_pairs (pair, room) VALUES (?, ?) IF NOT EXISTS",
    "dm_get": "SELECT room FROM {ks}.dm_pairs WHERE pair = ?",
    "member_put": "INSERT INTO {ks}.members_by_room (room, user_id, role, added_at) VALUES (?, ?, ?, ?)",
    "member_of_put": "INSERT INTO {ks}.rooms_by_user (user_id, room, role, added_at) VALUES (?, ?, ?, ?)",
    "member_delete": "DELETE FROM {ks}.members_by_room WHERE room = ? AND user_id = ?",
    "member_of_delete": "DELETE FROM {ks}.rooms_by_user WHERE user_id = ? AND room = ?",
    "member_get": "SELECT role, added_at FROM {ks}.members_by_room WHERE room = ? AND user_id = ?",
    "members_list": (
        "SELECT user_id, role, added_at FROM {ks}.members_by_room WHERE room = ? AND user_id > ? LIMIT ?"
    ),
    "members_count": "SELECT count(*) FROM {ks}.members_by_room WHERE room = ?",
    "rooms_of": "SELECT room, role, added_at FROM {ks}.rooms_by_user WHERE user_id = ? LIMIT ?",
    "joined_put": "INSERT INTO {ks}.joined_rooms (user_id, room, joined_at) VALUES (?, ?, ?)",
    "joined_delete": "DELETE FROM {ks}.joined_rooms WHERE user_id = ? AND room = ?",
    "joined_list": "SELECT room FROM {ks}.joined_rooms WHERE user_id = ? LIMIT ?",
    "block_put": "INSERT INTO {ks}.blocks (blocker, blocked, at) VALUES (?, ?, ?)",
    "block_delete": "DELETE FROM {ks}.blocks WHERE blocker = ? AND blocked = ?",
    "blocks_of": "SELECT blocked FROM {ks}.blocks WHERE blocker = ? LIMIT ?",
    "block_get": "SELECT at FROM {ks}.blocks WHERE blocker = ? AND blocked = ?",
    "reply_put": "INSERT INTO {ks}.replies (room, bucket, parent_id, id) VALUES (?, ?, ?, ?)",
    "reply_summary": (
        "SELECT parent_id, count(*), max(id) FROM {ks}.replies"
        " WHERE room = ? AND bucket = ? AND parent_id IN ? GROUP BY parent_id"
    ),
    "mention_put": "INSERT INTO {ks}.mentions_by_user (user_id, room, message_id) VALUES (?, ?, ?)",
    "mention_after": (
        "SELECT message_id FROM {ks}.mentions_by_user"
        " WHERE user_id = ? AND room = ? AND message_id > ? LIMIT ?"
    ),
    "pin_put": "INSERT INTO {ks}.pins (room, message_id, pinned_by, at) VALUES (?, ?, ?, ?) IF NOT EXISTS",
    "pin_delete": "DELETE FROM {ks}.pins WHERE room = ? AND message_id = ? IF EXISTS",
    "pin_list": "SELECT message_id, pinned_by, at FROM {ks}.pins WHERE room = ? LIMIT ?",
    "react_put": (
        "INSERT INTO {ks}.reactions (room, bucket, message_id, emoji, user_id) VALUES (?, ?, ?, ?, ?)"
        " IF NOT EXISTS"
    ),
    "react_delete": (
        "DELETE FROM {ks}.reactions WHERE room = ? AND bucket = ? AND message_id = ? AND emoji = ?"
        " AND user_id = ? IF EXISTS"
    ),
    "react_mine_put": (
        "INSERT INTO {ks}.reactions_by_user (room, bucket, user_id, message_id, emoji) VALUES (?, ?, ?, ?, ?)"
    ),
    "react_mine_delete": (
        "DELETE FROM {ks}.reactions_by_user WHERE room = ? AND bucket = ? AND user_id = ? AND message_id = ?"
        " AND emoji = ?"
    ),
    "react_counts": (
        "SELECT message_id, emoji, count(*) FROM {ks}.reactions"
        " WHERE room = ? AND bucket = ? AND message_id IN ? GROUP BY message_id, emoji"
    ),
    "react_mine": (
        "SELECT message_id, emoji FROM {ks}.reactions_by_user"
        " WHERE room = ? AND bucket = ? AND user_id = ? AND message_id IN ?"
    ),
    "reply_page": (
        "SELECT id FROM {ks}.replies WHERE room = ? AND bucket = ? AND parent_id = ? AND id < ? LIMIT ?"
    ),
    **flagged.STATEMENTS,
    **cleanup.STATEMENTS,
    # Offline notifications (NOTIFY_MIGRATION).
    "notif_claim": (
        "INSERT INTO {ks}.notifications_by_user (user_id, day, message_id, position) VALUES (?, ?, ?, ?)"
        " IF NOT EXISTS"
    ),
    "notif_claim_get": (
        "SELECT position FROM {ks}.notifications_by_user WHERE user_id = ? AND day = ? AND message_id = ?"
    ),
    "notif_log_put": (
        "INSERT INTO {ks}.notification_log (hour, shard, position, user_id, message_id, room, sender,"
        " preview, kind, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "notif_log_delete": (
        "DELETE FROM {ks}.notification_log WHERE hour = ? AND shard = ? AND position = ? AND user_id = ?"
        " AND message_id = ?"
    ),
    "notif_log_after": (
        "SELECT position, user_id, message_id, room, sender, preview, kind, created_at"
        " FROM {ks}.notification_log WHERE hour = ? AND shard = ? AND position > ? AND position <= ? LIMIT ?"
    ),
    "notif_first_put": "UPDATE {ks}.notification_meta USING TIMESTAMP ? SET first_hour = ? WHERE scope = ?",
    "notif_first_get": "SELECT first_hour FROM {ks}.notification_meta WHERE scope = ?",
    "notif_done_get": "SELECT room FROM {ks}.notified_messages WHERE room = ? AND message_id = ?",
    "notif_done_put": "INSERT INTO {ks}.notified_messages (room, message_id) VALUES (?, ?)",
    **relay.STATEMENTS,
    **pending.STATEMENTS,
    **MODES_STATEMENTS,
}
#: Statements a retry could change the outcome of (a conditional delete applied twice says
#: "not applied" the second time).
NOT_IDEMPOTENT: Final = frozenset(
    {"sess_take", "epoch_put", "dm_claim", "react_put", "react_delete", "pin_put", "pin_delete"}
    | {"notif_claim"}  # NOTIFY_MIGRATION
    | relay.NOT_IDEMPOTENT
    # Issue 25: the surge flip (an LWT) and the sentiment counter (an increment applied
    # twice counts twice; a timed-out one is lost rather than doubled).
    | {"mode_surge_on", "mode_surge_off", "sentiment_add"}
)


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

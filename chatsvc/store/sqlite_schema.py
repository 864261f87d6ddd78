"""The embedded store's schema: its migrations, and opening and migrating the file.

Each version's statements run once, in order, in one transaction with the file's
``user_version`` (``chatsvc migrate``, or on open); existing rooms and rows are kept.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chatsvc.store import (
    sqlite_conversations,
    sqlite_flags,
    sqlite_modes,
    sqlite_reactions,
    sqlite_relay,
    sqlite_threads,
)

SCHEMA_VERSION = 11

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS messages (
            room TEXT NOT NULL,
            id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            user_name TEXT NOT NULL,
            text TEXT NOT NULL,
            client_msg_id TEXT,
            created_at_ms INTEGER NOT NULL,
            edited_at_ms INTEGER,
            deleted INTEGER NOT NULL DEFAULT 0,
            kind TEXT NOT NULL DEFAULT 'user',
            PRIMARY KEY (room, id)
        ) WITHOUT ROWID""",
        """CREATE UNIQUE INDEX IF NOT EXISTS messages_client_msg_id
            ON messages (room, user_id, client_msg_id) WHERE client_msg_id IS NOT NULL""",
        """CREATE TABLE IF NOT EXISTS read_markers (
            room TEXT NOT NULL,
            user_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            PRIMARY KEY (room, user_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS rooms (
            name TEXT PRIMARY KEY,
            created_at_ms INTEGER NOT NULL,
            last_message_id TEXT
        ) WITHOUT ROWID""",
    ),
    2: (
        """CREATE TABLE IF NOT EXISTS moderation (
            kind TEXT NOT NULL,
            room TEXT NOT NULL,
            user_id TEXT NOT NULL,
            until_ms INTEGER,
            reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (kind, room, user_id)
        ) WITHOUT ROWID""",
    ),
    3: (
        """CREATE TABLE IF NOT EXISTS room_events (
            room TEXT NOT NULL,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            message_id TEXT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (room, id)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS sessions (
            pid TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            data TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at_ms)",
    ),
    # Room streams (docs/delivery.md): a position per message and event, per room, assigned
    # in the insert's transaction; rows stored before get positions in id order.
    4: (
        "ALTER TABLE messages ADD COLUMN pos INTEGER",
        "ALTER TABLE room_events ADD COLUMN pos INTEGER",
        """CREATE TEMP TABLE stream_backfill AS
            SELECT room, id, row_number() OVER (PARTITION BY room ORDER BY id) AS n
            FROM (SELECT room, id FROM messages UNION ALL SELECT room, id FROM room_events)""",
        """UPDATE messages SET pos = b.n FROM temp.stream_backfill AS b
            WHERE messages.room = b.room AND messages.id = b.id""",
        """UPDATE room_events SET pos = b.n FROM temp.stream_backfill AS b
            WHERE room_events.room = b.room AND room_events.id = b.id""",
        "CREATE UNIQUE INDEX IF NOT EXISTS messages_pos ON messages (room, pos)",
        "CREATE UNIQUE INDEX IF NOT EXISTS room_events_pos ON room_events (room, pos)",
        # head: the newest position; floor: positions up to it may be gone (purged events).
        """CREATE TABLE IF NOT EXISTS room_streams (
            room TEXT PRIMARY KEY,
            head INTEGER NOT NULL,
            floor INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        """INSERT INTO room_streams (room, head)
            SELECT room, max(n) FROM temp.stream_backfill GROUP BY room""",
        "DROP TABLE temp.stream_backfill",
        "CREATE TABLE IF NOT EXISTS stream_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        "INSERT OR IGNORE INTO stream_meta (key, value) VALUES ('epoch', lower(hex(randomblob(8))))",
    ),
    # Conversations (issue 24): private and direct rooms, members; existing rooms stay public.
    5: sqlite_conversations.MIGRATION,
    # Replies and threads (issue 25).
    6: sqlite_threads.MIGRATION + sqlite_reactions.MIGRATION,
    # Spam flags (issue 25).
    7: sqlite_flags.MIGRATION,
    # Slow/surge mode, cashtags and sentiment (issue 25).
    8: sqlite_modes.MIGRATION,
    # The offline-notification relay to a Kafka topic (issue 24).
    9: sqlite_relay.MIGRATION,
    # Messages whose offline notifications are not written yet (issue 24: marked in the
    # message's transaction, cleared once written; a restart writes what is left).
    10: (
        """CREATE TABLE IF NOT EXISTS notify_pending (
            room TEXT NOT NULL,
            message_id TEXT NOT NULL,
            PRIMARY KEY (room, message_id)
        ) WITHOUT ROWID""",
    ),
    # Messages whose notifications the history writer finished (cluster mode, issue 24:
    # a re-run of the records after the last commit does not judge "offline" again).
    11: (
        """CREATE TABLE IF NOT EXISTS notify_done (
            room TEXT NOT NULL,
            message_id TEXT NOT NULL,
            PRIMARY KEY (room, message_id)
        ) WITHOUT ROWID""",
    ),
}


def connect(path: str) -> sqlite3.Connection:
    """Open the file (creating its directory) in WAL mode with a busy timeout."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=5.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection) -> None:
    """Apply every migration after the file's ``user_version``, each in order."""
    with db:
        row = db.execute("PRAGMA user_version").fetchone()
        current = int(row[0]) if row else 0
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={version}")

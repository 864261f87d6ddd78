"""The spam-flag part of :class:`~chatsvc.store.scylla.store.ScyllaStore` (issue 25).

Flags are written twice, one table per query: ``flagged_by_room`` partitioned by (room,
day) for a room's moderators, ``flagged_by_day`` partitioned by day for the whole service;
both clustered by the flag's time-sortable id, newest first, and expiring with the table's
``default_time_to_live`` (:data:`~chatsvc.store.base.FLAG_RETENTION_SECONDS`). A page walks
days backwards from its cursor's day, at most the retention's days (one slice query each),
never ALLOW FILTERING. Schema version 6 here, self-contained (the lead renumbers at merge).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Final

from chatsvc.model.ids import timestamp_ms
from chatsvc.model.messages import Flag
from chatsvc.store.base import FLAG_RETENTION_SECONDS, flag_of_row, flag_row

if TYPE_CHECKING:
    from chatsvc.store.scylla.driver import Row, ScyllaSession

DAY_MS: Final = 24 * 3600 * 1000
#: Days a page may walk back: every flag older than that has expired.
MAX_DAYS: Final = FLAG_RETENTION_SECONDS * 1000 // DAY_MS + 1

_TTL = f" WITH CLUSTERING ORDER BY (id DESC) AND default_time_to_live = {FLAG_RETENTION_SECONDS}"
_FIELDS = (
    "room text, user_id text, user_name text, rule text, action text, text text, message_id text, at bigint"
)

MIGRATION: Final[tuple[str, ...]] = (
    "CREATE TABLE IF NOT EXISTS {ks}.flagged_by_room (day int, id text, "
    + _FIELDS
    + ", PRIMARY KEY ((room, day), id))"
    + _TTL,
    "CREATE TABLE IF NOT EXISTS {ks}.flagged_by_day (day int, id text, "
    + _FIELDS
    + ", PRIMARY KEY (day, id))"
    + _TTL,
)

#: In :data:`~chatsvc.store.base.FlagRow`'s order.
_COLUMNS = "id, room, user_id, user_name, rule, action, text, message_id, at"
_MARKS = ", ".join("?" * 10)
STATEMENTS: Final[dict[str, str]] = {
    "flag_put_room": f"INSERT INTO {{ks}}.flagged_by_room (day, {_COLUMNS}) VALUES ({_MARKS})",
    "flag_put_day": f"INSERT INTO {{ks}}.flagged_by_day (day, {_COLUMNS}) VALUES ({_MARKS})",
    "flag_page_room": (
        f"SELECT {_COLUMNS} FROM {{ks}}.flagged_by_room WHERE room = ? AND day = ? AND id < ? LIMIT ?"
    ),
    "flag_page_day": f"SELECT {_COLUMNS} FROM {{ks}}.flagged_by_day WHERE day = ? AND id < ? LIMIT ?",
}


class ScyllaFlags:
    """:class:`~chatsvc.store.base.FlagStore` on CQL; mixed into ScyllaStore."""

    #: ScyllaStore's session.
    _db: ScyllaSession

    def _flag_cql(self, name: str, params: Sequence[object]) -> Awaitable[list[Row]]:
        return self._db.run(name, params)

    async def add_flag(self, flag: Flag) -> None:
        """Two upserts (idempotent under retries), by room and by day."""
        day = timestamp_ms(flag.id) // DAY_MS
        values = flag_row(flag)
        await self._db.gather(
            self._flag_cql("flag_put_room", (day, *values)), self._flag_cql("flag_put_day", (day, *values))
        )

    async def list_flags(self, room: str | None, *, before: str | None, limit: int) -> list[Flag]:
        """Day by day backwards from ``before``'s day (or today), one slice each."""
        cursor = before or "~"
        day = (timestamp_ms(before) if before else int(time.time() * 1000)) // DAY_MS
        found: list[Flag] = []
        for _ in range(MAX_DAYS):
            if len(found) >= limit or day < 0:
                break
            want = limit - len(found)
            if room is None:
                rows = await self._flag_cql("flag_page_day", (day, cursor, want))
            else:
                rows = await self._flag_cql("flag_page_room", (room, day, cursor, want))
            found.extend(flag_of_row(r) for r in rows)
            day -= 1
        return found

"""What chatsvc does with a client's undecodable or unexpected packets: count each one, log
one line per connection at most, never a traceback.

python-engineio and python-socketio log a client's garbage themselves, with
``logger.exception`` (a traceback per packet: "Unknown receive error", "message async
handler error", "post request handler error") or a warning per packet ("... is not
connected to namespace ..."). 200 malformed 8-byte packets wrote 326 KB of tracebacks.
chatsvc's transport code catches each such case before it reaches those loggers and hands
it to :class:`BadPackets`; :class:`LibraryLogFilter` is the backstop for paths chatsvc does
not replace (python-engineio's stock websocket reader): such a record loses its traceback
and counts instead of repeating.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from engineio import packet as eio_packet

_log = logging.getLogger(__name__)

#: Attribute set on an Engine.IO socket once one of its bad packets was logged.
_LOGGED = "_chatsvc_bad_packet_logged"

#: Across all connections, at most this many log lines per reason per
#: :data:`LOG_WINDOW_SECONDS` (many sessions each sending one bad packet must not amplify
#: either); a line says how many were only counted since the last one.
LOG_LINES_PER_WINDOW = 5
LOG_WINDOW_SECONDS = 60.0

#: The ``reason`` label values (a closed set: a label never carries client text).
REASONS = frozenset(
    {
        "eio_undecodable",  # not an Engine.IO packet (empty, bad type digit, bad base64)
        "eio_unexpected",  # an Engine.IO packet type a client may not send (OPEN, PING, NOOP...)
        "sio_undecodable",  # not a Socket.IO packet (bad JSON, bad ack id, bad attachment count)
        "sio_unexpected",  # a Socket.IO packet type or shape a client may not send
        "binary",  # BINARY_EVENT / BINARY_ACK or a binary frame: chatsvc has no binary payloads
        "bad_namespace",  # an event or ack for a namespace the socket is not connected to
        "too_large",  # a long-polling POST over the buffer limit
        "bad_post",  # a long-polling POST without a length, or undecodable as a payload
    }
)


class _Window:
    """Log lines of one reason in the current window, and what was only counted."""

    __slots__ = ("lines", "started", "unlogged")

    def __init__(self, now: float) -> None:
        self.started = now
        self.lines = 0
        self.unlogged = 0


class BadPackets:
    """Counts bad packets by reason (``observe``, the Prometheus counter's hook) and logs
    some in one line each: reason and a short description of what was wrong, never the
    packet's content, the session id or a traceback. A line is written for the first bad
    packet of a connection (or of a request without a session), and then only if its
    reason has had fewer than :data:`LOG_LINES_PER_WINDOW` lines in the current window."""

    def __init__(self) -> None:
        #: Called with the reason for every bad packet (the app points it at its metric).
        self.observe: Callable[[str], None] = _ignore
        self._windows: dict[str, _Window] = {}

    def report(self, sock: Any, reason: str, what: str) -> None:
        """``sock`` (an Engine.IO socket, or None without a session) sent a bad packet."""
        if reason not in REASONS:  # a programming error, not the client's: keep the label set closed
            raise ValueError(f"unknown bad packet reason {reason!r}")
        self.observe(reason)
        if sock is not None:
            if getattr(sock, _LOGGED, False):
                return
            setattr(sock, _LOGGED, True)
        now = time.monotonic()
        window = self._windows.get(reason)
        if window is None or now - window.started >= LOG_WINDOW_SECONDS:
            unlogged = window.unlogged if window is not None else 0
            window = self._windows[reason] = _Window(now)
            window.unlogged = unlogged
        if window.lines >= LOG_LINES_PER_WINDOW:
            window.unlogged += 1
            return
        window.lines += 1
        unlogged, window.unlogged = window.unlogged, 0
        _log.warning(
            "bad packet from a client (%s: %s); only counted from now on for this connection%s",
            reason,
            what,
            f" ({unlogged} more from other connections were only counted)" if unlogged else "",
        )


def _ignore(_: str) -> None:
    """The default ``observe``: no metric."""


#: python-engineio/python-socketio log messages (with a traceback) that a client's garbage
#: reaches on code paths chatsvc does not replace.
_CLIENT_INPUT_MESSAGES = frozenset({"Unknown receive error", "post request handler error"})

#: The exceptions those paths raise for a client's bytes (the decoders' errors). Anything
#: else keeps its traceback: it is a bug, not a client's garbage.
_CLIENT_INPUT_ERRORS = (ValueError, IndexError, RecursionError)


#: "session <id>" in python-engineio's messages (``_log_error_once`` f-strings).
_SESSION_ID = re.compile(r"\b(session) \S+")


class LibraryLogFilter(logging.Filter):
    """On python-engineio's and python-socketio's loggers: a record about a client's garbage
    (one of :data:`_CLIENT_INPUT_MESSAGES` caused by a decoder error) is counted in
    ``bad_packets`` and dropped (:class:`BadPackets` logs some, in one line). Session ids
    in its messages are redacted."""

    def __init__(self, bad_packets: BadPackets) -> None:
        super().__init__()
        self.bad_packets = bad_packets

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "session " in record.msg:
            # python-engineio names the session id a request carried ("Invalid session
            # <sid>"): a live one is a bearer credential for polling, and never logged.
            record.msg = _SESSION_ID.sub(r"\1 <redacted>", record.msg)
        exc = record.exc_info[1] if record.exc_info else None
        if record.msg in _CLIENT_INPUT_MESSAGES and isinstance(exc, _CLIENT_INPUT_ERRORS):
            self.bad_packets.report(None, "eio_undecodable", type(exc).__name__)
            return False
        return True


#: What python-engineio's and python-socketio's decoders raise for a client's bytes:
#: ``int()`` of a non-digit type, bad base64 (``binascii.Error``), bad UTF-8, bad JSON
#: (``ValueError``), a missing character (``IndexError``), JSON nested deeper than the
#: interpreter's recursion limit (``RecursionError``).
DECODE_ERRORS = (ValueError, IndexError, RecursionError)


def decode_or_report(sock: Any, p: Any) -> eio_packet.Packet | None:
    """``p`` decoded as an Engine.IO packet; None (counted as bad) if it is not one."""
    if p is None:
        return None  # the websocket closed
    try:
        pkt = eio_packet.Packet(encoded_packet=p)
    except DECODE_ERRORS as exc:
        sock.server.bad_packets.report(sock, "eio_undecodable", type(exc).__name__)
        return None
    if not known_type(pkt):
        sock.server.bad_packets.report(sock, "eio_unexpected", "no such packet type")
        return None
    return pkt


def known_type(pkt: eio_packet.Packet) -> bool:
    """Whether ``pkt``'s type digit names an Engine.IO packet type (``7``-``9`` decode, and
    then fail ``AsyncSocket.receive``'s log call with an IndexError)."""
    return 0 <= int(pkt.packet_type) < len(eio_packet.packet_names)

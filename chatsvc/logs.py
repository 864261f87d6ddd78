"""Logging setup: plain or JSON lines, secrets and session ids redacted from every record.

``CHATSVC_LOG_FORMAT=text`` (default) writes ``time level logger: message``; ``json``
writes one JSON object a line with ``time``, ``level``, ``logger``, ``message``, the
``sid``/``user_id``/``room``/``request_id`` of the work being done when known (from
:func:`bind`), and ``exc`` (the traceback as one escaped string). Redaction runs on the
final text of every record, tracebacks included, so a token quoted by a library's error
message (aiohttp quotes the first 100 bytes of an oversize header) never reaches the log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

#: Redaction rules, applied in order. Partial tokens matter: aiohttp cuts an oversize header
#: at 100 bytes, so a JWT may appear without its signature or even without its first dot.
_SECRET_PATTERNS = (
    # Query parameters that are credentials: the token, and Engine.IO's sid (a bearer
    # credential for long-polling: whoever knows it can post and read as that client).
    (re.compile(r"(?i)\b((?:token|sid)=)[^&\s\"'\\]+"), r"\1***"),
    # The sid inside a JSON or Python-repr payload (the Engine.IO OPEN packet).
    (re.compile(r"""(?i)(["']sid["']\s*:\s*["'])[^"'\\]+"""), r"\1***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    # A long base64url run soon after "authorization" (any scheme, or none).
    (re.compile(r"(?i)(authorization\W{1,20}(?:[a-z]+\s+)?)[A-Za-z0-9._~+/=-]{16,}"), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "***jwt***"),
    # Any base64url run that starts like a JWT segment ('{"' encodes as eyJ), cut or not.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)*"), "***jwt***"),
)


def redact(text: str) -> str:
    """Hide tokens, partial tokens and Engine.IO session ids in a log line."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# -- context: what the current task is working on -------------------------------------------

_SID: contextvars.ContextVar[str | None] = contextvars.ContextVar("chatsvc_log_sid", default=None)
_USER: contextvars.ContextVar[str | None] = contextvars.ContextVar("chatsvc_log_user", default=None)
_ROOM: contextvars.ContextVar[str | None] = contextvars.ContextVar("chatsvc_log_room", default=None)
_REQUEST: contextvars.ContextVar[str | None] = contextvars.ContextVar("chatsvc_log_request", default=None)
_CONTEXT = (("sid", _SID), ("user_id", _USER), ("room", _ROOM), ("request_id", _REQUEST))


def bind(sid: str | None, user_id: str | None, payload: object = None) -> None:
    """Name the Socket.IO connection, user and room (from a client event's payload) the
    current task works for.

    Called per client event; the values stay in the task's context until the next call.
    The room is taken only when the payload is an object whose ``room`` is a string.
    """
    room = payload.get("room") if isinstance(payload, dict) else None
    _SID.set(sid)
    _USER.set(user_id)
    _ROOM.set(room[:128] if isinstance(room, str) else None)


def bind_request(request_id: str | None) -> None:
    """Name the HTTP request the current task serves."""
    _REQUEST.set(request_id)


def bound_request() -> str | None:
    """The id of the HTTP request the current task serves (:func:`bind_request`), if any.

    aiohttp runs each request's handler, its response's preparation and its access log in
    a task of the request's own, so this is the request's id there; kept in the context,
    not in the request (a websocket's request would hold a dict for it for its life)."""
    return _REQUEST.get()


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (as ``sid``, ``user_id``, ``room``, ``request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


#: Client libraries whose warnings about network failures carry a traceback each retry.
_DRIVER_LOGGERS = ("cassandra", "aiokafka", "kafka")


class DriverTracebackFilter(logging.Filter):
    """Turns a driver's warning traceback (the CQL driver logs one per reconnect attempt)
    into one line ending with the exception's type and text. Errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.levelno < logging.ERROR and record.name.startswith(_DRIVER_LOGGERS):
            exc = record.exc_info[1]
            if exc is not None:
                message = record.getMessage().rstrip(": ")
                record.msg, record.args = f"{message}: {type(exc).__name__}: {exc}", None
            record.exc_info, record.exc_text = None, None
        return True


class TextFormatter(logging.Formatter):
    """``time level logger: message``, redacted after formatting (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line; context fields only when known; traceback as one field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, _ in _CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = redact(str(value))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        # ensure_ascii: a lone surrogate from a client cannot make the line unencodable.
        return json.dumps(entry, ensure_ascii=True, default=str)


LOG_FORMATS = ("text", "json")


def configure(level: str, log_format: str = "text") -> None:
    """Root logging for the process: one redacting handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(DriverTracebackFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Engine.IO and Socket.IO log every packet at INFO; keep them to warnings.
    for noisy in ("engineio.server", "socketio.server", "aiokafka", "cassandra"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _is_polling(request: BaseRequest) -> bool:
    return request.query.get("transport") == "polling"


class AccessLogger(AbstractAccessLogger):
    """``METHOD path?query status bytes time``, with ``token`` and ``sid`` redacted.

    Long-polling requests (one every ping interval per idle client, more when busy) are
    logged at DEBUG; everything else at INFO.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        level = logging.DEBUG if _is_polling(request) else logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        self.logger.log(
            level,
            '%s "%s %s" %s %s %.3fs',
            request.remote,
            request.method,
            redact(str(request.rel_url)),
            response.status,
            response.body_length,
            time,
            extra={"request_id": _REQUEST.get()},
        )

"""python-socketio's packet with a cheaper binary check (pinned: python-socketio 5.18.1).

``socketio.packet.Packet.__init__`` asks ``data_is_binary`` of every packet it builds (each
ack, each broadcast, each single emit) whether its data holds ``bytes`` anywhere, so that it
can be sent as a BINARY_EVENT / BINARY_ACK with attachments. python-socketio answers by
recursion with a list comprehension and a ``functools.reduce`` per list and dict: about
5-6 us for a chat message's ack or delivery, twice per received message. The answer here is
the same (``bytes``/``bytearray`` found anywhere inside lists and dicts, their subclasses
included, tuples not looked into, exactly as upstream) from one loop that skips the plain
scalars a chat payload is made of: about 1.3-1.5 us (bench/README.md, "Fourth round").

Its JSON codec (:class:`PacketJSON`) is python-engineio's ``engineio.json`` with the stdlib
encoder and decoder built once: ``Packet.encode`` calls ``json.dumps(data, separators=...)``
and ``Packet.decode`` ``engineio.json.loads(text)``, which passes ``parse_int``; a keyword
argument makes the stdlib build a new ``JSONEncoder`` / ``JSONDecoder`` (and its scanner) on
every call, three per received chat message. Same text out, same values and errors in.

``tests/transport/test_socketio_packet.py`` pins upstream's ``__init__`` and
``data_is_binary`` and compares both answers on generated payloads, and the codec's output
with upstream's.
"""

from __future__ import annotations

import json
from typing import Any

from engineio import json as engineio_json
from socketio import packet

#: What ``Packet.encode`` passes to ``dumps`` (python-socketio 5.18.1).
_COMPACT_ARGS = {"separators": (",", ":")}
_COMPACT = json.JSONEncoder(separators=(",", ":"))
#: The C encoder ``_COMPACT.encode`` ends in (``JSONEncoder.iterencode``'s one-shot branch,
#: hash-pinned: no indent, so always it where CPython has its ``_json`` accelerator).
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
#: ``engineio.json.loads``'s decoder: integers longer than 100 digits refused.
_DECODER = json.JSONDecoder(parse_int=engineio_json._safe_int)


class PacketJSON:
    """``engineio.json`` for :class:`SocketIOPacket`, its encoder and decoder built once."""

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        """``json.dumps(obj, **kwargs)``; python-socketio's compact form without a new encoder."""
        if kwargs == _COMPACT_ARGS:
            if _C_MAKE_ENCODER is None:
                return _COMPACT.encode(obj)
            # What _COMPACT.encode -> iterencode(_one_shot=True) builds and joins, without
            # their two Python frames and three isinstance calls per packet (twice per chat
            # message: the broadcast and the ack). A fresh markers dict per call, as theirs.
            encode = _C_MAKE_ENCODER(
                {}, _COMPACT.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
            )
            return "".join(encode(obj, 0))
        return str(engineio_json.dumps(obj, **kwargs))

    @staticmethod
    def loads(data: Any, **kwargs: Any) -> Any:
        """``engineio.json.loads(data, **kwargs)``; a plain ``str`` without a new decoder
        (a leading BOM takes the stock path, which refuses it as json.loads does)."""
        if not kwargs and type(data) is str and not data.startswith("\ufeff"):
            return _DECODER.decode(data)
        return engineio_json.loads(data, **kwargs)


class SocketIOPacket(packet.Packet):  # type: ignore[misc]
    """``socketio.packet.Packet`` (the server's ``serializer``), same wire format."""

    json = PacketJSON

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        """Whether ``data`` holds ``bytes`` or ``bytearray`` anywhere in its lists and dicts."""
        kind = type(data)
        if kind is not dict and kind is not list:
            if data is None or kind is str:
                return False  # a decoded packet's first ask (None), a bare string
            if isinstance(data, (bytes, bytearray)):
                return True
            if not isinstance(data, (list, dict)):
                return False
        pending: list[Any] = [data]
        while pending:
            container = pending.pop()
            for value in container.values() if isinstance(container, dict) else container:
                kind = type(value)
                if kind is str or kind is int or value is None or kind is bool or kind is float:
                    continue  # what nearly every value of a chat payload is
                if kind is dict or kind is list:
                    # Exactly a dict or list (the wire dict's ``user``): no bytes, looked into,
                    # without the two isinstance calls a subclass still takes below.
                    pending.append(value)
                    continue
                if isinstance(value, (bytes, bytearray)):
                    return True
                if isinstance(value, (list, dict)):
                    pending.append(value)
        return False


#: Ack ids are JavaScript numbers on the client; a longer run of digits is no ack id.
_ACK_ID_DIGITS = 15


def packet_head(data: str) -> tuple[str, str, int | None]:
    """The type character, namespace and ack id of the encoded Socket.IO packet ``data``,
    read from its header only (as ``socketio.packet.Packet.decode`` reads it, attachment
    count skipped; nothing after the header is decoded). The ack id is None when absent
    or not plain ASCII digits of a sane length."""
    kind, rest = data[:1], data[1:]
    dash = rest.find("-")
    if dash > 0 and rest[:dash].isascii() and rest[:dash].isdigit():
        rest = rest[dash + 1 :]
    namespace = "/"
    if rest[:1] == "/":
        sep = rest.find(",")
        namespace, rest = (rest, "") if sep == -1 else (rest[:sep], rest[sep + 1 :])
        namespace = namespace.split("?", 1)[0]
    digits = 0
    while digits < len(rest) and digits <= _ACK_ID_DIGITS and "0" <= rest[digits] <= "9":
        digits += 1
    ack_id = int(rest[:digits]) if 0 < digits <= _ACK_ID_DIGITS else None
    return kind, namespace, ack_id

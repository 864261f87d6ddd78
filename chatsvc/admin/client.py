"""``chatsvc admin ...``: a command-line client of the gRPC admin API.

Every subcommand takes the connection options (``--target``, ``--token``, TLS files) and
prints the response as JSON (proto field names), so it can be piped into ``jq``. A failed
call prints ``chatsvc admin: CODE: message`` on stderr and exits with status 1 (2 for
usage errors, as argparse does).

    chatsvc token --sub ops --role admin > /tmp/t && export CHATSVC_ADMIN_TOKEN=$(cat /tmp/t)
    chatsvc admin publish AAPL "AAPL crossed 200"
    chatsvc admin presence AAPL
    chatsvc admin mute AAPL mallory --for 15m --reason spam
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format
from google.protobuf.message import Message as ProtoMessage

from chatsvc.admin.v1 import admin_pb2, admin_pb2_grpc
from chatsvc.cliargs import OneLineParser, UsageError, fail, parse_duration

TOKEN_ENV = "CHATSVC_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
TARGET_ENV = "CHATSVC_ADMIN_TARGET"

Call = Callable[[admin_pb2_grpc.AdminServiceStub, argparse.Namespace], ProtoMessage]


def _default_target() -> str:
    return os.environ.get(TARGET_ENV) or f"127.0.0.1:{os.environ.get('CHATSVC_GRPC_PORT') or 50051}"


def _connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Add the connection options to ``parser``.

    ``admin`` itself carries the defaults; each subcommand repeats the options with
    ``SUPPRESS`` as default, so a value given after the subcommand wins and an absent one
    does not overwrite what was given before it.
    """

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--target",
        default=default(_default_target()),
        help=f"host:port of the admin API (default ${TARGET_ENV}, else 127.0.0.1:$CHATSVC_GRPC_PORT)",
    )
    group.add_argument(
        "--token",
        default=default(os.environ.get(TOKEN_ENV)),
        help=f"JWT with the admin role (default ${TOKEN_ENV}); not needed with a client certificate",
    )
    group.add_argument(
        "--tls", action="store_true", default=default(False), help="use TLS, trusting the system CAs"
    )
    group.add_argument(
        "--ca", type=Path, default=default(None), help="CA certificate (PEM) to trust; implies --tls"
    )
    group.add_argument(
        "--cert",
        type=Path,
        default=default(None),
        help="client certificate (PEM) for mutual TLS; implies --tls",
    )
    group.add_argument("--key", type=Path, default=default(None), help="client private key (PEM) for --cert")
    group.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=default(10.0),
        help="seconds to wait for an answer (default 10)",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def _sender(args: argparse.Namespace) -> admin_pb2.User | None:
    if not args.sender_id and not args.sender_name:
        return None
    return admin_pb2.User(id=args.sender_id or "", name=args.sender_name or "")


# -- the calls -------------------------------------------------------------------------------


def _publish(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.PublishRequest(
        room=args.room, text=args.text, sender=_sender(args), client_msg_id=args.client_msg_id or ""
    )
    return stub.Publish(request, **args.call)  # type: ignore[no-any-return]


def _broadcast(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.BroadcastRequest(
        rooms=args.room, text=args.text, sender=_sender(args), client_msg_id=args.client_msg_id or ""
    )
    return stub.Broadcast(request, **args.call)  # type: ignore[no-any-return]


def _rooms(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.ListRoomsRequest(
        page_size=args.page_size, page_token=args.page_token or "", online_only=args.online_only
    )
    return stub.ListRooms(request, **args.call)  # type: ignore[no-any-return]


def _room(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    return stub.GetRoom(admin_pb2.GetRoomRequest(room=args.room), **args.call)  # type: ignore[no-any-return]


def _presence(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    return stub.Presence(admin_pb2.PresenceRequest(room=args.room), **args.call)  # type: ignore[no-any-return]


def _history(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.GetHistoryRequest(
        room=args.room, page_size=args.page_size, page_token=args.page_token or ""
    )
    return stub.GetHistory(request, **args.call)  # type: ignore[no-any-return]


def _flagged(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.ListFlaggedRequest(
        room=args.room or "", page_size=args.page_size, page_token=args.page_token or ""
    )
    return stub.ListFlagged(request, **args.call)  # type: ignore[no-any-return]


def _delete(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.DeleteMessageRequest(room=args.room, message_id=args.message_id)
    return stub.DeleteMessage(request, **args.call)  # type: ignore[no-any-return]


def _disconnect(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.DisconnectUserRequest(user_id=args.user, reason=args.reason or "")
    return stub.DisconnectUser(request, **args.call)  # type: ignore[no-any-return]


def _kick(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.KickFromRoomRequest(room=args.room, user_id=args.user, reason=args.reason or "")
    return stub.KickFromRoom(request, **args.call)  # type: ignore[no-any-return]


def _mute(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.MuteUserRequest(
        room=args.room, user_id=args.user, duration=_duration(args.duration), reason=args.reason or ""
    )
    return stub.MuteUser(request, **args.call)  # type: ignore[no-any-return]


def _unmute(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.UnmuteUserRequest(room=args.room, user_id=args.user)
    return stub.UnmuteUser(request, **args.call)  # type: ignore[no-any-return]


def _ban(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    request = admin_pb2.BanUserRequest(
        user_id=args.user, duration=_duration(args.duration), reason=args.reason or ""
    )
    return stub.BanUser(request, **args.call)  # type: ignore[no-any-return]


def _unban(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    return stub.UnbanUser(admin_pb2.UnbanUserRequest(user_id=args.user), **args.call)  # type: ignore[no-any-return]


def _info(stub: Any, args: argparse.Namespace) -> ProtoMessage:
    return stub.Info(admin_pb2.InfoRequest(), **args.call)  # type: ignore[no-any-return]


# -- plumbing --------------------------------------------------------------------------------


def _channel(args: argparse.Namespace) -> Any:
    if (args.key is None) != (args.cert is None):
        raise UsageError("--cert and --key go together; pass both (or neither)")
    if not (args.tls or args.ca or args.cert):
        return grpc.insecure_channel(args.target)
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=args.ca.read_bytes() if args.ca else None,
            private_key=args.key.read_bytes() if args.key else None,
            certificate_chain=args.cert.read_bytes() if args.cert else None,
        )
    except OSError as exc:
        raise UsageError(
            f"cannot read {exc.filename}: {exc.strerror}; check the --ca/--cert/--key paths"
        ) from None
    return grpc.secure_channel(args.target, credentials)


def _run(call: Call, args: argparse.Namespace) -> int:
    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    args.call = {"metadata": metadata, "timeout": args.timeout}
    try:
        channel = _channel(args)
    except UsageError as exc:
        return fail("chatsvc admin", exc)
    with channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        try:
            response = call(stub, args)
        except grpc.RpcError as exc:
            code = exc.code()
            hint = ""
            if code == grpc.StatusCode.UNAUTHENTICATED and not args.token:
                hint = (
                    f"; pass --token or set {TOKEN_ENV} "
                    "(e.g. `chatsvc token --sub ops --role admin`), or use a client certificate"
                )
            elif code == grpc.StatusCode.UNAVAILABLE:
                hint = f"; is the server running at {args.target}? (--target or ${TARGET_ENV})"
            print(f"chatsvc admin: {code.name}: {exc.details()}{hint}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(response, preserving_proto_field_name=True, indent=2))
    return 0


Command = Callable[[str, Call, str], argparse.ArgumentParser]


def register(subparsers: Any) -> None:
    """Add ``admin`` and its subcommands to ``chatsvc``'s argument parser."""
    admin = subparsers.add_parser(
        "admin",
        help="call the gRPC admin API of a running server",
        description="Call the gRPC admin API (chatsvc.admin.v1). Output is JSON.",
    )
    _connection_options(admin, defaults=True)
    commands = admin.add_subparsers(
        dest="admin_command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )

    def command(name: str, call: Call, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=text, description=text)
        _connection_options(parser, defaults=False)
        parser.set_defaults(func=lambda args: _run(call, args))
        return parser

    _message_commands(command)
    _room_commands(command)
    _moderation_commands(command)
    command("info", _info, "replicas, connections, rooms, version")


def _sender_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sender-id", help="author id shown to members (default: system)")
    parser.add_argument("--sender-name", help="author name shown to members (default: System)")
    parser.add_argument("--client-msg-id", help="idempotency key: a retry posts nothing new")


def _message_commands(command: Command) -> None:
    p = command("publish", _publish, "post a system message into a room")
    p.add_argument("room")
    p.add_argument("text")
    _sender_options(p)

    p = command("broadcast", _broadcast, "post a system message into several rooms")
    p.add_argument("text")
    p.add_argument("--room", action="append", required=True, help="a room (repeatable)")
    _sender_options(p)

    p = command("history", _history, "a page of a room's history, newest first")
    p.add_argument("room")
    p.add_argument("--page-size", type=int, default=0, help="messages per page (default: server's)")
    p.add_argument("--page-token", help="next_page_token of the previous page")

    p = command("delete", _delete, "delete a message")
    p.add_argument("room")
    p.add_argument("message_id")


def _room_commands(command: Command) -> None:
    p = command("rooms", _rooms, "list rooms with their online counts (one page)")
    p.add_argument("--page-size", type=int, default=0, help="rooms per page (default 50, at most 500)")
    p.add_argument("--page-token", help="next_page_token of the previous page")
    p.add_argument("--online-only", action="store_true", help="only rooms with members online")

    p = command("room", _room, "one room")
    p.add_argument("room")

    p = command("presence", _presence, "who is online in a room (all replicas)")
    p.add_argument("room")


def _moderation_commands(command: Command) -> None:
    p = command("disconnect", _disconnect, "close every socket of a user, on every replica")
    p.add_argument("user")
    p.add_argument("--reason", help="shown to the user")

    p = command("kick", _kick, "take a user out of a room (they may join again)")
    p.add_argument("room")
    p.add_argument("user")
    p.add_argument("--reason", help="shown to the user")

    for name, call, text in (
        ("mute", _mute, "refuse a user's messages in a room"),
        ("ban", _ban, "refuse a user's connections and close their sockets"),
    ):
        p = command(name, call, text)
        if name == "mute":
            p.add_argument("room")
        p.add_argument("user")
        p.add_argument(
            "--for", dest="duration", type=parse_duration, help="e.g. 15m, 2h, 7d (default: until lifted)"
        )
        p.add_argument("--reason", help="recorded with the ban/mute")

    p = command("unmute", _unmute, "lift a mute")
    p.add_argument("room")
    p.add_argument("user")

    p = command("unban", _unban, "lift a ban")
    p.add_argument("user")

    p = command("flagged", _flagged, "what the spam filters caught, newest first (one page)")
    p.add_argument("--room", help="one room (default: every room)")
    p.add_argument("--page-size", type=int, default=0, help="flags per page (default 50, at most 100)")
    p.add_argument("--page-token", help="next_page_token of the previous page")

"""ListFlagged over real gRPC (issue 25): what the spam filters caught from real socket
clients, newest first, paged, by room or everywhere; the ``rooms`` claim honoured."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from chatsvc.admin.v1 import admin_pb2
from tests.admin.helpers import admin_client, admin_token, rpc_error
from tests.support.clients import ClientPool, running_server
from tests.support.servers import ServerProcess, run_cli
from tests.support.tokens import token

FAST = {"CHATSVC_RATE_LIMIT_PER_SECOND": "1000", "CHATSVC_RATE_LIMIT_BURST": "1000"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("flagged")
    words = directory / "words.txt"
    words.write_text("moonshot\n")
    env = {
        "CHATSVC_SPAM_MAX_LINKS": "0",
        "CHATSVC_SPAM_BLOCKLIST_FILE": str(words),
        "CHATSVC_SPAM_BLOCKLIST_ACTION": "mask",
        **FAST,
    }
    with running_server(directory, "flagged", **env) as running:
        yield running


async def test_flags_listed_newest_first_by_room_and_everywhere(
    server: ServerProcess, clients: ClientPool
) -> None:
    tag = uuid.uuid4().hex[:8]
    desk, lobby, spammer = f"desk{tag}:GME", f"lobby{tag}", f"spammer{tag}"
    client = await clients.connect(server.url, token(spammer, iat=int(time.time()) - 3600))
    for room in (desk, lobby):
        await client.ok("join", {"room": room})
    for i in range(3):
        ack = await client.call("message", {"room": desk, "text": f"buy now at pump{i}.xyz"})
        assert ack["error"]["rule"] == "links"
    masked = (await client.ok("message", {"room": desk, "text": "a MOONSHOT for sure"}))["message"]
    assert masked["text"] == "a ******** for sure"
    assert (await client.call("message", {"room": lobby, "text": "see lobby.example.com"}))["ok"] is False

    async with admin_client(server.grpc_port) as admin:
        first = await admin.ListFlagged(admin_pb2.ListFlaggedRequest(room=desk, page_size=2))
        assert [(f.rule, f.action) for f in first.messages] == [
            ("blocklist", "masked"),
            ("links", "rejected"),
        ]
        top = first.messages[0]
        assert (top.room, top.user_id, top.user_name, top.text) == (
            desk,
            spammer,
            spammer.title(),
            "a MOONSHOT for sure",
        )
        assert top.message_id == masked["id"] and top.flagged_at.seconds > 0
        assert first.messages[1].text == "buy now at pump2.xyz" and first.messages[1].message_id == ""
        rest = await admin.ListFlagged(
            admin_pb2.ListFlaggedRequest(room=desk, page_token=first.next_page_token)
        )
        assert [f.text for f in rest.messages] == ["buy now at pump1.xyz", "buy now at pump0.xyz"]
        assert rest.next_page_token == ""
        everywhere = await admin.ListFlagged(admin_pb2.ListFlaggedRequest(page_size=100))
        mine = [f for f in everywhere.messages if f.user_id == spammer]
        assert [f.room for f in mine] == [lobby, desk, desk, desk, desk]
        assert [f.id for f in everywhere.messages] == sorted(
            (f.id for f in everywhere.messages), reverse=True
        )
        # The stored message is the masked one; the refused ones are not in history.
        history = await admin.GetHistory(admin_pb2.GetHistoryRequest(room=desk))
        assert [m.text for m in history.messages] == ["a ******** for sure"]


async def test_rooms_claim_and_bad_arguments(server: ServerProcess) -> None:
    tag = uuid.uuid4().hex[:8]
    scoped = token(f"ops{tag}", roles=["admin"], rooms=[f"desk{tag}:*"])
    async with admin_client(server.grpc_port, scoped) as admin, admin_client(server.grpc_port) as root:
        allowed = await admin.ListFlagged(admin_pb2.ListFlaggedRequest(room=f"desk{tag}:AAPL"))
        assert list(allowed.messages) == []
        denied = grpc.StatusCode.PERMISSION_DENIED
        await rpc_error(admin.ListFlagged(admin_pb2.ListFlaggedRequest(room=f"lobby{tag}")), denied)
        await rpc_error(admin.ListFlagged(admin_pb2.ListFlaggedRequest()), denied, mentions="rooms")
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        for request, field in [
            (admin_pb2.ListFlaggedRequest(room="has space"), "'room'"),
            (admin_pb2.ListFlaggedRequest(page_size=101), "'page_size'"),
            (admin_pb2.ListFlaggedRequest(page_size=-1), "'page_size'"),
            (admin_pb2.ListFlaggedRequest(page_token="not-an-id"), "'page_token'"),
        ]:
            await rpc_error(root.ListFlagged(request), invalid, mentions=field)
    async with admin_client(server.grpc_port, token(f"user{tag}")) as user:
        await rpc_error(user.ListFlagged(admin_pb2.ListFlaggedRequest()), grpc.StatusCode.PERMISSION_DENIED)


async def test_the_admin_cli_lists_flags(server: ServerProcess, clients: ClientPool) -> None:
    tag = uuid.uuid4().hex[:8]
    room, spammer = f"cli{tag}", f"spammer{tag}"
    client = await clients.connect(server.url, token(spammer))
    await client.ok("join", {"room": room})
    assert (await client.call("message", {"room": room, "text": "go to pump.xyz"}))["error"][
        "rule"
    ] == "links"
    env = {**server.env, "CHATSVC_ADMIN_TOKEN": admin_token()}
    done = run_cli(["admin", "flagged", "--room", room, "--page-size", "5"], env)
    assert done.returncode == 0, done.stderr
    [flag] = json.loads(done.stdout)["messages"]
    assert (flag["user_id"], flag["rule"], flag["action"], flag["text"]) == (
        spammer,
        "links",
        "rejected",
        "go to pump.xyz",
    )

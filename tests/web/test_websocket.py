"""permessage-deflate is declined unless ``CHATSVC_WS_COMPRESSION=true`` (in the websocket
driver, chatsvc.transport.engine)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from chatsvc.app import create_app
from chatsvc.settings import Settings
from tests.support.servers import TEST_JWT_SECRET
from tests.support.tokens import token

EIO_WS = "/socket.io/?EIO=4&transport=websocket"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {
            "CHATSVC_JWT_SECRET": TEST_JWT_SECRET,
            "CHATSVC_DATA_DIR": str(tmp_path),
            "CHATSVC_STORE": "memory",
            "CHATSVC_GRPC_ENABLED": "false",
            **env,
        }
    )


@pytest.mark.parametrize(("env", "negotiated"), [({}, 0), ({"CHATSVC_WS_COMPRESSION": "true"}, 15)])
async def test_socketio_websocket_compression(tmp_path: Path, env: dict[str, str], negotiated: int) -> None:
    app = create_app(settings(tmp_path, **env))
    # aiohttp's client offers permessage-deflate, as browsers do.
    timeout = aiohttp.ClientWSTimeout(ws_close=5)
    async with (
        TestClient(TestServer(app)) as client,
        client.ws_connect(EIO_WS, compress=15, timeout=timeout) as ws,
    ):
        assert ws.compress == negotiated
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        await ws.send_str("40" + json.dumps({"token": token("alice")}))
        assert (await ws.receive_str(timeout=5)).startswith("40{")
        await ws.send_str('421["join",{"room":"lobby"}]')
        ack = await ws.receive_str(timeout=5)
        assert ack.startswith("431[")
        assert json.loads(ack[3:])[0]["ok"] is True
        await ws.send_str("1")  # Engine.IO close: the server ends the socket without waiting


def test_setting_defaults_to_off(tmp_path: Path) -> None:
    assert settings(tmp_path).ws_compression is False
    assert settings(tmp_path, CHATSVC_WS_COMPRESSION="yes").ws_compression is True

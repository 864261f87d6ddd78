"""The generated code of protos/ is committed and must match a fresh generation."""

from __future__ import annotations

import subprocess
import sys

from tests.support.services import REPO


def test_generated_code_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-protos"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (
        f"{done.stdout}\n{done.stderr}\nThe committed protobuf code is stale: run scripts/gen-protos."
    )


def test_generated_code_imports_by_its_proto_path() -> None:
    from chatsvc.admin.v1 import admin_pb2, admin_pb2_grpc  # noqa: PLC0415

    assert admin_pb2.DESCRIPTOR.package == "chatsvc.admin.v1"
    assert admin_pb2.DESCRIPTOR.name == "chatsvc/admin/v1/admin.proto"
    assert hasattr(admin_pb2_grpc, "AdminServiceStub")

"""Static checks of the Dockerfile (no Docker engine here), plus its HEALTHCHECK for real.

The instructions are parsed and compared with the code: exposed ports and ENV against the
settings defaults, CMD against the CLI, COPY sources against the tree and .dockerignore.
checkov's Dockerfile policies must pass. The HEALTHCHECK command is run as written against
a live chatsvc (healthy) and a closed port (unhealthy).
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from chatsvc.cli import build_parser
from chatsvc.settings import Settings
from tests.deploy.conftest import replica_env, start_replica
from tests.deploy.support import CHECKOV, REPO, app_routes, checkov_env

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, rest))
    return result


def runtime() -> list[tuple[str, str]]:
    return stages()[-1]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [rest for k, rest in stage if k == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def test_multi_stage_slim_python_311() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    for image in froms:
        assert image.split()[0].startswith("python:3.11-slim"), image
    assert froms[0].endswith(" AS build")
    copies_from_build = [rest for k, rest in runtime() if k == "COPY" and rest.startswith("--from=build")]
    assert copies_from_build, "the runtime stage takes the built virtualenv from the build stage"
    assert not [rest for k, rest in runtime() if k == "RUN" and "pip install" in rest], (
        "no build tools at runtime"
    )


def test_runs_as_a_non_root_user_read_only_friendly() -> None:
    stage = runtime()
    user = only(stage, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 10000 and gid.isdigit(), "numeric non-root uid:gid (runAsNonRoot)"
    env = env_of(stage)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # The one writable path is the data dir, declared a volume.
    assert json.loads(only(stage, "VOLUME")) == [env["CHATSVC_DATA_DIR"]]
    build = " ".join(rest for k, rest in stages()[0] if k == "RUN")
    assert "compileall" in build, "bytecode is compiled at build time, never written at run time"


def test_listens_where_probes_and_proxies_connect() -> None:
    env = env_of(runtime())
    assert env["CHATSVC_HOST"] == "0.0.0.0"
    defaults = Settings()
    assert int(env["CHATSVC_PORT"]) == defaults.port
    assert int(env["CHATSVC_GRPC_PORT"]) == defaults.grpc.port
    exposed = {int(p.split("/")[0]) for p in only(runtime(), "EXPOSE").split()}
    assert exposed == {defaults.port, defaults.grpc.port}


def test_serves_by_default_and_stops_on_sigterm() -> None:
    stage = runtime()
    cmd = json.loads(only(stage, "CMD"))
    assert cmd == ["chatsvc", "serve"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "chatsvc" in scripts
    assert build_parser().parse_args(cmd[1:]).command == "serve"
    assert only(stage, "STOPSIGNAL") == "SIGTERM"
    assert not [k for k, _ in stage if k == "ENTRYPOINT"], "CMD must be replaceable by `chatsvc migrate`"


def test_copy_sources_exist_and_are_not_ignored() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat + "/*") or pat == "**":
                verdict = not negate
        return verdict

    for keyword, rest in instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = rest.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repo"
            assert not ignored(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"
    for secret in ("keys/x.pem", "certs/x.key", ".venv", ".git"):
        assert ignored(secret), f".dockerignore lets {secret} into the build context"


def test_dockerfile_passes_checkov(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(CHECKOV),
            "--framework",
            "dockerfile",
            "-f",
            str(DOCKERFILE),
            "--output",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=checkov_env(),
        check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["results"]["failed_checks"] == [], [
        c["check_id"] for c in report["results"]["failed_checks"]
    ]
    assert report["summary"]["passed"] > 20


def healthcheck(port: int) -> int:
    """Run the HEALTHCHECK command as written, with this venv's python and CHATSVC_PORT."""
    spec = only(runtime(), "HEALTHCHECK")
    assert "CMD [" in spec
    command = json.loads(spec[spec.index("CMD") + 3 :].strip())
    assert command[0] == "python"
    env = {"PATH": "/usr/bin:/bin", "CHATSVC_PORT": str(port)}
    proc = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return proc.returncode


def test_healthcheck_passes_on_a_live_server_and_fails_on_a_dead_port(tmp_path: Path) -> None:
    spec = only(runtime(), "HEALTHCHECK")
    assert "/healthz" in spec and ("GET", "/healthz") in app_routes()
    server = start_replica(lambda port: replica_env(tmp_path / "data", port, None), tmp_path / "server.log")
    try:
        assert healthcheck(server.port) == 0
    finally:
        server.stop()
    assert healthcheck(server.port) != 0

"""Helpers for tests/deploy: rendered manifests, settings names, nginx, and a node client.

Static checks read the repo's deployment files (kustomize output, docker-compose.yml,
Dockerfile) and compare them with the code: ``known_settings_names`` is every environment
variable ``Settings.from_env`` can read. Integration tests run the real nginx (Debian
package) in front of real chatsvc processes and drive them with the real
``socket.io-client`` through :class:`NodeClients`.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.node import require_node_packages

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE = REPO / "scripts" / "kustomize"
CHECKOV = REPO / "scripts" / "checkov"
JS_DIR = Path(__file__).resolve().parent / "js"
NGINX_TEMPLATE = Path(__file__).resolve().parent / "nginx-test.conf.tmpl"
OVERLAYS = ("k8s/base", "k8s/overlays/production", "k8s/overlays/staging")
#: Each serving build's migration build (the Job applied and completed before it).
MIGRATIONS = {
    "k8s/base": "k8s/migrate",
    "k8s/overlays/production": "k8s/overlays/production/migrate",
    "k8s/overlays/staging": "k8s/overlays/staging/migrate",
}

#: How `make test` installs what these tests need (reported on failure).
NGINX_INSTALL = "apt-get update && apt-get install -y nginx"

#: Every wait in the integration tests is bounded by this (seconds), unless said otherwise.
WAIT = 10.0


# -- settings names -----------------------------------------------------------------------


#: What a read of a variable is called on in chatsvc/settings/: ``env`` in the ``read_*``
#: modules and the root (the :class:`~chatsvc.settings.reader.EnvReader` handed to them),
#: ``self`` inside that reader's own methods.
_SETTINGS_READERS = {"env", "self"}


def _settings_reads() -> Iterator[tuple[str, list[ast.expr]]]:
    """Each ``env.<reader>(...)`` (or ``self.<reader>(...)``) call in chatsvc/settings/*.py:
    the reader's name and the call's positional arguments."""
    for path in sorted((REPO / "chatsvc" / "settings").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in _SETTINGS_READERS
            ):
                yield node.func.attr, node.args


def known_settings_names() -> set[str]:
    """Every variable name chatsvc/settings/ reads.

    Found in the source: the first argument of each ``env.<reader>("NAME", ...)`` call
    (the others are defaults), and every argument of ``env.tls_files(...)``, which takes
    four names. :class:`RecordingEnv` cross-checks this against a real ``from_env`` run.
    """
    names: set[str] = set()
    for reader, call_args in _settings_reads():
        args = call_args if reader == "tls_files" else call_args[:1]
        for arg in args:
            if (
                isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and re.fullmatch(r"[A-Z][A-Z0-9_]+", arg.value)
            ):
                names.add(arg.value)
    return names


def settings_names_read_by(reader: str) -> set[str]:
    """The variables chatsvc/settings/ reads with ``env.<reader>(...)``.

    ``secret`` gives the ones held as :class:`~chatsvc.settings.Secret` (plus the key
    password of ``tls_files``), ``readable_file`` the ones naming a file (plus the three
    paths of ``tls_files``); a deployment must deliver those from a secret store and as
    mounted files respectively.
    """
    names: set[str] = set()
    for called, call_args in _settings_reads():
        if called == reader:
            args = call_args[:1]
        elif called == "tls_files" and reader in {"secret", "readable_file"}:
            args = call_args[3:] if reader == "secret" else call_args[:3]
        else:
            continue
        names.update(a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


class RecordingEnv(Mapping[str, str]):
    """A read-only environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


# -- kustomize / checkov --------------------------------------------------------------------


def kustomize_build(path: str) -> list[dict[str, Any]]:
    """``scripts/kustomize build PATH`` parsed into documents (fails the test on error)."""
    proc = subprocess.run(
        [str(KUSTOMIZE), "build", str(REPO / path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/kustomize build {path} failed ({proc.returncode}):\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def checkov_env() -> dict[str, str]:
    """Offline checkov: no platform calls, no guideline downloads."""
    return {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}


# -- nginx ----------------------------------------------------------------------------------


def nginx_binary() -> str:
    """The nginx executable, or fail with the install command (integration tests never skip)."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.fail(f"nginx is not installed: `{NGINX_INSTALL}` (make test does this)")
    return found


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (held together while choosing them)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def render(template: str, **values: object) -> str:
    """Replace every ``@@NAME@@``; fail on a placeholder left unset."""
    out = template
    for key, value in values.items():
        out = out.replace(f"@@{key}@@", str(value))
    left = re.findall(r"@@[A-Z_0-9]+@@", out)
    assert not left, f"unrendered placeholders: {sorted(set(left))}"
    return out


@dataclass
class Nginx:
    """One nginx master process (not daemonized) with its own prefix directory."""

    prefix: Path
    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, prefix: Path, conf_text: str, ports: dict[str, int]) -> Nginx:
        assert len(set(ports.values())) == len(ports), f"nginx ports must differ: {ports}"
        prefix.mkdir(parents=True, exist_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(conf_text)
        binary = nginx_binary()
        test = subprocess.run(
            [binary, "-t", "-p", str(prefix), "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert test.returncode == 0, f"nginx -t failed:\n{test.stderr}"
        log = (prefix / "stderr.log").open("ab")
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        nginx = cls(prefix, ports, proc)
        deadline = time.monotonic() + WAIT
        for port in ports.values():
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"nginx exited with {proc.returncode}:\n{nginx.errors()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        nginx.stop()
                        raise AssertionError(f"nginx is not listening on {port}:\n{nginx.errors()}") from None
                    time.sleep(0.05)
        return nginx

    def errors(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.prefix / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def access_log(self) -> list[dict[str, str]]:
        """Parsed access log lines: status, method, uri and the key=value fields.

        ``upstream`` lists every address tried, e.g. ``"127.0.0.1:1, 127.0.0.1:2"`` after a
        failover (``upstream_status`` then reads ``"502, 200"``).
        """
        path = self.prefix / "access.log"
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            match = re.search(r'"(\S+) (\S+)" (\d{3}) (.*)$', line)
            if not match:
                continue
            entry = {"method": match.group(1), "uri": match.group(2), "status": match.group(3)}
            for key, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|(\S*))', match.group(4)):
                entry[key] = quoted or bare
            entries.append(entry)
        return entries

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # SIGTERM is nginx's fast shutdown: a graceful SIGQUIT would wait for open sockets.
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def tls_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def https_request(
    port: int,
    path: str,
    ca: Path,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTPS request to 127.0.0.1:port; returns (status, lower-cased headers, body)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls_context(ca), timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def http_request(
    port: int, path: str, *, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request straight to a replica."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# -- socket.io-client (node) ------------------------------------------------------------------


Event = dict[str, Any]


@dataclass
class NodeClients:
    """Sockets of the real ``socket.io-client`` in one node process (tests/deploy/js/driver.js)."""

    ca: Path | None
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    events: list[Event] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> NodeClients:
        require_node_packages(JS_DIR, "socket.io-client/package.json")
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
        }
        if self.ca is not None:
            # The test CA, as a browser would have it in its trust store.
            env["NODE_EXTRA_CA_CERTS"] = str(self.ca)
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DIR / "driver.js"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=JS_DIR,
            env=env,
            # A rejoin ack carries up to CHATSVC_CATCHUP_MAX messages on one line.
            limit=1 << 24,
        )
        log.close()
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                self.events.append(json.loads(line))
            except json.JSONDecodeError:
                self.events.append({"type": "garbage", "line": line.decode(errors="replace")})
            self._changed.set()
        self._changed.set()

    async def send(self, **cmd: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()

    def find(self, pred: Callable[[Event], bool]) -> list[Event]:
        return [e for e in self.events if pred(e)]

    async def wait_for(
        self, pred: Callable[[Event], bool], *, within: float = WAIT, what: str = "event"
    ) -> Event:
        """The first event matching ``pred`` (already received or arriving ``within`` seconds)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            for event in self.events:
                if pred(event):
                    return event
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"node driver exited; waiting for {what}; log:\n{self.log_tail()}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {within}s; events: {self.events[-20:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def open(self, name: str, url: str, token: str, **opts: Any) -> None:
        await self.send(cmd="open", name=name, url=url, token=token, **opts)

    async def connected(self, name: str, n: int = 1, *, within: float = WAIT) -> Event:
        """The ``n``-th connect of socket ``name``; fails early on its connect_error."""

        def pred(e: Event) -> bool:
            if e.get("name") == name and e["type"] == "connect_error" and n == 1:
                raise AssertionError(f"{name}: connect_error {e}")
            return e.get("name") == name and e["type"] == "connect" and e.get("n") == n

        return await self.wait_for(pred, within=within, what=f"connect #{n} of {name}")

    async def emit(self, name: str, event: str, data: Any, *, within: float = WAIT) -> dict[str, Any]:
        """Emit and return the ack (``{"ok": ...}``); fails if the client got no ack."""
        ident = next(self._ids)
        await self.send(cmd="emit", name=name, event=event, data=data, id=ident)
        got = await self.wait_for(
            lambda e: e["type"] == "ack" and e.get("id") == ident,
            within=within,
            what=f"ack of {event} from {name}",
        )
        assert "ack" in got, f"{name} {event}: {got.get('error')}"
        return got["ack"]  # type: ignore[no-any-return]

    def received(self, name: str, event: str) -> list[Any]:
        return [e["data"] for e in self.events if e.get("name") == name and e.get("event") == event]

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    async def close(self) -> None:
        """Quit node; keep every event beside its log (node-events.jsonl) for diagnosis."""
        with contextlib.suppress(OSError):
            self.log_path.with_name("node-events.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in self.events)
            )
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send(cmd="quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def python() -> str:
    return sys.executable


# -- environments of deployed containers ----------------------------------------------------

#: What Kubernetes puts into a ``fieldRef: metadata.name`` variable.
POD_NAME = "chatsvc-5d8f7c9b6-x2x7q"


def secret_templates() -> dict[str, dict[str, Any]]:
    """k8s/secrets/*.example.yaml by Secret name."""
    out = {}
    for path in sorted((REPO / "k8s" / "secrets").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        out[doc["metadata"]["name"]] = doc
    return out


def secret_keys(secret: dict[str, Any]) -> dict[str, str]:
    return {**(secret.get("data") or {}), **(secret.get("stringData") or {})}


def pod_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container of these manifests gets (Secrets from the templates)."""
    secrets = secret_templates()
    config_maps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update({k: str(v) for k, v in config_maps[source["configMapRef"]["name"]]["data"].items()})
        elif "secretRef" in source:
            env.update(secret_keys(secrets[source["secretRef"]["name"]]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            secret = secrets.get(key["name"])
            assert secret is not None, f"{item['name']}: no template k8s/secrets/ for Secret {key['name']}"
            keys = secret_keys(secret)
            assert key["key"] in keys, (
                f"{item['name']}: Secret {key['name']} template has no key {key['key']}"
            )
            env[item["name"]] = keys[key["key"]]
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[item["name"]] = str(config_maps[key["name"]]["data"][key["key"]])
        elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = POD_NAME
        else:
            raise AssertionError(f"{item['name']}: unexpected valueFrom {ref}")
    return env


def pod_files(pod_spec: dict[str, Any], container: dict[str, Any]) -> set[str]:
    """Absolute paths of the files Secret volumes put into a container."""
    secrets = secret_templates()
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    files: set[str] = set()
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        if source.get("items"):
            names = [item["path"] for item in source["items"]]
        else:
            names = list(secret_keys(secrets[source["secretName"]]))
        files.update(f"{mount['mountPath'].rstrip('/')}/{name}" for name in names)
    return files


def settings_from(env: Mapping[str, str], files: set[str], tmp: Path) -> tuple[Any, RecordingEnv]:
    """``Settings.from_env`` on a deployed environment.

    Values naming a file the deployment mounts are pointed at a local stand-in file;
    any other path stays as it is (so a path to nothing fails, naming the variable).
    """
    from chatsvc.settings import Settings  # noqa: PLC0415

    local = dict(env)
    for name, value in env.items():
        if value in files:
            stand_in = tmp / "mounted" / value.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("stand-in for a mounted file\n")
            local[name] = str(stand_in)
    local.setdefault("CHATSVC_DATA_DIR", str(tmp / "data"))
    if local["CHATSVC_DATA_DIR"].startswith("/var/"):
        local["CHATSVC_DATA_DIR"] = str(tmp / "data")
    recorder = RecordingEnv(local)
    return Settings.from_env(recorder), recorder


#: Set in every deployment of the cluster (value None: any non-empty value).
REQUIRED_IN_CLUSTER: dict[str, str | None] = {
    "CHATSVC_ENV": "production",
    # The default 127.0.0.1 would be unreachable for probes, the proxy and other pods.
    "CHATSVC_HOST": "0.0.0.0",
    "KAFKA_BROKERS": None,
    "KAFKA_SSL_CA_CERT": None,
    "KAFKA_SSL_CLIENT_CERT": None,
    "KAFKA_SSL_CLIENT_KEY": None,
    "SCYLLA_CONTACT_POINTS": None,
    # Migrations run once, in their own step, not in every serving process.
    "CHATSVC_AUTO_MIGRATE": "false",
}


def missing_required(env: Mapping[str, str]) -> list[str]:
    problems = []
    for name, want in REQUIRED_IN_CLUSTER.items():
        got = env.get(name)
        if not got:
            problems.append(f"{name} is not set")
        elif want is not None and got != want:
            problems.append(f"{name}={got!r}, expected {want!r}")
    if not (env.get("CHATSVC_JWT_SECRET") or env.get("CHATSVC_JWT_PUBLIC_KEY")):
        problems.append("neither CHATSVC_JWT_SECRET nor CHATSVC_JWT_PUBLIC_KEY is set")
    return problems


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route ``create_app`` registers."""
    import tempfile  # noqa: PLC0415

    from chatsvc.app import create_app  # noqa: PLC0415
    from chatsvc.settings import Settings  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as data:
        settings = Settings.from_env({"CHATSVC_DATA_DIR": data, "CHATSVC_JWT_SECRET": "r" * 40})
        app = create_app(settings)
        return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}

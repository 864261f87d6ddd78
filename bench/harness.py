"""Process plumbing for the benchmarks: servers, the Node load generator, /proc readings.

Everything started here is stopped here (SIGTERM, then SIGKILL of its process group after a
bound), and every wait has a deadline. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "client" / "loadgen.mjs"
PEER = BENCH_DIR / "peers" / "node-socketio" / "server.mjs"
CENTRIFUGO_DIR = BENCH_DIR / "peers" / "centrifugo"
CENTRIFUGO_INSTALL = CENTRIFUGO_DIR / "install"
CENTRIFUGO_CONFIG = CENTRIFUGO_DIR / "config.json"
#: Must match the default in bench/peers/centrifugo/install.
CENTRIFUGO_VERSION = "v6.9.1"
LAUNCHER = BENCH_DIR / "launch_chatsvc.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

#: Only for the benchmark's own servers; never a real secret.
BENCH_JWT_SECRET = "bench-secret-not-for-production-0123456789abcdef"
#: A benchmarked chatsvc's sender limits: raised, and surge mode off (a benchmark floods
#: rooms on purpose).
FLOOD_LIMITS = {
    "CHATSVC_RATE_LIMIT_PER_SECOND": "100000",
    "CHATSVC_RATE_LIMIT_BURST": "100000",
    "CHATSVC_SURGE_RATE": "0",
}


class BenchError(RuntimeError):
    """The harness could not do what a scenario asked (a server died, a command failed)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit(wanted: int = 65536) -> int:
    """Lift the soft open-files limit towards the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- /proc ---------------------------------------------------------------------------------


def _process_cpu_clock(pid: int) -> int:
    """Linux's CPU-time clock of process ``pid`` (``clock_getcpuclockid``, which Python lacks):
    ``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)`` from the kernel's posix-timers.h."""
    return ((~pid) << 3) | 2


def proc_cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its threads, to the nanosecond (the scheduler's own
    count); /proc/PID/stat's user + system ticks (10 ms) where that clock is not readable.

    Ticks were too coarse: a 3 s window of a server at 8% of a core is 24 ticks, so one tick
    moved deliveries per CPU-second by 4%.
    """
    try:
        return time.clock_gettime(_process_cpu_clock(pid))
    except OSError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid: int) -> int:
    """Resident set size in KiB, from /proc/PID/statm."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return float(total - idle), float(total)


def loadavg() -> tuple[float, float, float]:
    """The 1/5/15-minute load averages."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def machine_description() -> dict[str, Any]:
    """nproc, memory, CPU model, kernel, runtimes and the load right now."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    node = shutil.which("node")
    node_version = (
        subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        if node
        else "missing"
    )
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_version,
        "loadavg_start": loadavg(),
    }


@dataclass
class Window:
    """CPU used by the server(s), the load generator and everything else over one measurement."""

    pids: list[int]
    loadgen_pid: int
    started: float = field(default_factory=time.monotonic)
    cpu0: list[float] = field(default_factory=list)
    lg0: float = 0.0
    busy0: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self.cpu0 = [proc_cpu_seconds(p) for p in self.pids]
        self.lg0 = proc_cpu_seconds(self.loadgen_pid)
        self.busy0 = machine_busy()

    def close(self) -> dict[str, float]:
        """Seconds elapsed, server CPU seconds, load generator and other processes' cores."""
        elapsed = time.monotonic() - self.started
        server = sum(proc_cpu_seconds(p) - c for p, c in zip(self.pids, self.cpu0, strict=True))
        lg = proc_cpu_seconds(self.loadgen_pid) - self.lg0
        busy1 = machine_busy()
        busy = busy1[0] - self.busy0[0]
        total = busy1[1] - self.busy0[1]
        cores = os.cpu_count() or 1
        machine_cores = cores * busy / total if total > 0 else 0.0
        return {
            "elapsed_s": elapsed,
            "server_cpu_s": server,
            "loadgen_cpu_s": lg,
            "machine_busy_cores": machine_cores,
            "other_cores": max(0.0, machine_cores - (server + lg) / elapsed) if elapsed > 0 else 0.0,
        }


# -- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    """One server process (chatsvc, the Node peer or Centrifugo) on 127.0.0.1."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    cwd: Path = REPO
    proc: subprocess.Popen[bytes] | None = None
    #: The load generator's client protocol: "socketio" or "centrifugo".
    protocol: str = "socketio"
    #: HS256 secret of the connect tokens it accepts (None: it takes no token).
    jwt_secret: str | None = None
    health_path: str = "/healthz"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}{self.health_path}", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} not healthy within {timeout}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        return proc_rss_kb(self.pid)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def chatsvc_env(port: int, data_dir: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """Environment of a benchmarked chatsvc: loopback, bench secret, sender limits raised."""
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}}
    env = {
        **keep,
        "PYTHONUNBUFFERED": "1",
        "CHATSVC_HOST": "127.0.0.1",
        "CHATSVC_PORT": str(port),
        "CHATSVC_GRPC_ENABLED": "false",
        "CHATSVC_GRPC_PORT": str(free_port()),
        "CHATSVC_DATA_DIR": str(data_dir),
        "CHATSVC_JWT_SECRET": BENCH_JWT_SECRET,
        "CHATSVC_LOG_LEVEL": "WARNING",
        "CHATSVC_SHUTDOWN_TIMEOUT": "5",
        "CHATSVC_REPLICA_ID": f"bench-{port}",
    }
    env.update(extra)
    return env


#: chatsvc.settings.FAST_PATHS (CHATSVC_FAST_PATHS_OFF takes these names).
#: A copy, not an import: the bench also launches older revisions of chatsvc (``run.py
#: --baseline``), whose settings may name fewer; tests/transport/test_fast_paths.py keeps
#: this copy equal to this checkout's.
FAST_PATHS = (
    "frame-once",
    "lean-socket",
    "receive-packet",
    "packet-serializer",
    "direct-emit",
    "event-worker",
    "event-dispatch",
)


def start_chatsvc(
    name: str,
    work: Path,
    extra: Mapping[str, str],
    revert: tuple[str, ...] = (),
    experiments: tuple[str, ...] = (),
    python: str | None = None,
    source: Path | None = None,
    start_timeout: float = 60.0,
) -> Server:
    """``chatsvc serve`` through the bench launcher (which can revert optimisations), on
    this interpreter or ``python`` (another CPython's venv with chatsvc installed), from
    this checkout or from ``source`` (another revision's tree: ``run.py --baseline``)."""
    port = free_port()
    data_dir = work / f"{name}-data"
    launcher = LAUNCHER
    env_extra = dict(extra)
    if source is not None:
        # Ahead of the venv's editable install of this checkout.
        env_extra["PYTHONPATH"] = str(source)
        if (source / "bench" / "launch_chatsvc.py").exists():
            launcher = source / "bench" / "launch_chatsvc.py"
    argv = [python or sys.executable, str(launcher)]
    # The transport's fast paths are turned off by chatsvc's own setting, as in production;
    # only process set-up choices (uvloop, gc) are reverted by the launcher.
    fast_paths_off = [name for name in revert if name in FAST_PATHS]
    if fast_paths_off and source is None:
        env_extra["CHATSVC_FAST_PATHS_OFF"] = ",".join(fast_paths_off)
        revert = tuple(name for name in revert if name not in FAST_PATHS)
    if revert:
        argv += ["--revert", ",".join(revert)]
    if experiments:
        argv += ["--try", ",".join(experiments)]
    argv.append("serve")
    server = Server(
        name,
        argv,
        chatsvc_env(port, data_dir, env_extra),
        port,
        work / f"{name}.log",
        jwt_secret=BENCH_JWT_SECRET,
    )
    return server.start(start_timeout)


def start_peer(name: str, work: Path, extra: Mapping[str, str] | None = None) -> Server:
    """The Node.js socket.io reference server (``extra``: e.g. ``PEER_PRESENCE=1``)."""
    port = free_port()
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    env = {**keep, "PEER_HOST": "127.0.0.1", "PEER_PORT": str(port), "NODE_ENV": "production"}
    env.update(extra or {})
    server = Server(name, ["node", str(PEER)], env, port, work / f"{name}.log", cwd=PEER.parent)
    return server.start()


def install_centrifugo() -> Path:
    """The pinned Centrifugo binary, built once into ~/.cache/chatsvc by its install script."""
    done = subprocess.run(
        [str(CENTRIFUGO_INSTALL)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=REPO,
        env={**os.environ, "CENTRIFUGO_VERSION": CENTRIFUGO_VERSION},
    )
    if done.returncode != 0:
        raise BenchError(f"{CENTRIFUGO_INSTALL.relative_to(REPO)} failed:\n{done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def start_centrifugo(name: str, work: Path, binary: Path, extra: Mapping[str, str] | None = None) -> Server:
    """Centrifugo v6 with bench/peers/centrifugo/config.json: loopback, HS256 connect tokens
    signed with the bench secret (given in its environment, not the committed file);
    ``extra``: more of its ``CENTRIFUGO_*`` environment (config overrides)."""
    port = free_port()
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    env = {
        **keep,
        "CENTRIFUGO_HTTP_SERVER_ADDRESS": "127.0.0.1",
        "CENTRIFUGO_HTTP_SERVER_PORT": str(port),
        "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY": BENCH_JWT_SECRET,
        **(extra or {}),
    }
    argv = [str(binary), "--config", str(CENTRIFUGO_CONFIG)]
    server = Server(
        name,
        argv,
        env,
        port,
        work / f"{name}.log",
        cwd=work,
        protocol="centrifugo",
        jwt_secret=BENCH_JWT_SECRET,
        health_path="/health",
    )
    return server.start()


# -- the load generator ---------------------------------------------------------------------


class LoadGen:
    """The Node load generator, driven one JSON command per line."""

    def __init__(self, log_path: Path, max_seconds: int = 1800) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            ["node", str(LOADGEN)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "LOADGEN_MAX_SECONDS": str(max_seconds)},
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode())
        self._lines.put(None)

    def call(self, timeout: float, **cmd: Any) -> dict[str, Any]:
        """Send one command; return its answer or raise ``BenchError`` (failure or timeout)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BenchError(f"load generator exited ({self.proc.poll()})") from None
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise BenchError(f"load generator did not answer {cmd['cmd']!r} within {timeout:.0f}s") from None
        if line is None:
            raise BenchError(f"load generator exited ({self.proc.poll()}) during {cmd['cmd']!r}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise BenchError(f"load generator {cmd['cmd']!r} failed: {answer.get('error')}")
        return answer

    def connect(self, server: Server, n: int, timeout: float = 120.0, **options: Any) -> dict[str, Any]:
        """The ``connect`` command: ``n`` clients to ``server`` in its protocol, with tokens signed
        with its secret, from one 127.0.0.x source address per 20,000 connections. ``options``:
        the command's others (``deflate``, ``concurrency``, ``join_rooms``, ...)."""
        return self.call(
            timeout,
            cmd="connect",
            url=server.url,
            protocol=server.protocol,
            n=n,
            secret=server.jwt_secret,
            sources=max(1, -(-n // 20000)),
            **options,
        )

    def connect_all(
        self, server: Server, n: int, *, deflate: bool = False, timeout: float = 120.0
    ) -> dict[str, Any]:
        """``connect``, 32 at a time, and raise ``BenchError`` unless all ``n`` connected.
        ``deflate``: offer permessage-deflate, as browsers do (it costs the load generator CPU on
        every delivery, so throughput scenarios don't)."""
        answer = self.connect(server, n, timeout, deflate=deflate, concurrency=32)
        if answer["failures"]:
            raise BenchError(f"{answer['failures']} of {n} connections to {server.name} failed: {answer}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def small_rooms(lg: LoadGen, server: Server, rooms: int, members: int, rate: float) -> dict[str, Any]:
    """``rooms`` rooms of ``members`` on ``server`` (client i in room i % rooms), warmed up by
    one second of traffic; the ``fanout`` command (without its duration) that has one sender
    per room post at ``rate`` messages/s in all (run.py's "rooms" scenario)."""
    lg.connect_all(server, rooms * members, timeout=300)
    names = [f"small{r}" for r in range(rooms)]
    lg.call(120, cmd="join", rooms=names)
    senders = [{"client": r, "room": names[r]} for r in range(rooms)]
    common = {"cmd": "fanout", "senders": senders, "rate": rate}
    lg.call(60, **common, seconds=1.0, recipients_per_message=members - 1, drain_ms=500)
    return common


@contextmanager
def chatsvc_with_loadgen(
    name: str,
    work: Path,
    extra: Mapping[str, str],
    revert: tuple[str, ...] = (),
    experiments: tuple[str, ...] = (),
    start_timeout: float = 60.0,
    source: Path | None = None,
) -> Iterator[tuple[Server, LoadGen]]:
    """A chatsvc (``start_chatsvc``, from ``source`` if given) and a load generator for it
    (log ``NAME-loadgen.log``), both stopped on the way out, also on failure: for the
    one-server profilers."""
    server = start_chatsvc(name, work, extra, revert, experiments, start_timeout=start_timeout, source=source)
    try:
        lg = LoadGen(work / f"{name}-loadgen.log")
        try:
            yield server, lg
        finally:
            lg.close()
    finally:
        server.stop()


def run_quiet(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a helper command to completion, bounded."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def service_env(name: str) -> dict[str, str]:
    """The env file of this checkout's ``scripts/<name>`` service (its ports are per checkout)."""
    found = run_quiet([f"scripts/{name}", "env"], 60)
    path = Path(found.stdout.strip())
    if found.returncode != 0 or not path.is_file():
        raise RuntimeError(f"no env file from scripts/{name} env: start it with `scripts/{name} start`")
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def python_package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def export_revision(rev: str, into: Path) -> str:
    """Write the tree of git revision ``rev`` of this checkout to ``into``; its short hash."""
    repo = BENCH_DIR.parent
    short = run_quiet(["git", "-C", str(repo), "rev-parse", "--short", rev], 30)
    if short.returncode != 0:
        raise BenchError(f"--baseline {rev}: not a revision of {repo}: {short.stderr.strip()}")
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", rev], capture_output=True, timeout=60, check=False
    )
    if archive.returncode != 0:
        raise BenchError(f"git archive {rev} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, timeout=60, check=True)
    return short.stdout.strip()


def stderr(message: str) -> None:
    """Progress output (results go to files)."""
    print(message, file=sys.stderr, flush=True)


def cql_env(contact: str, keyspace: str) -> dict[str, str]:
    """Settings for the Scylla store on the CQL test node (``host:port``), in ``keyspace``."""
    host, _, port = contact.rpartition(":")
    return {
        "SCYLLA_CONTACT_POINTS": host,
        "SCYLLA_PORT": port,
        "SCYLLA_REPLICATION": "SimpleStrategy:1",
        "SCYLLA_CONSISTENCY": "ONE",
        "SCYLLA_KEYSPACE": keyspace,
        "SCYLLA_REQUEST_TIMEOUT": "10",
    }


def drop_cql_keyspace(contact: str, keyspace: str) -> None:
    """Drop a bench run's keyspace on the CQL node: DDL chatsvc itself never runs."""
    from cassandra.cluster import Cluster  # noqa: PLC0415

    host, _, port = contact.rpartition(":")
    cluster = Cluster([host], port=int(port))
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()

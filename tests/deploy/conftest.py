"""Fixtures for tests/deploy: the test PKI, replicas on the real Kafka broker, nginx, node."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.support import NGINX_TEMPLATE, REPO, Nginx, NodeClients, free_port, free_ports, render
from tests.support.servers import ServerProcess, base_env
from tests.support.services import kafka_env

#: nginx's proxy_read_timeout / proxy_send_timeout in the integration tests (seconds):
#: short, so that "idle longer than the proxy allows" takes seconds, not minutes.
READ_TIMEOUT = 6
#: A ping interval well inside READ_TIMEOUT, and one beyond it (the mistuned deployment).
GOOD_PING_INTERVAL = 2
BAD_PING_INTERVAL = 10


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA + server cert for localhost/127.0.0.1 from scripts/testca.py (nginx's TLS)."""
    out = tmp_path_factory.mktemp("pki")
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "testca.py"), str(out), "--quiet"],
        check=True,
        timeout=60,
    )
    return out


def replica_env(data_dir: Path, port: int, topic: str | None, **extra: str) -> dict[str, str]:
    """A replica on 127.0.0.1; on the test broker's mutual-TLS listener when ``topic`` is set."""
    env = base_env(data_dir, port)
    if topic is not None:
        kafka = kafka_env()
        env.update(
            KAFKA_BROKERS=kafka["KAFKA_TEST_SSL"],
            KAFKA_SSL_CA_CERT=kafka["KAFKA_TEST_CA"],
            KAFKA_SSL_CLIENT_CERT=kafka["KAFKA_TEST_CLIENT_CERT"],
            KAFKA_SSL_CLIENT_KEY=kafka["KAFKA_TEST_CLIENT_KEY"],
            # One topic per test cluster: nothing from other tests on the shared broker.
            KAFKA_TOPIC=topic,
        )
    env.update(
        CHATSVC_PING_INTERVAL=str(GOOD_PING_INTERVAL),
        CHATSVC_PING_TIMEOUT="3",
        # The tests send faster than a person types.
        CHATSVC_RATE_LIMIT_PER_SECOND="200",
        CHATSVC_RATE_LIMIT_BURST="200",
        # Restarts in the tests take seconds, not the production drain budget.
        CHATSVC_SHUTDOWN_TIMEOUT="3",
    )
    env.update(extra)
    return env


@dataclass
class Cluster:
    """Replicas behind one nginx; ``replicas[0]`` is route 1, ``replicas[1]`` route 2."""

    tmp: Path
    pki: Path
    topic: str
    replicas: list[ServerProcess] = field(default_factory=list)
    nginx: Nginx | None = None

    @property
    def ca(self) -> Path:
        return self.pki / "ca.pem"

    def port(self, name: str) -> int:
        assert self.nginx is not None
        return self.nginx.ports[name]

    def url(self, name: str = "STICKY_PORT") -> str:
        return f"https://127.0.0.1:{self.port(name)}"

    def restart(self, index: int) -> ServerProcess:
        """Start replica ``index`` again on the same port and data (after it stopped)."""
        old = self.replicas[index]
        new = ServerProcess(dict(old.env), old.log_path)
        self.replicas[index] = new.start(wait="/readyz")
        return self.replicas[index]

    def stop(self) -> None:
        problems = []
        if self.nginx is not None:
            self.nginx.stop()
        for replica in self.replicas:
            try:
                replica.stop()
            except AssertionError as exc:
                problems.append(str(exc))
        assert not problems, "\n".join(problems)


def start_replica(make_env: Callable[[int], dict[str, str]], log: Path) -> ServerProcess:
    """Start a replica on a free port and wait for /readyz.

    Other test runs on this machine pick free ports too: a port taken between choosing and
    binding it is retried with another one (a bounded number of times).
    """
    for attempt in range(3):
        replica = ServerProcess(make_env(free_port()), log).start(wait=None)
        try:
            replica.wait_http("/readyz", timeout=90)
            return replica
        except http.client.HTTPException:
            taken = True  # something else answers on "our" port
        except AssertionError:
            taken = "address already in use" in replica.log_tail()
        with contextlib.suppress(AssertionError):
            replica.stop()
        if not taken or attempt == 2:
            raise AssertionError(f"replica did not become ready:\n{replica.log_tail()}")
    raise AssertionError("unreachable")


def start_cluster(tmp: Path, pki: Path, *, mistuned: bool) -> Cluster:
    """Two replicas sharing one CHATSVC_DATA_DIR, on Kafka, behind nginx (+ a mistuned one)."""
    cluster = Cluster(tmp, pki, topic=f"chatsvc.deploy-test.{uuid.uuid4().hex[:12]}")
    shared = tmp / "shared-data"
    try:
        for i in (1, 2):
            replica_id = f"r{i}"

            def make_env(port: int, replica_id: str = replica_id) -> dict[str, str]:
                return replica_env(shared, port, cluster.topic, CHATSVC_REPLICA_ID=replica_id)

            cluster.replicas.append(start_replica(make_env, tmp / f"{replica_id}.log"))
        if mistuned:
            # Alone (no Kafka needed): a ping interval beyond the proxy's read timeout.
            cluster.replicas.append(
                start_replica(
                    lambda port: replica_env(
                        tmp / "r3-data",
                        port,
                        None,
                        CHATSVC_REPLICA_ID="r3",
                        CHATSVC_PING_INTERVAL=str(BAD_PING_INTERVAL),
                        CHATSVC_PING_TIMEOUT="5",
                    ),
                    tmp / "r3.log",
                )
            )
        r3 = cluster.replicas[2].port if mistuned else cluster.replicas[1].port
        taken = {p for r in cluster.replicas for p in (r.port, r.grpc_port)}
        candidates = [p for p in free_ports(6) if p not in taken]
        ports = dict(zip(("STICKY_PORT", "ROUND_ROBIN_PORT", "MISTUNED_PORT"), candidates, strict=False))
        conf = render(
            NGINX_TEMPLATE.read_text(),
            # Running as root, nginx would switch its worker to `nobody`, who cannot read
            # pytest's private temp directory; stay root for this loopback-only test.
            USER="user root root;" if os.geteuid() == 0 else "",
            PREFIX=tmp / "nginx",
            REPO=REPO,
            CERT=pki / "server.pem",
            KEY=pki / "server.key",
            R1=cluster.replicas[0].port,
            R2=cluster.replicas[1].port,
            R3=r3,
            READ_TIMEOUT=READ_TIMEOUT,
            **ports,
        )
        cluster.nginx = Nginx.start(tmp / "nginx", conf, ports)
    except BaseException:
        cluster.stop()
        raise
    return cluster


ClusterFactory = Callable[..., Cluster]


@pytest.fixture
async def node(tmp_path: Path, pki: Path) -> AsyncIterator[NodeClients]:
    """socket.io-client v4 (node) trusting the test CA; closed at teardown."""
    clients = await NodeClients(pki / "ca.pem", tmp_path / "node.log").start()
    yield clients
    await clients.close()


@pytest.fixture
def cluster_factory(tmp_path: Path, pki: Path) -> Iterator[ClusterFactory]:
    """Start clusters for one test; all stopped at teardown."""
    started: list[Cluster] = []

    def start(*, mistuned: bool = False) -> Cluster:
        cluster = start_cluster(tmp_path / f"cluster{len(started)}", pki, mistuned=mistuned)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()

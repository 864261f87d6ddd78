"""Static checks of docker-compose.yml and deploy/ (no Docker engine on these machines).

The compose file is parsed with PyYAML (anchors and merge keys resolved as compose does)
and cross-checked against the code and the support files: every chatsvc variable is one
``Settings.from_env`` reads and yields a valid production configuration; the Kafka TLS
paths are files the cert init script writes into the mounted volume; the broker's mTLS
listener is where KAFKA_BROKERS points; nginx proxies to the ports the replicas listen on
with timeouts above the Engine.IO heartbeat; and nginx accepts the compose config.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatsvc.cli import build_parser
from tests.deploy.support import (
    REPO,
    known_settings_names,
    missing_required,
    nginx_binary,
    settings_from,
)

COMPOSE = REPO / "docker-compose.yml"
NGINX_CONF = REPO / "deploy" / "nginx" / "nginx.conf"
CERTS_SCRIPT = REPO / "deploy" / "certs" / "gen-certs.sh"
REDPANDA = REPO / "deploy" / "redpanda" / "redpanda.yaml"
REPLICAS = ("chatsvc-1", "chatsvc-2")
CHATSVC_SERVICES = ("migrate", *REPLICAS)
#: ``${NAME:?message}`` / ``${NAME}`` / ``${NAME:-default}`` interpolation.
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    assert "env_file" not in service, "keep every variable visible in the compose file"
    return {k: str(v) for k, v in env.items()}


def interpolated(env: dict[str, str]) -> dict[str, str]:
    """What compose would pass, with a stand-in for each ``${...}`` (from .env in real use)."""
    return {
        k: INTERPOLATION.sub(lambda m: f"stand-in-{m.group(1).lower()}-" + "x" * 40, v)
        for k, v in env.items()
    }


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (volume name or ./path), short syntax."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *_ = spec.split(":")
        out[target] = source
    return out


def script_outputs() -> dict[str, dict[str, str]]:
    """gen-certs.sh: env variable naming each output dir -> {file name: mode}."""
    text = CERTS_SCRIPT.read_text()
    dir_vars = dict(re.findall(r"^(\w+_DIR)=\$\{(PKI_\w+_DIR):-", text, re.M))
    out: dict[str, dict[str, str]] = {}
    for var, name, mode in re.findall(r'^put "\$WORK/[^"]+" "\$(\w+_DIR)/([^"]+)" (\d+)', text, re.M):
        out.setdefault(dir_vars[var], {})[name] = mode
    return out


def volume_files(services: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """Named volume -> files the certs service writes into it."""
    certs = services["certs"]
    env = environment(certs)
    where = {target: source for target, source in mounts(certs).items()}
    out: dict[str, set[str]] = {}
    for dir_var, files in script_outputs().items():
        out[where[env[dir_var]]] = set(files)
    return out


def mounted_files(service: dict[str, Any], services: dict[str, dict[str, Any]]) -> set[str]:
    files: set[str] = set()
    produced = volume_files(services)
    for target, source in mounts(service).items():
        files.update(f"{target}/{name}" for name in produced.get(source, ()))
    return files


def test_services_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"certs", "scylla", "redpanda", "migrate", *REPLICAS, "nginx"}
    assert services["redpanda"]["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["scylla"]["condition"] == "service_healthy"
    for name in REPLICAS:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redpanda"]["condition"] == "service_healthy"
        assert deps["scylla"]["condition"] == "service_healthy"
        assert services["nginx"]["depends_on"][name]["condition"] == "service_healthy"
    for name in ("scylla", "redpanda", "nginx"):
        assert services[name]["healthcheck"]["test"], name


def test_scylla_runs_small_in_developer_mode(services: dict[str, dict[str, Any]]) -> None:
    scylla = services["scylla"]
    assert scylla["image"].startswith("scylladb/scylla:")
    assert scylla["command"] == [
        "--smp",
        "1",
        "--memory",
        "750M",
        "--overprovisioned",
        "1",
        "--developer-mode",
        "1",
    ]


def test_only_nginx_is_published_and_only_on_loopback(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name == "nginx":
            assert service["ports"] and all(p.startswith("127.0.0.1:") for p in service["ports"])
        else:
            assert "ports" not in service, f"{name} must not be published"


def test_chatsvc_containers_are_locked_down(services: dict[str, dict[str, Any]]) -> None:
    for name in CHATSVC_SERVICES:
        service = services[name]
        assert service["read_only"] is True, name
        assert service["user"] == "10001:10001", name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        env = environment(service)
        data_dir = env.get("CHATSVC_DATA_DIR", "/var/lib/chatsvc")
        assert any(t.startswith(data_dir + ":") for t in service["tmpfs"]), name
        assert all(s.endswith(":ro") for s in service.get("volumes", [])), name
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile


def test_every_variable_is_known_and_the_replicas_are_a_valid_production_config(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    known = known_settings_names()
    for name in CHATSVC_SERVICES:
        env = environment(services[name])
        assert not sorted(set(env) - known), f"{name}: unknown variables {sorted(set(env) - known)}"
    for name in REPLICAS:
        env = interpolated(environment(services[name]))
        assert not missing_required(env), (name, missing_required(env))
        settings, recorder = settings_from(env, mounted_files(services[name], services), tmp_path / name)
        assert recorder.read <= known
        assert settings.is_production and settings.host == "0.0.0.0"
        assert settings.kafka is not None and settings.kafka.tls is not None
        assert settings.scylla is not None and settings.auto_migrate is False
    ids = {environment(services[n])["CHATSVC_REPLICA_ID"] for n in REPLICAS}
    assert len(ids) == len(REPLICAS)


def test_migrate_is_a_one_shot_chatsvc_migrate_against_the_same_store(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["chatsvc", "migrate"]
    assert build_parser().parse_args(["migrate"]).command == "migrate"
    assert migrate["restart"] == "no"
    settings, _ = settings_from(interpolated(environment(migrate)), set(), tmp_path)
    replica, _ = settings_from(
        interpolated(environment(services["chatsvc-1"])),
        mounted_files(services["chatsvc-1"], services),
        tmp_path / "r",
    )
    assert settings.scylla == replica.scylla


def test_the_jwt_secret_comes_from_the_environment_never_the_file(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in CHATSVC_SERVICES:
        value = environment(services[name])["CHATSVC_JWT_SECRET"]
        assert re.fullmatch(r"\$\{CHATSVC_JWT_SECRET:\?[^}]+\}", value), f"{name}: {value!r}"


def test_kafka_tls_files_come_from_the_cert_init_volume(services: dict[str, dict[str, Any]]) -> None:
    outputs = script_outputs()
    assert set(outputs) == {"PKI_BROKER_DIR", "PKI_CLIENT_DIR", "PKI_EDGE_DIR"}
    for name in REPLICAS:
        env = environment(services[name])
        files = mounted_files(services[name], services)
        for var in ("KAFKA_SSL_CA_CERT", "KAFKA_SSL_CLIENT_CERT", "KAFKA_SSL_CLIENT_KEY"):
            assert env[var] in files, f"{name}: {var}={env[var]} is not written by the certs service"
    # Keys are readable by their owner only.
    assert {n: m for n, m in outputs["PKI_CLIENT_DIR"].items() if n.endswith(".key")} == {
        "client.key": "0400"
    }


def test_redpanda_listens_with_mutual_tls_where_the_replicas_connect(
    services: dict[str, dict[str, Any]],
) -> None:
    config = yaml.safe_load(REDPANDA.read_text())["redpanda"]
    listeners = {item["name"]: item for item in config["advertised_kafka_api"]}
    tls = {item["name"]: item for item in config["kafka_api_tls"]}
    assert set(listeners) == set(tls) == {item["name"] for item in config["kafka_api"]}, (
        "every listener is TLS"
    )
    addresses = {f"{v['address']}:{v['port']}" for v in listeners.values()}
    for name in REPLICAS:
        assert set(environment(services[name])["KAFKA_BROKERS"].split(",")) <= addresses
    redpanda = services["redpanda"]
    files = mounted_files(redpanda, services)
    for item in tls.values():
        assert item["enabled"] is True and item["require_client_auth"] is True
        for key in ("cert_file", "key_file", "truststore_file"):
            assert item[key] in files, f"{key} {item[key]} is not written by the certs service"
    assert "./deploy/redpanda" in mounts(redpanda).values()


def test_nginx_proxies_to_the_replicas_with_the_ingress_settings(services: dict[str, dict[str, Any]]) -> None:
    conf = NGINX_CONF.read_text()
    upstreams = set(re.findall(r"server\s+([\w.-]+:\d+)", conf))
    expected = {f"{n}:{environment(services[n])['CHATSVC_PORT']}" for n in REPLICAS}
    assert upstreams == expected
    env = environment(services["chatsvc-1"])
    heartbeat = float(env["CHATSVC_PING_INTERVAL"]) + float(env["CHATSVC_PING_TIMEOUT"])
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        values = re.findall(rf"{directive}\s+(\d+)s;", conf)
        assert values and all(float(v) > 10 * heartbeat for v in values), directive
    proxy = (REPO / "deploy" / "nginx" / "chatsvc-proxy.conf").read_text()
    for needed in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $http_host;",
        "proxy_buffering off;",
    ):
        assert needed in proxy
    assert "Secure" in conf and "chatsvc_route=$chatsvc_served_route" in conf
    # Every file nginx.conf includes or reads is mounted where it looks.
    nginx = services["nginx"]
    targets = mounts(nginx)
    files = mounted_files(nginx, services)
    for path in re.findall(r"(?:include|ssl_certificate(?:_key)?)\s+(/\S+);", conf):
        assert path in targets or path in files, f"{path} is not mounted into the nginx service"


def test_nginx_accepts_the_compose_config(tmp_path: Path) -> None:
    """``nginx -t`` on deploy/nginx/nginx.conf, with container paths and names made local."""
    pki = tmp_path / "tls"
    pki.mkdir()
    subprocess.run(
        ["sh", str(CERTS_SCRIPT)],
        env={
            **os.environ,
            "PKI_BROKER_DIR": str(tmp_path / "b"),
            "PKI_CLIENT_DIR": str(tmp_path / "c"),
            "PKI_EDGE_DIR": str(pki),
        },
        check=True,
        capture_output=True,
        timeout=120,
    )
    conf = NGINX_CONF.read_text()
    conf = conf.replace("/etc/nginx/chatsvc/", f"{REPO}/deploy/nginx/").replace("/etc/nginx/tls/", f"{pki}/")
    conf = re.sub(r"chatsvc-\d+:", "127.0.0.1:", conf)
    # Debian's nginx (1.22) predates `resolve` in upstream{} (1.27.3; the image is 1.28).
    assert conf.count(" resolve;") == 4
    conf = conf.replace(" resolve;", ";")
    conf = conf.replace("/var/run/nginx.pid", str(tmp_path / "nginx.pid"))
    conf = conf.replace("listen 80;", "listen 127.0.0.1:1;").replace(
        "listen 443 ssl;", "listen 127.0.0.1:2 ssl;"
    )
    (tmp_path / "nginx.conf").write_text(conf)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir()
    paths = "; ".join(f"{s}_temp_path {tmp_path / s}" for s in ("proxy", "fastcgi", "uwsgi", "scgi"))
    conf = conf.replace(
        "http {", f"http {{\n    client_body_temp_path {tmp_path / 'client_body'}; {paths};", 1
    )
    (tmp_path / "nginx.conf").write_text(conf)
    proc = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr

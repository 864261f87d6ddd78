"""Static checks of k8s/: it builds, passes the policy scanner, and agrees with the code.

``scripts/kustomize`` (a pinned kustomize from ``go install``) renders the base and both
overlays; ``scripts/checkov`` (a pinned checkov in its own venv) scans the result. The
cross-checks read the rendered manifests: ports against the settings, probe paths against
the app's routes, every environment variable against what ``Settings.from_env`` reads, and
``Settings.from_env`` itself on the environment the pods would get.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatsvc.cli import build_parser
from chatsvc.settings import Settings
from tests.deploy.support import (
    CHECKOV,
    MIGRATIONS,
    OVERLAYS,
    REPO,
    app_routes,
    by_kind,
    checkov_env,
    known_settings_names,
    kustomize_build,
    missing_required,
    one,
    pod_env,
    pod_files,
    secret_keys,
    secret_templates,
    settings_from,
)

Docs = list[dict[str, Any]]
ACME_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
ACME_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
NGINX = "nginx.ingress.kubernetes.io/"


@pytest.fixture(scope="module")
def rendered() -> dict[str, Docs]:
    return {path: kustomize_build(path) for path in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, Docs]) -> Docs:
    return rendered[request.param]


@pytest.fixture(scope="module")
def rendered_migrations() -> dict[str, Docs]:
    """Serving build path -> its migration build."""
    return {path: kustomize_build(MIGRATIONS[path]) for path in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def pair(
    request: pytest.FixtureRequest, rendered: dict[str, Docs], rendered_migrations: dict[str, Docs]
) -> tuple[Docs, Docs]:
    """(serving build, its migration build) of one environment."""
    return rendered[request.param], rendered_migrations[request.param]


def deployment(docs: Docs) -> dict[str, Any]:
    return one(docs, "Deployment", "chatsvc")


def pod_spec(docs: Docs) -> dict[str, Any]:
    return deployment(docs)["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def serving(docs: Docs) -> dict[str, Any]:
    return next(c for c in pod_spec(docs)["containers"] if c["name"] == "chatsvc")


def all_containers(docs: Docs) -> list[dict[str, Any]]:
    spec = pod_spec(docs)
    return [*spec.get("initContainers", []), *spec["containers"]]


def ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_base_and_overlays_build_with_every_resource(rendered: dict[str, Docs]) -> None:
    expected = {
        "Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "Issuer", "Ingress",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
    }  # fmt: skip
    for path, docs in rendered.items():
        assert {d["kind"] for d in docs} == expected, path
        namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
        assert namespaces == {one(docs, "Namespace")["metadata"]["name"]}, path
        assert not by_kind(docs, "Secret"), f"{path}: Secrets are created out of band, never rendered"


def test_rendered_manifests_pass_checkov(
    rendered: dict[str, Docs], rendered_migrations: dict[str, Docs], tmp_path: Path
) -> None:
    files = []
    builds = {**rendered, **{MIGRATIONS[path]: docs for path, docs in rendered_migrations.items()}}
    for path, docs in builds.items():
        out = tmp_path / (path.replace("/", "_") + ".yaml")
        out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        files.append(out)
    files += sorted((REPO / "k8s" / "secrets").glob("*.yaml"))
    args = [str(CHECKOV), "--framework", "kubernetes", "--output", "json", "--skip-download"]
    for f in files:
        args += ["-f", str(f)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=checkov_env(), check=False)
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    assert not failed, "\n".join(
        f"{c['check_id']} {c['check_name']} -- {c['resource']} ({c['file_path']})" for c in failed
    )
    assert sum(r["summary"]["passed"] for r in reports) > 50
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_35", "CKV_K8S_43"}
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) >= 30, f"{check['check_id']} on {check['resource']} skipped without a reason"
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)


def test_every_checkov_skip_in_the_sources_carries_its_justification() -> None:
    found = 0
    for path in sorted((REPO / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue  # a JSON patch
            annotations = (doc.get("metadata") or {}).get("annotations") or {}
            for key, value in annotations.items():
                if key.startswith("checkov.io/skip"):
                    found += 1
                    assert re.fullmatch(r"CKV2?_[A-Z0-9_]+=[^=]{30,}", str(value).strip()), (
                        f"{path.relative_to(REPO)}: {key} must be 'CHECK_ID=why' (no '=' in the reason)"
                    )
    assert found, "expected the documented skips in k8s/base/deployment.yaml"


def test_container_ports_are_the_ports_the_settings_make_chatsvc_listen_on(
    docs: Docs, tmp_path: Path
) -> None:
    container = serving(docs)
    env = pod_env(docs, container)
    settings, _ = settings_from(env, pod_files(pod_spec(docs), container), tmp_path)
    assert ports(container) == {
        "http": settings.port,
        "grpc": settings.grpc.port,
        "metrics": settings.metrics_port,
    }
    assert settings.host == settings.grpc.host == "0.0.0.0"
    # The defaults are what the image and the docs promise, too.
    assert (Settings().port, Settings().grpc.port) == (8080, 50051)


def test_probe_paths_and_ports_exist_in_the_app(docs: Docs) -> None:
    container = serving(docs)
    routes = app_routes()
    probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        get = probe["httpGet"]
        assert ("GET", get["path"]) in routes, f"{kind} {get['path']} is not a route of the app"
        assert get["port"] in ports(container), f"{kind} port {get['port']} is not a container port"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_every_variable_the_manifests_set_is_one_the_settings_read(docs: Docs, tmp_path: Path) -> None:
    known = known_settings_names()
    for container in all_containers(docs):
        env = pod_env(docs, container)
        unknown = sorted(set(env) - known)
        assert not unknown, f"{container['name']} sets variables chatsvc never reads: {unknown}"
        # The source scan and a real from_env run agree on what is read.
        _, recorder = settings_from(env, pod_files(pod_spec(docs), container), tmp_path)
        assert recorder.read <= known, sorted(recorder.read - known)
    for secret in secret_templates().values():
        unknown = sorted(k for k in secret_keys(secret) if k.isupper() and k not in known)
        assert not unknown, f"Secret template {secret['metadata']['name']}: unknown keys {unknown}"


def test_the_pods_environment_is_a_valid_production_configuration(docs: Docs, tmp_path: Path) -> None:
    for container in all_containers(docs):
        env = pod_env(docs, container)
        assert not missing_required(env), (container["name"], missing_required(env))
        settings, _ = settings_from(env, pod_files(pod_spec(docs), container), tmp_path)
        assert settings.is_production
        assert settings.auto_migrate is False
        assert settings.kafka is not None and settings.kafka.tls is not None
        assert settings.kafka.tls.client_cert is not None and settings.kafka.tls.client_key is not None
        assert settings.scylla is not None
        assert settings.jwt.secret is not None or settings.jwt.public_key_file is not None


def test_kafka_tls_files_are_mounted_from_the_secret_at_the_configured_paths(docs: Docs) -> None:
    spec = pod_spec(docs)
    for container in all_containers(docs):
        env = pod_env(docs, container)
        files = pod_files(spec, container)
        for name in ("KAFKA_SSL_CA_CERT", "KAFKA_SSL_CLIENT_CERT", "KAFKA_SSL_CLIENT_KEY"):
            assert env[name] in files, f"{container['name']}: {name}={env[name]} is not a mounted file"
    volume = next(v for v in spec["volumes"] if v["name"] == "kafka-client-tls")
    template = secret_templates()[volume["secret"]["secretName"]]
    assert {item["key"] for item in volume["secret"]["items"]} <= set(secret_keys(template))


def test_termination_grace_covers_the_prestop_pause_and_the_drain(docs: Docs) -> None:
    container = serving(docs)
    env = pod_env(docs, container)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pause = float(pre_stop[1])
    drain = float(env.get("CHATSVC_SHUTDOWN_TIMEOUT", Settings().shutdown_timeout_seconds))
    grpc_grace = float(env.get("CHATSVC_GRPC_GRACE", 5))
    # Socket drain and in-flight handlers are each bounded by the shutdown timeout.
    needed = pause + 2 * drain + grpc_grace + 5
    assert pod_spec(docs)["terminationGracePeriodSeconds"] >= needed


def test_pods_run_locked_down(docs: Docs) -> None:
    spec = pod_spec(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] >= 10000
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    writable = {
        m["mountPath"]
        for c in all_containers(docs)
        for m in c.get("volumeMounts", [])
        if not m.get("readOnly")
    }
    for container in all_containers(docs):
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True, container["name"]
        assert ctx["allowPrivilegeEscalation"] is False, container["name"]
        assert ctx["capabilities"]["drop"] == ["ALL"], container["name"]
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault", container["name"]
        assert "limits" in container["resources"] and "requests" in container["resources"]
    # The only writable paths are emptyDirs for the data dir and /tmp.
    volumes = {v["name"]: v for v in spec["volumes"]}
    env = pod_env(docs, serving(docs))
    assert writable == {env["CHATSVC_DATA_DIR"], "/tmp"}
    for container in all_containers(docs):
        for mount in container.get("volumeMounts", []):
            if not mount.get("readOnly"):
                assert "emptyDir" in volumes[mount["name"]], mount


def job(docs: Docs) -> dict[str, Any]:
    return one(docs, "Job", "chatsvc-migrate")


def test_no_pod_of_the_deployment_migrates(docs: Docs) -> None:
    # An init container migrated in every pod, concurrently during a rollout (issue 28).
    assert "initContainers" not in pod_spec(docs)
    assert all(c.get("command", [])[1:2] != ["migrate"] for c in pod_spec(docs)["containers"])
    assert not by_kind(docs, "Job"), "the Job is its own build, applied and completed first"


def test_the_migration_build_is_one_job_running_chatsvc_migrate(pair: tuple[Docs, Docs]) -> None:
    serving_docs, migration = pair
    assert {d["kind"] for d in migration} == {
        "Namespace", "ServiceAccount", "ConfigMap", "Job", "NetworkPolicy",
    }  # fmt: skip
    spec = job(migration)["spec"]
    assert spec["parallelism"] == spec["completions"] == 1, "one migration at a time"
    assert 0 < spec["backoffLimit"] <= 5 and spec["activeDeadlineSeconds"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["command"] == ["chatsvc", "migrate"]
    assert build_parser().parse_args(container["command"][1:]).command == "migrate"
    # Same image, namespace, service account and settings as the pods it migrates for.
    assert container["image"] == serving(serving_docs)["image"]
    namespace = one(serving_docs, "Namespace")["metadata"]["name"]
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in migration} == {namespace}
    assert one(migration, "ConfigMap", "chatsvc") == one(serving_docs, "ConfigMap", "chatsvc")
    assert pod["serviceAccountName"] == pod_spec(serving_docs)["serviceAccountName"]
    assert pod["automountServiceAccountToken"] is False


def test_the_job_gets_a_valid_production_configuration(pair: tuple[Docs, Docs], tmp_path: Path) -> None:
    _, migration = pair
    pod = job(migration)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = pod_env(migration, container)
    assert not missing_required(env), missing_required(env)
    assert set(env) <= known_settings_names()
    settings, _ = settings_from(env, pod_files(pod, container), tmp_path)
    assert settings.is_production and settings.scylla is not None
    assert settings.auto_migrate is False


def test_the_job_runs_locked_down_and_only_reaches_dns_and_scylla(pair: tuple[Docs, Docs]) -> None:
    _, migration = pair
    template = job(migration)["spec"]["template"]
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    [container] = pod["containers"]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "limits" in container["resources"] and "requests" in container["resources"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount.get("readOnly") or "emptyDir" in volumes[mount["name"]], mount
    policy = one(migration, "NetworkPolicy", "chatsvc-migrate")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not policy["spec"].get("ingress"), "nothing connects to the migration pod"
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    scylla_port = int(one(migration, "ConfigMap", "chatsvc")["data"]["SCYLLA_PORT"])
    assert ports == {53, scylla_port, 19042}


def test_readmes_apply_the_migration_job_first_and_wait_for_it() -> None:
    text = (REPO / "k8s" / "README.md").read_text()
    for env, namespace in (("production", "chatsvc"), ("staging", "chatsvc-staging")):
        steps = [
            f"kubectl -n {namespace} delete job chatsvc-migrate --ignore-not-found",
            f"scripts/kustomize build k8s/overlays/{env}/migrate | kubectl apply -f -",
            f"kubectl -n {namespace} wait --for=condition=complete job/chatsvc-migrate",
            f"scripts/kustomize build k8s/overlays/{env} | kubectl apply -f -",
        ]
        where = [text.find(step) for step in steps]
        assert -1 not in where and where == sorted(where), dict(zip(steps, where, strict=True))
    for doc in (REPO / "README.md", REPO / "k8s" / "README.md"):
        assert "init container" not in doc.read_text().lower(), (
            f"{doc.name} still describes the init container"
        )
    assert "overlays/production/migrate" in (REPO / "README.md").read_text()


def test_replicas_autoscaling_and_disruption_budget(docs: Docs) -> None:
    dep = deployment(docs)
    assert dep["spec"]["replicas"] >= 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chatsvc"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable", 0) >= 1


def test_services_expose_http_publicly_and_grpc_only_inside(docs: Docs) -> None:
    labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    container_ports = ports(serving(docs))
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert set(services) == {"chatsvc", "chatsvc-admin"}
    for svc in services.values():
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["selector"].items() <= labels.items()
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in container_ports
    assert [p["targetPort"] for p in services["chatsvc"]["spec"]["ports"]] == ["http"]
    assert [p["targetPort"] for p in services["chatsvc-admin"]["spec"]["ports"]] == ["grpc"]
    ingress = one(docs, "Ingress")
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": "chatsvc", "port": {"name": "http"}}]


def test_ingress_keeps_sockets_alive_and_sticky(docs: Docs, tmp_path: Path) -> None:
    ingress = one(docs, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    env = pod_env(docs, serving(docs))
    settings, _ = settings_from(env, pod_files(pod_spec(docs), serving(docs)), tmp_path)
    heartbeat = settings.ping_interval_seconds + settings.ping_timeout_seconds
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[NGINX + name]) > 10 * heartbeat, name
    assert annotations[NGINX + "affinity"] == "cookie"
    assert annotations[NGINX + "affinity-mode"] == "persistent"
    assert annotations[NGINX + "session-cookie-secure"] == "true"
    assert annotations[NGINX + "session-cookie-samesite"] in {"Lax", "Strict", "None"}
    assert annotations[NGINX + "proxy-buffering"] == "off"
    # Plain HTTP/1.1 to the pods: never GRPC/GRPCS/HTTPS/H2 on the websocket hop.
    assert annotations.get(NGINX + "backend-protocol", "HTTP") == "HTTP"
    assert not any("snippet" in key for key in annotations), "snippets are disabled on hardened controllers"
    # The same cookie as the nginx used by docker-compose and the proxy tests.
    cookie = annotations[NGINX + "session-cookie-name"]
    assert f"$cookie_{cookie}" in (REPO / "deploy/nginx/chatsvc-affinity.conf").read_text()


def test_tls_comes_from_the_cert_manager_issuer_of_the_overlay(rendered: dict[str, Docs]) -> None:
    for path, docs in rendered.items():
        ingress = one(docs, "Ingress")
        issuer = one(docs, "Issuer")
        assert ingress["metadata"]["annotations"]["cert-manager.io/issuer"] == issuer["metadata"]["name"]
        hosts = [r["host"] for r in ingress["spec"]["rules"]]
        assert ingress["spec"]["tls"][0]["hosts"] == hosts
        assert ingress["spec"]["tls"][0]["secretName"]
        solvers = issuer["spec"]["acme"]["solvers"]
        assert solvers == [{"http01": {"ingress": {"ingressClassName": "nginx"}}}], path
        server = issuer["spec"]["acme"]["server"]
        assert server == (ACME_PRODUCTION if path.endswith("production") else ACME_STAGING), path
    production = one(rendered["k8s/overlays/production"], "Issuer")["spec"]["acme"]
    staging = one(rendered["k8s/overlays/staging"], "Issuer")["spec"]["acme"]
    assert production["privateKeySecretRef"] != staging["privateKeySecretRef"]


def test_network_policy_admits_only_what_the_pods_need(docs: Docs) -> None:
    policy = one(docs, "NetworkPolicy")
    labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    container_ports = ports(serving(docs))
    by_port: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule["from"])
    assert set(by_port) == set(container_ports.values())
    sources = [s["namespaceSelector"]["matchLabels"] for s in by_port[container_ports["http"]]]
    assert {"kubernetes.io/metadata.name": "ingress-nginx"} in sources
    grpc_sources = [s["namespaceSelector"]["matchLabels"] for s in by_port[container_ports["grpc"]]]
    assert grpc_sources == [{"chatsvc.st00ck.io/admin-access": "true"}]

    env = pod_env(docs, serving(docs))
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    kafka_ports = {int(b.rpartition(":")[2]) for b in env["KAFKA_BROKERS"].split(",")}
    assert kafka_ports <= egress_ports
    assert int(env.get("SCYLLA_PORT", 9042)) in egress_ports
    assert 53 in egress_ports


def test_secret_templates_are_placeholders_outside_the_build() -> None:
    templates = secret_templates()
    assert set(templates) == {"chatsvc-jwt", "chatsvc-kafka-client-tls", "chatsvc-scylla-auth"}
    for name, secret in templates.items():
        values = secret_keys(secret)
        assert any("REPLACE_ME" in v for v in values.values()), name
    for path in [*(REPO / "k8s").rglob("*"), *(REPO / "deploy").rglob("*"), REPO / "docker-compose.yml"]:
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "PRIVATE KEY-----" not in text and "BEGIN CERTIFICATE" not in text, path
    for kustomization in (REPO / "k8s").rglob("kustomization.yaml"):
        resources = yaml.safe_load(kustomization.read_text()).get("resources", [])
        assert not [r for r in resources if "secrets" in r], kustomization

"""Static checks of deploy/terraform/: formatted, evaluates, passes the scanner, agrees with the code.

``tofu validate`` of the whole module needs the hashicorp/google provider's schema, which
cannot be had offline (the Terraform registry is unreachable, and building the provider
from the Go module proxy is far too big for a test run). So, instead:

* ``scripts/tofu fmt -check`` (a pinned OpenTofu from the Go module proxy) on every file;
* ``settings.tf`` -- every value the containers get and the rules across variables, nothing
  from the google provider -- evaluated by OpenTofu itself together with the module's
  ``variables.tf``, called exactly as the example root calls the module: real HCL semantics,
  real variable validation and preconditions, ``tofu validate``;
* python-hcl2 parses every file, for the resource blocks the cross-checks read;
* checkov ``--framework terraform`` with its own checks plus deploy/terraform/checkov/.

The cross-checks read the evaluated environment: every variable against what
``Settings.from_env`` reads, secrets from Secret Manager, paths at mounted files,
``Settings.from_env`` itself on it, the request timeout against the heartbeat, the drain
against Cloud Run's SIGTERM grace, probes against the app's routes. Each check is a function
returning its problems, and each is also run on a deliberately broken copy to show it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from chatsvc.cli import build_parser
from chatsvc.settings import Settings, SettingsError
from chatsvc.web.origins import OriginPolicy
from tests.deploy.support import (
    CHECKOV,
    REPO,
    app_routes,
    checkov_env,
    known_settings_names,
    missing_required,
    settings_from,
    settings_names_read_by,
)

TERRAFORM = REPO / "deploy" / "terraform"
MODULE = TERRAFORM / "modules" / "chatsvc-cloudrun"
EXAMPLE = TERRAFORM / "examples" / "production"
POLICIES = TERRAFORM / "checkov"
TOFU = REPO / "scripts" / "tofu"
MODULE_SOURCE = '"../../modules/chatsvc-cloudrun"'
HCL = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)

#: What the harness module outputs: settings.tf's locals and the inputs they are checked with.
HARNESS_OUTPUT = """
output "evaluated" {
  value = {
    plain_env               = local.plain_env
    secret_env              = local.secret_env
    secret_files            = local.secret_files
    secret_ids              = local.secret_ids
    probes                  = local.probes
    container_port          = local.container_port
    request_timeout_seconds = local.request_timeout_seconds
    sigterm_grace_seconds   = local.sigterm_grace_seconds
    inputs = {
      min_instances         = var.min_instances
      max_instances         = var.max_instances
      concurrency           = var.concurrency
      allow_unauthenticated = var.allow_unauthenticated
      ingress               = var.ingress
    }
  }
}
"""

Problems = list[str]

#: Set by Cloud Run itself; a service may not set them (PORT is the container port, 8080).
CLOUD_RUN_RESERVED = {"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"}


# -- tools ----------------------------------------------------------------------------------


def tofu(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``scripts/tofu ARGS`` in ``cwd``: no CLI config, no prompts, no colour, no checkpoint."""
    rc = cwd / ".tofurc"
    rc.write_text("")
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(rc),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    return subprocess.run(
        [str(TOFU), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def parse(path: Path) -> dict[str, list[Any]]:
    """Every ``.tf`` file of a directory through python-hcl2, top-level blocks merged."""
    merged: dict[str, list[Any]] = {}
    files = sorted(path.glob("*.tf"))
    assert files, f"no .tf files in {path}"
    for file in files:
        for key, blocks in hcl2.loads(file.read_text(), serialization_options=HCL).items():
            merged.setdefault(key, []).extend(blocks)
    return merged


def resources(parsed: dict[str, list[Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for block in parsed.get("resource", []):
        for kind, named in block.items():
            for name, body in named.items():
                out[(kind, name)] = body
    return out


def variables(parsed: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    return {name: body for block in parsed.get("variable", []) for name, body in block.items()}


def dynamic(block: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The ``dynamic "<name>"`` blocks inside ``block``."""
    return [d[name] for d in block.get("dynamic", []) if name in d]


def copy_module(tmp: Path, edit: Callable[[str, str], str] | None = None) -> Path:
    """A copy of the module; ``edit(file_name, text)`` may change each file's text."""
    out = tmp / "module-copy"
    shutil.copytree(MODULE, out)
    if edit is not None:
        for file in out.glob("*.tf"):
            file.write_text(edit(file.name, file.read_text()))
    return out


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r}"
    return text.replace(old, new)


# -- the evaluated settings -----------------------------------------------------------------


def set_arguments(main_tf: str, arguments: dict[str, str]) -> str:
    """The example's ``module "chatsvc"`` block with these arguments set (replacing any value)."""
    for key, value in arguments.items():
        # Drop the existing argument: one line, or a brace-balanced object at two spaces.
        main_tf = re.sub(rf"(?m)^  {key} += \{{\n(?:.*\n)*?  \}}\n", "", main_tf)
        main_tf = re.sub(rf"(?m)^  {key} += .*\n", "", main_tf)
        main_tf = replace_once(
            main_tf, f"source = {MODULE_SOURCE}\n", f"source = {MODULE_SOURCE}\n  {key} = {value}\n"
        )
    return main_tf


@dataclass
class Run:
    """One OpenTofu evaluation of the harness: the process, and the output when it applied."""

    proc: subprocess.CompletedProcess[str]
    evaluated: dict[str, Any] | None

    @property
    def log(self) -> str:
        return (self.proc.stdout + self.proc.stderr)[-4000:]


def evaluate(tmp: Path, module: Path = MODULE, arguments: dict[str, str] | None = None) -> Run:
    """The example root's module call, evaluated by OpenTofu against variables.tf + settings.tf.

    The harness is the example root (its main.tf and variables.tf, terraform.tfvars.example
    as its tfvars) with the module source pointed at a copy of the module's two
    provider-free files plus an output of their locals. ``arguments`` override the example's.
    """
    root, harness = tmp / "root", tmp / "harness-module"
    root.mkdir(parents=True)
    harness.mkdir()
    for name in ("variables.tf", "settings.tf"):
        shutil.copy(module / name, harness / name)
    (harness / "harness.tf").write_text(HARNESS_OUTPUT)
    main_tf = set_arguments((EXAMPLE / "main.tf").read_text(), arguments or {})
    (root / "main.tf").write_text(replace_once(main_tf, MODULE_SOURCE, '"../harness-module"'))
    shutil.copy(EXAMPLE / "variables.tf", root / "variables.tf")
    shutil.copy(EXAMPLE / "terraform.tfvars.example", root / "terraform.tfvars")
    (root / "harness.tf").write_text('output "evaluated" {\n  value = module.chatsvc.evaluated\n}\n')
    for args in (
        ["init", "-backend=false", "-input=false", "-no-color"],
        ["validate", "-no-color"],
        ["apply", "-auto-approve", "-input=false", "-lock=false", "-no-color"],
    ):
        proc = tofu(args, root)
        if proc.returncode != 0:
            return Run(proc, None)
    proc = tofu(["output", "-json", "-no-color"], root)
    assert proc.returncode == 0, proc.stderr
    return Run(proc, json.loads(proc.stdout)["evaluated"]["value"])


def applied(run: Run) -> dict[str, Any]:
    assert run.evaluated is not None, f"tofu failed ({run.proc.args[1]}):\n{run.log}"
    return run.evaluated


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return applied(evaluate(tmp_path_factory.mktemp("tofu")))


@pytest.fixture(scope="module")
def module() -> dict[str, list[Any]]:
    return parse(MODULE)


def stand_in_env(ev: dict[str, Any]) -> dict[str, str]:
    """The container's environment, each Secret Manager value replaced by a stand-in."""
    env = dict(ev["plain_env"])
    for name in ev["secret_env"]:
        env[name] = f"stand-in-for-{name.lower()}-from-secret-manager-" + "x" * 16
    return env


# -- cross-checks (each returns what is wrong) ----------------------------------------------


def env_problems(ev: dict[str, Any], tmp: Path) -> Problems:
    """Names chatsvc reads; Secret values from Secret Manager; paths at mounted files; a valid config."""
    problems = []
    known = known_settings_names()
    plain, secret = set(ev["plain_env"]), set(ev["secret_env"])
    problems += [f"{n} is set but chatsvc never reads it" for n in sorted((plain | secret) - known)]
    problems += [f"{n} is set both as a value and from Secret Manager" for n in sorted(plain & secret)]
    problems += [f"{n} is reserved by Cloud Run" for n in sorted((plain | secret) & CLOUD_RUN_RESERVED)]
    problems += [
        f"{n} is a secret in chatsvc's settings but is set as a plain value"
        for n in sorted(plain & settings_names_read_by("secret"))
    ]
    # What main.tf mounts: each secret as <mount_path>/<file>.
    files = {f"{f['mount_path']}/{f['file']}" for f in ev["secret_files"].values()}
    for name, file in ev["secret_files"].items():
        if file["path"] != f"{file['mount_path']}/{file['file']}":
            problems.append(f"{name}: {file['path']} is not the file {file['file']} in {file['mount_path']}")
    for name in sorted(plain & settings_names_read_by("readable_file")):
        if ev["plain_env"][name] not in files:
            problems.append(f"{name}={ev['plain_env'][name]} is not a file mounted from Secret Manager")
    mounts = [f["mount_path"] for f in ev["secret_files"].values()]
    if len(set(mounts)) != len(mounts):
        problems.append(f"Cloud Run mounts one secret per directory; shared: {sorted(mounts)}")
    refs = {r["secret"] for r in ev["secret_env"].values()} | {
        f["secret"] for f in ev["secret_files"].values()
    }
    if refs != set(ev["secret_ids"]):
        problems.append(f"secret_ids {sorted(ev['secret_ids'])} != secrets referenced {sorted(refs)}")
    env = stand_in_env(ev)
    problems += missing_required(env)
    try:
        settings, recorder = settings_from(env, files, tmp)
    except SettingsError as exc:
        return [*problems, f"Settings.from_env rejects the environment: {exc}"]
    problems += [f"from_env read {n}, unknown to the source scan" for n in sorted(recorder.read - known)]
    if not settings.is_production or settings.auto_migrate or settings.grpc.enabled:
        problems.append("expected production, CHATSVC_AUTO_MIGRATE=false, CHATSVC_GRPC_ENABLED=false")
    if settings.port != ev["container_port"] or settings.host != "0.0.0.0":
        problems.append(
            f"chatsvc listens on {settings.host}:{settings.port}, not 0.0.0.0:{ev['container_port']}"
        )
    if (
        settings.store != "scylla"
        or settings.kafka is None
        or settings.kafka.security_protocol == "PLAINTEXT"
    ):
        problems.append("expected the ScyllaDB store and Kafka over TLS")
    return problems


def heartbeat_problems(ev: dict[str, Any]) -> Problems:
    """A websocket lives at most the request timeout; the heartbeat must fit in it many times."""
    env = ev["plain_env"]
    interval = float(env.get("CHATSVC_PING_INTERVAL", Settings().ping_interval_seconds))
    timeout = float(env.get("CHATSVC_PING_TIMEOUT", Settings().ping_timeout_seconds))
    if ev["request_timeout_seconds"] != 3600:
        return [f"request timeout {ev['request_timeout_seconds']} s, expected Cloud Run's maximum 3600 s"]
    if 10 * (interval + timeout) > ev["request_timeout_seconds"]:
        return [f"ping interval + timeout = {interval + timeout} s is not well inside the request timeout"]
    return []


def drain_problems(ev: dict[str, Any]) -> Problems:
    """Socket drain and in-flight handlers are each bounded by the shutdown timeout."""
    drain = float(ev["plain_env"].get("CHATSVC_SHUTDOWN_TIMEOUT", Settings().shutdown_timeout_seconds))
    if 2 * drain + 2 > ev["sigterm_grace_seconds"]:
        return [
            f"a drain of up to 2 x {drain} s + 2 s does not fit Cloud Run's {ev['sigterm_grace_seconds']} s"
        ]
    return []


def service_problems(parsed: dict[str, list[Any]]) -> Problems:
    """The Cloud Run service and job blocks say what the evaluated settings are checked for."""
    res = resources(parsed)
    svc = res[("google_cloud_run_v2_service", "chatsvc")]
    tpl = svc["template"][0]
    want = {
        "timeout": "${local.request_timeout_seconds}s",
        "session_affinity": True,
        "max_instance_request_concurrency": "${var.concurrency}",
        "service_account": "${google_service_account.chatsvc.email}",
    }
    problems = [f"template.{k} = {tpl.get(k)!r}, expected {v!r}" for k, v in want.items() if tpl.get(k) != v]
    if tpl["scaling"] != [
        {"min_instance_count": "${var.min_instances}", "max_instance_count": "${var.max_instances}"}
    ]:
        problems.append(f"template.scaling = {tpl['scaling']}")
    if svc.get("ingress") != "${var.ingress}":
        problems.append("ingress is not var.ingress")
    (container,) = tpl["containers"]
    if container.get("ports") != [{"name": "http1", "container_port": "${local.container_port}"}]:
        problems.append(
            f"the public service must expose exactly the HTTP port; ports = {container.get('ports')}"
        )
    for kind, path_ref in (("startup_probe", "startup"), ("liveness_probe", "liveness")):
        get = container.get(kind, [{}])[0].get("http_get", [{}])[0]
        if get != {"path": f"${{local.probes.{path_ref}.path}}", "port": "${local.container_port}"}:
            problems.append(f"{kind}.http_get = {get}")
    resources_block = container["resources"][0]
    if resources_block.get("cpu_idle") is not False:
        problems.append("cpu_idle must be false: background loops run between requests")
    for owner, spec in (
        ("service", tpl),
        ("job", res[("google_cloud_run_v2_job", "migrate")]["template"][0]["template"][0]),
    ):
        (box,) = spec["containers"]
        envs = dynamic(box, "env")
        if {e["for_each"] for e in envs} != {"${local.plain_env}", "${local.secret_env}"}:
            problems.append(f"{owner}: env must come from local.plain_env and local.secret_env only")
        if "env" in box:
            problems.append(f"{owner}: literal env blocks bypass settings.tf (and these checks)")
        mounts = dynamic(box, "volume_mounts")
        volumes = dynamic(spec, "volumes")
        if [m["for_each"] for m in mounts] != ["${local.secret_files}"] or [
            v["for_each"] for v in volumes
        ] != ["${local.secret_files}"]:
            problems.append(f"{owner}: volumes and mounts must be exactly local.secret_files")
        else:
            mount, volume = mounts[0]["content"][0], volumes[0]["content"][0]
            item = volume["secret"][0]["items"][0]
            if mount != {
                "name": "${volume_mounts.value.dir}",
                "mount_path": "${volume_mounts.value.mount_path}",
            }:
                problems.append(f"{owner}: volume_mounts = {mount}")
            if volume["name"] != "${volumes.value.dir}" or item.get("path") != "${volumes.value.file}":
                problems.append(f"{owner}: volumes = {volume}")
        if box.get("image") != "${var.image}" or spec.get("service_account") != tpl.get("service_account"):
            problems.append(f"{owner}: must run var.image as the module's service account")
        for key in ("vpc_access",):
            if spec.get(key) != tpl.get(key):
                problems.append(f"{owner}: {key} differs from the service's")
    return problems


def checkov(paths: list[Path]) -> list[dict[str, Any]]:
    args = [str(CHECKOV), "--framework", "terraform", "--output", "json", "--skip-download"]
    args += ["--external-checks-dir", str(POLICIES)]
    for path in paths:
        args += ["-d", str(path)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=checkov_env(), check=False)
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    return report if isinstance(report, list) else [report]


def failed_checks(reports: list[dict[str, Any]]) -> list[str]:
    return [
        f"{c['check_id']} {c['check_name']} -- {c['resource']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]


# -- tests ----------------------------------------------------------------------------------


def test_every_file_is_formatted_as_tofu_fmt_wants(tmp_path: Path) -> None:
    proc = tofu(["fmt", "-check", "-diff", "-recursive", "-no-color", str(TERRAFORM)], tmp_path)
    assert proc.returncode == 0, (
        f"run `scripts/tofu fmt -recursive deploy/terraform`:\n{proc.stdout}{proc.stderr}"
    )
    assert "OpenTofu v1.12.6" in tofu(["version"], tmp_path).stdout
    # And it does look: a misaligned copy fails the same check.
    bad = copy_module(
        tmp_path,
        lambda name, text: (
            replace_once(text, 'account_id   = "${var.name}-run"', 'account_id = "${var.name}-run"')
            if name == "main.tf"
            else text
        ),
    )
    assert tofu(["fmt", "-check", "-no-color", str(bad)], tmp_path).returncode != 0


def test_every_file_parses_and_holds_what_the_issue_asks_for(module: dict[str, list[Any]]) -> None:
    assert set(resources(module)) == {
        ("google_service_account", "chatsvc"),
        ("google_secret_manager_secret_iam_member", "chatsvc"),
        ("google_cloud_run_v2_job", "migrate"),
        ("google_cloud_run_v2_service", "chatsvc"),
        ("google_cloud_run_v2_service_iam_member", "public"),
        ("google_cloud_run_domain_mapping", "chatsvc"),
        ("terraform_data", "invariants"),
    }
    outputs = {name for block in module["output"] for name in block}
    assert {"url", "service_uri", "service_account_email", "migration_job_name"} <= outputs
    example = parse(EXAMPLE)
    (call,) = [b["chatsvc"] for b in example["module"]]
    assert call["source"] == "../../modules/chatsvc-cloudrun"
    assert set(call) - {"source"} <= set(variables(module)), "the example passes arguments the module lacks"
    assert set(variables(example)) <= set(call), "an example variable is not passed on"
    assert "google" in example["provider"][0]


def test_settings_evaluate_in_opentofu_and_the_example_passes_validation(evaluated: dict[str, Any]) -> None:
    assert evaluated["plain_env"]["CHATSVC_ENV"] == "production"
    assert evaluated["inputs"]["min_instances"] == 2
    assert set(evaluated["secret_env"]) == {"CHATSVC_JWT_SECRET", "SCYLLA_USERNAME", "SCYLLA_PASSWORD"}
    assert set(evaluated["secret_files"]) == {
        "KAFKA_SSL_CA_CERT",
        "KAFKA_SSL_CLIENT_CERT",
        "KAFKA_SSL_CLIENT_KEY",
    }


def test_every_variable_set_is_read_by_chatsvc_secrets_from_secret_manager_paths_mounted(
    evaluated: dict[str, Any], tmp_path: Path
) -> None:
    assert env_problems(evaluated, tmp_path / "good") == []


def test_the_environment_cross_check_catches_broken_copies(tmp_path: Path) -> None:
    breakages = {
        "unknown variable": (
            "CHATSVC_PING_TIMEOUT     = tostring(var.ping_timeout_seconds)",
            "CHATSVC_PING_TIMEOUTS    = tostring(var.ping_timeout_seconds)",
            "CHATSVC_PING_TIMEOUTS is set but chatsvc never reads it",
        ),
        "secret as a value": (
            'CHATSVC_STORE        = "scylla"',
            'CHATSVC_STORE        = "scylla"\n    SCYLLA_PASSWORD      = "hunter2"',
            "SCYLLA_PASSWORD is a secret in chatsvc's settings but is set as a plain value",
        ),
        "path to nothing": (
            'path       = "${local.secret_root}/${ref.dir}/${ref.file}"',
            'path       = "/etc/chatsvc/${ref.file}"',
            "KAFKA_SSL_CA_CERT=/etc/chatsvc/ca.pem is not a file mounted from Secret Manager",
        ),
        "reserved name": (
            'CHATSVC_STORE        = "scylla"',
            'CHATSVC_STORE        = "scylla"\n    PORT                 = "8080"',
            "PORT is reserved by Cloud Run",
        ),
        "not production": (
            'CHATSVC_ENV  = "production"',
            'CHATSVC_ENV  = "development"',
            "CHATSVC_ENV='development', expected 'production'",
        ),
    }
    for name, (old, new, expected) in breakages.items():
        tmp = tmp_path / name.replace(" ", "-")
        copy = copy_module(
            tmp, lambda f, t, old=old, new=new: replace_once(t, old, new) if f == "settings.tf" else t
        )
        problems = env_problems(applied(evaluate(tmp / "run", module=copy)), tmp / "env")
        assert any(expected in p for p in problems), (name, problems)


def test_request_timeout_is_the_websocket_maximum_and_far_above_the_heartbeat(
    evaluated: dict[str, Any], module: dict[str, list[Any]], tmp_path: Path
) -> None:
    assert heartbeat_problems(evaluated) == []
    env = evaluated["plain_env"]
    assert float(env["CHATSVC_PING_INTERVAL"]) + float(env["CHATSVC_PING_TIMEOUT"]) == 45
    tpl = resources(module)[("google_cloud_run_v2_service", "chatsvc")]["template"][0]
    assert tpl["timeout"] == "${local.request_timeout_seconds}s"
    # A heartbeat each variable allows, but not together: tofu refuses it (the invariants in
    # settings.tf), and so does the cross-check, on a copy of the evaluated settings.
    run = evaluate(
        tmp_path / "slow", arguments={"ping_interval_seconds": "300", "ping_timeout_seconds": "300"}
    )
    assert run.evaluated is None and "must stay within a tenth" in " ".join(run.log.split()), run.log
    slow = {**evaluated, "plain_env": {**env, "CHATSVC_PING_INTERVAL": "300", "CHATSVC_PING_TIMEOUT": "300"}}
    assert heartbeat_problems(slow) != []
    assert heartbeat_problems({**evaluated, "request_timeout_seconds": 300}) != []


def test_the_drain_fits_in_cloud_runs_ten_seconds_after_sigterm(
    evaluated: dict[str, Any], tmp_path: Path
) -> None:
    assert drain_problems(evaluated) == []
    assert evaluated["sigterm_grace_seconds"] == 10
    assert drain_problems({**evaluated, "sigterm_grace_seconds": 5}) != []
    # A module that believed in a shorter grace: tofu refuses its own default drain.
    broken = copy_module(
        tmp_path,
        lambda f, t: (
            replace_once(t, "sigterm_grace_seconds = 10", "sigterm_grace_seconds = 5")
            if f == "settings.tf"
            else t
        ),
    )
    run = evaluate(tmp_path / "run", module=broken)
    assert run.evaluated is None and "drain must finish within" in " ".join(run.log.split()), run.log


def test_service_job_probes_ports_and_mounts_are_wired_to_the_checked_settings(
    module: dict[str, list[Any]], evaluated: dict[str, Any], tmp_path: Path
) -> None:
    assert service_problems(module) == []
    routes = app_routes()
    assert evaluated["probes"]["startup"]["path"] == "/readyz"
    assert evaluated["probes"]["liveness"]["path"] == "/healthz"
    for kind, probe in evaluated["probes"].items():
        assert ("GET", probe["path"]) in routes, f"{kind} probe {probe['path']} is not a route of the app"
    # Startup may take 60 s (Kafka and ScyllaDB connects), as in k8s/base/deployment.yaml.
    assert (
        evaluated["probes"]["startup"]["period_seconds"] * evaluated["probes"]["startup"]["failure_threshold"]
        >= 60
    )
    breakages = [
        ("session_affinity = true", "session_affinity = false"),
        ('path = local.probes.liveness.path', 'path = "/"'),
        ('name           = "http1"\n        container_port = local.container_port',
         'name           = "h2c"\n        container_port = 50051'),
        ("cpu_idle          = false", "cpu_idle          = true"),
        ('timeout = "${local.request_timeout_seconds}s"', 'timeout = "300s"'),
    ]  # fmt: skip
    for index, (old, new) in enumerate(breakages):
        tmp = tmp_path / f"broken-{index}"
        copy = copy_module(
            tmp, lambda f, t, old=old, new=new: replace_once(t, old, new) if f == "main.tf" else t
        )
        assert service_problems(parse(copy)) != [], f"not caught: {new}"


def test_the_admin_grpc_api_is_not_exposed(module: dict[str, list[Any]], evaluated: dict[str, Any]) -> None:
    assert evaluated["plain_env"]["CHATSVC_GRPC_ENABLED"] == "false"
    services = [k for k in resources(module) if k[0] == "google_cloud_run_v2_service"]
    assert services == [("google_cloud_run_v2_service", "chatsvc")], "one (public, HTTP) service only"
    ports = [
        p["container_port"] for p in resources(module)[services[0]]["template"][0]["containers"][0]["ports"]
    ]
    assert ports == ["${local.container_port}"] and evaluated["container_port"] == Settings().port
    assert Settings().grpc.port != evaluated["container_port"]


def test_scaling_affinity_and_concurrency(evaluated: dict[str, Any]) -> None:
    inputs = evaluated["inputs"]
    assert 1 <= inputs["min_instances"] <= inputs["max_instances"]
    assert 100 <= inputs["concurrency"] <= 1000


#: Inputs OpenTofu must refuse (variable validation, or the invariants in settings.tf).
INVALID: dict[str, tuple[dict[str, str], str]] = {
    "min_instances": ({"min_instances": "0"}, "min_instances must be a whole number >= 1"),
    "min_instances>max": ({"min_instances": "30"}, "min_instances must not exceed max_instances"),
    "image": (
        {"image": '"europe-docker.pkg.dev/p/chatsvc/chatsvc:latest"'},
        "image must be pinned by digest",
    ),
    "concurrency": ({"concurrency": "5000"}, "concurrency must be a whole number between 100 and 1000"),
    "shutdown_timeout_seconds": ({"shutdown_timeout_seconds": "8"}, "must be between 0.5 and 4"),
    "ping_interval_seconds": ({"ping_interval_seconds": "900"}, "must be between 1 and 300"),
    "cors_origins": (
        {"cors_origins": '["https://app.example.com/"]'},
        "each origin must look like https://host[:port]",
    ),
    "ingress": ({"ingress": '"ALL"'}, "ingress must be INGRESS_TRAFFIC_ALL"),
    "vpc": (
        {"vpc": '{ subnetwork = "a", connector = "b" }'},
        "set either subnetwork (Direct VPC egress) or connector",
    ),
    "jwt": (
        {"jwt": '{ secret = "a", public_key_secret = "b" }'},
        "jwt: set either secret (HMAC) or public_key_secret",
    ),
    "jwt.algorithms": (
        {"jwt": '{ secret = "a", algorithms = ["RS256"] }'},
        "HS* go with secret, RS*/ES*/PS*/EdDSA with public_key_secret",
    ),
    "kafka": ({"kafka": '{ brokers = ["kafka:9093"] }'}, "never talks to Kafka in plaintext"),
    "scylla": (
        {"scylla": '{ contact_points = ["s"], replication = "3" }'},
        "scylla.replication must be SimpleStrategy:N",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_opentofu_rejects_bad_input(case: str, tmp_path: Path) -> None:
    arguments, message = INVALID[case]
    run = evaluate(tmp_path, arguments=arguments)
    assert run.evaluated is None, f"{arguments} was accepted"
    assert message in " ".join(run.log.split()), run.log


def test_every_variable_has_a_description_and_every_non_boolean_one_a_validation(
    module: dict[str, list[Any]],
) -> None:
    declared = variables(module)
    assert {name for arguments, _ in INVALID.values() for name in arguments} <= set(declared)
    for name, body in declared.items():
        assert len(body.get("description", "")) >= 20, f"variable {name}: no description"
        assert "type" in body, f"variable {name}: no type"
        if body["type"] != "bool":
            assert body.get("validation"), f"variable {name}: no validation"
            for rule in body["validation"]:
                assert len(rule["error_message"]) >= 20, f"variable {name}: a terse error message"
    for name, body in variables(parse(EXAMPLE)).items():
        assert len(body.get("description", "")) >= 20, f"example variable {name}: no description"


def test_the_service_account_can_read_its_secrets_and_nothing_else(module: dict[str, list[Any]]) -> None:
    res = resources(module)
    assert not [k for k in res if "project_iam" in k[0] or "organization" in k[0] or "folder" in k[0]]
    access = res[("google_secret_manager_secret_iam_member", "chatsvc")]
    assert access["for_each"] == "${local.secret_ids}"
    assert access["role"] == "roles/secretmanager.secretAccessor"
    assert access["member"] == "${google_service_account.chatsvc.member}"
    public = res[("google_cloud_run_v2_service_iam_member", "public")]
    assert public["count"] == "${var.allow_unauthenticated ? 1 : 0}"
    assert public["role"] == "roles/run.invoker"


def test_the_migration_job_runs_chatsvc_migrate_before_the_service_serves(
    module: dict[str, list[Any]],
) -> None:
    res = resources(module)
    job = res[("google_cloud_run_v2_job", "migrate")]
    svc = res[("google_cloud_run_v2_service", "chatsvc")]
    job_box = job["template"][0]["template"][0]["containers"][0]
    svc_box = svc["template"][0]["containers"][0]
    parser = build_parser()
    assert parser.parse_args(job_box["args"]).command == "migrate"
    assert parser.parse_args(svc_box["args"]).command == "serve"
    assert job_box["command"] == svc_box["command"] == ["chatsvc"]
    assert job["run_execution_token"] == "${local.migration_token}"
    assert "${google_cloud_run_v2_job.migrate}" in svc["depends_on"]
    assert "${google_secret_manager_secret_iam_member.chatsvc}" in svc["depends_on"]


def test_checkov_passes_with_only_the_public_invoker_skipped(tmp_path: Path) -> None:
    reports = checkov([TERRAFORM])
    assert not failed_checks(reports), "\n".join(failed_checks(reports))
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert sum(r["summary"]["passed"] for r in reports) >= 7
    assert sum(r["summary"]["resource_count"] for r in reports) >= 6
    skipped = [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])]
    assert {c["check_id"] for c in skipped} == {"CKV2_CHATSVC_3"}
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) >= 30, f"{check['check_id']} on {check['resource']} skipped without a reason"
    # The policies bite: a service on the default compute account, and a public secret.
    example = tmp_path / "examples" / "production"
    shutil.copytree(EXAMPLE, example)
    shutil.copytree(
        MODULE,
        tmp_path / "modules" / "chatsvc-cloudrun",
        ignore=shutil.ignore_patterns(".terraform"),
    )
    main = tmp_path / "modules" / "chatsvc-cloudrun" / "main.tf"
    text = main.read_text()
    # The service's service_account (four spaces in; the job's is at six).
    text = replace_once(text, "\n    service_account       = google_service_account.chatsvc.email\n", "\n")
    text = replace_once(
        text, 'role      = "roles/secretmanager.secretAccessor"', 'role      = "roles/secretmanager.admin"'
    )
    main.write_text(text)
    failed = failed_checks(checkov([tmp_path]))
    assert any(f.startswith("CKV2_CHATSVC_1 ") for f in failed), failed
    assert any(f.startswith("CKV2_CHATSVC_4 ") for f in failed), failed


def test_every_checkov_skip_in_the_sources_carries_its_justification() -> None:
    found = 0
    for path in sorted(TERRAFORM.rglob("*.tf")):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                found += 1
                assert re.fullmatch(r"\s*#checkov:skip=CKV2?_[A-Z0-9_]+:.{30,}", line), f"{path}: {line}"
    assert found == 1


def test_the_services_own_url_passes_the_origin_check(evaluated: dict[str, Any], tmp_path: Path) -> None:
    """Cloud Run terminates TLS, keeps Host and sets X-Forwarded-Proto: https."""
    files = {f"{f['mount_path']}/{f['file']}" for f in evaluated["secret_files"].values()}
    settings, _ = settings_from(stand_in_env(evaluated), files, tmp_path)
    # Plain HTTP behind Cloud Run's TLS, so the scheme chatsvc/app.py gives the policy is http.
    assert settings.tls_cert is None
    policy = OriginPolicy(settings.cors_origins, scheme="http")
    for host in ("chatsvc-3x4mpl3-ew.a.run.app", "chat.st00ck.example"):
        environ = {"HTTP_HOST": host, "HTTP_X_FORWARDED_PROTO": "https"}
        assert policy(f"https://{host}", environ)
        assert not policy(f"https://evil.{host}", environ)
    assert policy("https://www.st00ck.example", {"HTTP_HOST": "chat.st00ck.example"})

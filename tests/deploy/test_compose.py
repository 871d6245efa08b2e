"""The deployment files: docker-compose.yml is valid Compose and starts things in a safe order,
deploy/Dockerfile builds one non-root image, deploy/k8s has probes, limits and a non-root user
per service, and the container health probe finds its service.

Validation uses Docker Compose itself (`config -q`, no engine needed); `make test` installs
Debian's docker-compose for it through deploy/install-test-tools.sh. The structural checks are
plain functions over the parsed file, and are themselves tested against broken variants.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
HEALTHCHECK_SCRIPT = ROOT / "deploy" / "healthcheck.py"
K8S = ROOT / "deploy" / "k8s"

PORTS = {
    name: Settings.model_fields[f"{name}_port"].default
    for name in ("ingest", "classifier", "reports", "notifier")
}
INFRA = ("kafka", "postgres", "migrate", "mailpit")
# What every Kizuna service waits for, and the environment it needs on the compose network.
STARTS_AFTER = {
    "migrate": "service_completed_successfully",
    "kafka": "service_healthy",
    "postgres": "service_healthy",
}
SERVICE_ENV = {
    "DATABASE_URL": "postgresql://postgres:postgres@postgres:5432/kizuna",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "KIZUNA_HOST": "0.0.0.0",
}
RESTARTING = re.compile(r"^(always|unless-stopped|on-failure(:\d+)?)$")
YAML_TO_JSON = (
    "import json, sys, yaml; "
    "json.dump(list(yaml.safe_load_all(open(sys.argv[1], encoding='utf-8'))), sys.stdout)"
)
NO_TOOL = (
    "no Docker Compose to validate with: `make test` installs Debian's docker-compose through "
    "deploy/install-test-tools.sh, which needs root and apt-get"
)


def _unavailable(reason: str):
    """Skip where a tool cannot be had; under CI (root, Debian reachable) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it)")
    pytest.skip(reason)


# --- the validator ------------------------------------------------------------------------------


def _runs(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compose_cli() -> list[str] | None:
    """Debian's docker-compose (1.29) or a Compose v2 plugin, whichever runs."""
    if shutil.which("docker-compose") and _runs(["docker-compose", "version"]):
        return ["docker-compose"]
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    cli = compose_cli()
    if cli is None:
        _unavailable(NO_TOOL)
    return cli


def validate(cli: list[str], path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [*cli, "-f", str(path), "config", "-q"],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_file_is_valid_compose(compose):
    result = validate(compose, COMPOSE_FILE)
    assert result.returncode == 0, (
        f"{' '.join(compose)} config rejected docker-compose.yml:\n{result.stderr}"
    )


@pytest.mark.parametrize(
    ("find", "replace"),
    [
        ("condition: service_completed_successfully", "condition: service_finished"),
        ("    restart: unless-stopped\n", "    restart: unless-stopped\n    resart: always\n"),
        ("memory: 1G", "memory: [1G]"),
    ],
    ids=["unknown-condition", "unknown-key", "wrong-type"],
)
def test_validator_rejects_a_broken_file(compose, tmp_path, find, replace):
    """The validator really checks the schema: the same file with one mistake is refused."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert find in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(find, replace, 1), encoding="utf-8")
    assert validate(compose, broken).returncode != 0


# --- the parsed file ----------------------------------------------------------------------------


def load_yaml(path: Path) -> list:
    """Every document of a YAML file: with PyYAML in this environment if present, else with the
    Python that Debian's docker-compose runs on (python3-yaml is one of its dependencies)."""
    try:
        import yaml
    except ImportError:
        pass
    else:
        return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    candidates = []
    if found := shutil.which("docker-compose"):
        first = Path(found).read_bytes()[:200].split(b"\n", 1)[0]
        if first.startswith(b"#!") and b"python" in first:
            candidates.append(first[2:].decode().split()[0])
    candidates.append("/usr/bin/python3")
    for python in candidates:
        if not (Path(python).exists() or shutil.which(python)):
            continue
        result = subprocess.run(
            [python, "-c", YAML_TO_JSON, str(path)], capture_output=True, text=True, timeout=60
        )
        if result.returncode == 0:
            return json.loads(result.stdout)
    _unavailable("no YAML parser: PyYAML is not installed here, nor is Debian's docker-compose")


@pytest.fixture(scope="module")
def model() -> dict:
    (document,) = load_yaml(COMPOSE_FILE)
    return document


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _depends(service: dict) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: "service_started" for name in depends}
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in depends.items()
    }


def _healthcheck(service: dict) -> list[str]:
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return []
    test = check.get("test") or []
    return shlex.split(test) if isinstance(test, str) else [str(t) for t in test]


def _published_ports(service: dict) -> list[str]:
    """Ports bound to a fixed host port (what would collide when the service is scaled)."""
    fixed = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published"):
                fixed.append(str(port["published"]))
        elif ":" in str(port):
            fixed.append(str(port))
    return fixed


def deployment_problems(model: dict) -> list[str]:
    """Everything that makes the compose file unfit for Kizuna, as readable sentences."""
    problems = []
    if "version" in model:
        problems.append("the obsolete top-level `version:` key is present")
    services = model.get("services") or {}
    for name in (*INFRA, *PORTS):
        if name not in services:
            problems.append(f"service {name!r} is missing")
    if problems:
        return problems

    for name, service in services.items():
        if (
            "zookeeper" in name
            or "zookeeper" in str(service.get("image", ""))
            or any("ZOOKEEPER" in key for key in _env(service))
        ):
            problems.append(f"{name}: ZooKeeper has no place beside Kafka in KRaft mode")
        if name != "migrate" and not RESTARTING.match(str(service.get("restart", ""))):
            problems.append(f"{name}: no restart policy (restart: {service.get('restart')!r})")
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        if not (limits.get("cpus") and limits.get("memory")):
            problems.append(f"{name}: no resource limits (deploy.resources.limits cpus and memory)")
        if name != "migrate" and not _healthcheck(service):
            problems.append(f"{name}: no healthcheck")

    kafka = services["kafka"]
    kenv = _env(kafka)
    if not str(kafka.get("image", "")).startswith("apache/kafka"):
        problems.append("kafka: not the Apache Kafka image")
    if set((kenv.get("KAFKA_PROCESS_ROLES") or "").split(",")) != {"broker", "controller"}:
        problems.append("kafka: not a combined KRaft broker and controller (KAFKA_PROCESS_ROLES)")
    if not kenv.get("KAFKA_CONTROLLER_QUORUM_VOTERS"):
        problems.append("kafka: no KRaft controller quorum (KAFKA_CONTROLLER_QUORUM_VOTERS)")
    if "//kafka:9092" not in (kenv.get("KAFKA_ADVERTISED_LISTENERS") or ""):
        problems.append(
            "kafka: other containers cannot reach it at kafka:9092 (advertised listeners)"
        )

    if not str(services["postgres"].get("image", "")).startswith("postgres:16"):
        problems.append("postgres: not PostgreSQL 16")
    if "pg_isready" not in " ".join(_healthcheck(services["postgres"])):
        problems.append("postgres: healthcheck does not use pg_isready")

    migrate = services["migrate"]
    if _command(migrate) != ["kizuna", "migrate"]:
        problems.append(f"migrate: command is {_command(migrate)}, not `kizuna migrate`")
    if str(migrate.get("restart", "no")) != "no":
        problems.append("migrate: a one-shot step must not be restarted")
    if _depends(migrate).get("postgres") != "service_healthy":
        problems.append("migrate: does not wait for a healthy postgres")

    image = (migrate.get("image"), json.dumps(migrate.get("build"), sort_keys=True))
    build = migrate.get("build") or {}
    if (
        not isinstance(build, dict)
        or build.get("context") != "."
        or build.get("dockerfile") != "deploy/Dockerfile"
    ):
        problems.append("migrate: not built from the repository root with deploy/Dockerfile")

    for name, port in PORTS.items():
        service = services[name]
        if _command(service) != ["kizuna", "serve", name]:
            problems.append(f"{name}: command is {_command(service)}, not `kizuna serve {name}`")
        if (service.get("image"), json.dumps(service.get("build"), sort_keys=True)) != image:
            problems.append(f"{name}: not the one image that migrate and the other services use")
        probe = " ".join(_healthcheck(service))
        if not re.search(rf":{port}/(readyz|healthz)\b", probe):
            problems.append(
                f"{name}: healthcheck does not probe /readyz or /healthz on port {port}"
            )
        if re.search(r"\b(curl|wget)\b", probe):
            problems.append(f"{name}: healthcheck needs curl or wget, which the slim image lacks")
        depends = _depends(service)
        for dependency, condition in STARTS_AFTER.items():
            if depends.get(dependency) != condition:
                problems.append(
                    f"{name}: depends_on {dependency} is {depends.get(dependency)!r}, not {condition}"
                )
        env = _env(service)
        for key, value in SERVICE_ENV.items():
            if env.get(key) != value:
                problems.append(f"{name}: {key} is {env.get(key)!r}, not {value!r}")

    if fixed := _published_ports(services["classifier"]):
        problems.append(f"classifier: fixed host ports {fixed} collide when it is scaled")
    return problems


def test_compose_deployment_is_complete(model):
    assert deployment_problems(model) == []


def _drop_healthcheck(m):
    del m["services"]["ingest"]["healthcheck"]


def _start_before_migrations(m):
    m["services"]["reports"]["depends_on"]["migrate"] = {"condition": "service_started"}


def _no_limits(m):
    del m["services"]["notifier"]["deploy"]


def _zookeeper(m):
    m["services"]["zookeeper"] = {**m["services"]["mailpit"], "image": "zookeeper:3.9"}


def _zookeeper_mode(m):
    env = m["services"]["kafka"]["environment"]
    env.pop("KAFKA_PROCESS_ROLES")
    env["KAFKA_ZOOKEEPER_CONNECT"] = "zookeeper:2181"


def _pinned_classifier(m):
    m["services"]["classifier"]["ports"] = ["8004:8004"]


def _version_key(m):
    m["version"] = "3.9"


def _curl_probe(m):
    m["services"]["reports"]["healthcheck"]["test"] = [
        "CMD",
        "curl",
        "-f",
        "http://127.0.0.1:8002/readyz",
    ]


def _unhealthy_kafka_ok(m):
    m["services"]["classifier"]["depends_on"]["kafka"] = {"condition": "service_started"}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (_drop_healthcheck, "ingest: no healthcheck"),
        (_start_before_migrations, "reports: depends_on migrate"),
        (_no_limits, "notifier: no resource limits"),
        (_zookeeper, "zookeeper: ZooKeeper"),
        (_zookeeper_mode, "kafka: not a combined KRaft"),
        (_pinned_classifier, "classifier: fixed host ports"),
        (_version_key, "obsolete top-level `version:`"),
        (_curl_probe, "reports: healthcheck needs curl"),
        (_unhealthy_kafka_ok, "classifier: depends_on kafka"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_deployment_checks_catch_breakage(model, breakage, expected):
    broken = copy.deepcopy(model)
    breakage(broken)
    problems = deployment_problems(broken)
    assert any(expected in p for p in problems), problems


# --- the image ----------------------------------------------------------------------------------


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")),
    )
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in joined.splitlines()
        if (parts := line.strip().split(None, 1))
    ]


def test_dockerfile_builds_one_non_root_image():
    steps = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    args = " ".join(a for i, a in steps if i in ("FROM", "ARG"))
    assert "python:3.11-slim" in args
    assert any(i == "RUN" and re.search(r"pip install \.(\s|$)", a) for i, a in steps), (
        "installs the package once"
    )
    users = [a.split(":")[0] for i, a in steps if i == "USER"]
    assert users and users[-1] not in ("root", "0"), "runs as a non-root user"
    health = [a for i, a in steps if i == "HEALTHCHECK"]
    assert health and not re.search(r"\b(curl|wget)\b", health[-1]), "health probe without curl"
    cmd = [a for i, a in steps if i == "CMD"]
    assert json.loads(cmd[-1]) == ["kizuna", "serve", "ingest"]
    copied = " ".join(a for i, a in steps if i == "COPY")
    assert "deploy/healthcheck.py" in copied and "kizuna-healthcheck" in copied


# --- the Kubernetes manifests ------------------------------------------------------------------


def _image_uid() -> int:
    users = [a for i, a in _instructions(DOCKERFILE.read_text(encoding="utf-8")) if i == "USER"]
    return int(users[-1].split(":")[0])


def k8s_problems(name: str, documents: list[dict], uid: int) -> list[str]:
    """What keeps one service's manifest from running safely: probes, limits, a non-root user."""
    by_kind = {d.get("kind"): d for d in documents if d}
    deployment, service = by_kind.get("Deployment"), by_kind.get("Service")
    if deployment is None or service is None:
        return [f"{name}: needs a Deployment and a Service"]
    problems = []
    pod = deployment["spec"]["template"]["spec"]
    security = pod.get("securityContext") or {}
    if security.get("runAsNonRoot") is not True:
        problems.append(f"{name}: the pod does not require runAsNonRoot")
    if security.get("runAsUser", uid) != uid:
        problems.append(f"{name}: runAsUser {security.get('runAsUser')} is not the image's {uid}")
    containers = {c["name"]: c for c in pod.get("containers", [])}
    main = containers.get(name)
    if main is None:
        return [*problems, f"{name}: no container named {name}"]
    if main.get("command") != ["kizuna", "serve", name]:
        problems.append(f"{name}: command is {main.get('command')}")
    ports = {p.get("name"): p.get("containerPort") for p in main.get("ports", [])}
    if ports.get("http") != PORTS[name]:
        problems.append(f"{name}: containerPort http is {ports.get('http')}, not {PORTS[name]}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (main.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("http", PORTS[name]):
            problems.append(f"{name}: {probe} is not GET {path} on the service port")
    resources = main.get("resources") or {}
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(kind) or {}):
            problems.append(f"{name}: no cpu and memory {kind}")
    if (main.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: privilege escalation is not switched off")
    inits = [c.get("command") for c in pod.get("initContainers", [])]
    if ["kizuna", "migrate"] not in inits:
        problems.append(f"{name}: migrations do not run before the service starts")
    selector = deployment["spec"]["selector"]["matchLabels"]
    if service["spec"].get("selector") != selector:
        problems.append(f"{name}: the Service does not select the Deployment's pods")
    return problems


@pytest.mark.parametrize("name", list(PORTS))
def test_k8s_manifest_per_service(name):
    path = K8S / f"{name}.yaml"
    assert path.exists(), f"deploy/k8s/{name}.yaml is missing"
    assert k8s_problems(name, load_yaml(path), _image_uid()) == []
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    assert f"{name}.yaml" in kustomization["resources"]


def test_k8s_checks_catch_breakage():
    documents = load_yaml(K8S / "reports.yaml")
    broken = copy.deepcopy(documents)
    pod = next(d for d in broken if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    pod["securityContext"].pop("runAsNonRoot")
    pod["containers"][0].pop("readinessProbe")
    pod["containers"][0]["resources"].pop("limits")
    problems = " | ".join(k8s_problems("reports", broken, _image_uid()))
    for expected in ("runAsNonRoot", "readinessProbe", "no cpu and memory limits"):
        assert expected in problems


# --- the health probe ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("kizuna_healthcheck", HEALTHCHECK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _proc(tmp_path: Path, *commands: list[str]) -> Path:
    """A fake /proc whose pids 1, 2, ... run the given command lines."""
    for pid, argv in enumerate(commands, 1):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "self").mkdir()
    return tmp_path


def test_probe_ports_match_settings(probe):
    assert probe.DEFAULT_PORTS == PORTS


@pytest.mark.parametrize(
    ("commands", "arg", "environ", "url"),
    [
        (
            [[sys.executable, "/opt/venv/bin/kizuna", "serve", "reports"]],
            None,
            {},
            "http://127.0.0.1:8002/readyz",
        ),
        ([["kizuna", "serve", "classifier"]], "/healthz", {}, "http://127.0.0.1:8004/healthz"),
        (
            [["kizuna", "serve", "ingest"]],
            None,
            {"KIZUNA_INGEST_PORT": "9001"},
            "http://127.0.0.1:9001/readyz",
        ),
        (
            [["/sbin/docker-init", "--", "sh", "/entry.sh"], ["kizuna", "serve", "notifier"]],
            None,
            {},
            "http://127.0.0.1:8003/readyz",
        ),
        ([["kizuna", "migrate"]], None, {}, None),
        ([["kizuna", "migrate"]], "http://ingest:8001/readyz", {}, "http://ingest:8001/readyz"),
    ],
    ids=["from-cmdline", "path", "port-from-env", "under-init", "one-shot", "url"],
)
def test_probe_finds_the_service_url(probe, tmp_path, commands, arg, environ, url):
    assert probe.target_url(arg, environ=environ, proc=_proc(tmp_path, *commands)) == url


def test_probe_reports_a_dead_service(probe):
    assert probe.main(["kizuna-healthcheck", "http://127.0.0.1:9/readyz"]) == 1

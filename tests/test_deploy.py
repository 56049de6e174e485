"""deploy/ stays true to the code: the image, the compose file and the Kubernetes manifests run
commands the CLI takes, set only the environment the settings read, and probe real endpoints.

`deploy_problems(root)` reads a deploy folder (the Dockerfile, compose.yaml, and the manifests
`kubectl kustomize` renders, or a Python reading of the kustomizations where kubectl is absent)
and lists what is wrong, each problem naming its place:

- every container's command is a `bandit-router` subcommand with flags (and values)
  `bandit_router.cli.build_parser()` accepts, and a `serve` beyond loopback has an admin key;
- every `BANDIT_ROUTER_*` variable a container gets (its own, or from a Secret or ConfigMap it
  loads whole) is one `bandit_router.settings.Settings` reads;
- every probe (HEALTHCHECK, Kubernetes' probes) asks an open GET endpoint of the app on the port
  `serve` listens on, and every scrape (Prometheus, the ServiceMonitor) a GET endpoint;
- the topology is the one the scale-out tests run: a migration that the others wait on, `serve
  --learner none` replicas, learners, PostgreSQL, and the configuration file they read loads.

The same checks run on broken copies and small bad inputs, so the test is seen to fail.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bandit_router import policies
from bandit_router.api_auth import ROLE_KEY
from bandit_router.cli import bind_refusal, build_parser
from bandit_router.main import create_app
from bandit_router.migrations import upgrade
from bandit_router.settings import ConfigError, Settings, config_from_mapping
from tests.support import REPO
from tests.test_docs import _problems_of

DEPLOY = REPO / "deploy"
IMAGE = "bandit-router"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
URL_PATH = re.compile(r"https?://[^/\s'\"]+(/[^\s'\"]*)")


def settings_variables() -> set[str]:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


@dataclass(frozen=True)
class Endpoints:
    """The app's GET endpoints, and which of them are open (need no key)."""

    get: frozenset[str]
    open: frozenset[str]


def app_endpoints(tmp_path: Path) -> Endpoints:
    """From the app's own OpenAPI description, each operation with the role it declares; the
    app is built as `serve` builds it (nothing touches the database before it starts)."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'endpoints.db'}"))
    operations = [
        (path, operation)
        for path, methods in app.openapi()["paths"].items()
        for method, operation in methods.items()
        if method == "get"
    ]
    return Endpoints(
        frozenset(path for path, _ in operations),
        frozenset(path for path, operation in operations if operation.get(ROLE_KEY) == "open"),
    )


# --- the checks, each on plain values ---


def command_problems(arguments: Sequence[str], where: str) -> list[str]:
    """The CLI's subcommands and flags (read as tests/test_docs.py reads the docs), then the
    parser itself, which also checks the values (choices, numbers)."""
    problems = [f"{where}: {p}" for p in _problems_of(list(arguments), build_parser())]
    if problems:
        return problems
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            build_parser().parse_args(list(arguments))
    except SystemExit:
        message = errors.getvalue().strip().splitlines()[-1:] or ["rejected"]
        return [f"{where}: bandit-router {' '.join(arguments)}: {message[0]}"]
    return []


def environment_problems(names: Iterator[str] | Sequence[str], where: str) -> list[str]:
    known = settings_variables()
    return [
        f"{where}: {name} is not a setting (the settings read {', '.join(sorted(known))})"
        for name in names
        if name.startswith("BANDIT_ROUTER_") and name not in known
    ]


def probe_problems(path: str, where: str, endpoints: Endpoints, *, open_only: bool) -> list[str]:
    path = path.split("?", 1)[0]
    if path not in endpoints.get:
        return [f"{where}: {path} is not a GET endpoint of the app"]
    if open_only and path not in endpoints.open:
        return [f"{where}: {path} needs a key, which a probe does not send"]
    return []


def option(arguments: Sequence[str], flag: str) -> str | None:
    """The value a command gives a flag (`--flag value` or `--flag=value`), else None."""
    for i, word in enumerate(arguments):
        if word == flag and i + 1 < len(arguments):
            return arguments[i + 1]
        if word.startswith(f"{flag}="):
            return word.split("=", 1)[1]
    return None


def serve_port(arguments: Sequence[str]) -> int:
    port = option(arguments, "--port")
    default = build_parser().parse_args(["serve"]).port
    return int(port) if port is not None else int(default)


def bind_problems(
    arguments: Sequence[str], environment: Mapping[str, str], where: str
) -> list[str]:
    """`serve` beyond loopback starts only with an admin key (or --insecure)."""
    if list(arguments[:1]) != ["serve"]:
        return []
    host = option(arguments, "--host") or "127.0.0.1"
    keys = [
        environment.get(name, "") for name in ("BANDIT_ROUTER_ADMIN_KEYS", "BANDIT_ROUTER_API_KEYS")
    ]
    refusal = bind_refusal(host, has_admin_key=any(keys), insecure="--insecure" in arguments)
    return [f"{where}: {refusal}"] if refusal else []


# --- the Dockerfile ---


@dataclass
class Dockerfile:
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    healthcheck: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    user: str = ""
    final_runs: list[str] = field(default_factory=list)
    stages: int = 0


def read_dockerfile(text: str) -> Dockerfile:
    """The final stage's instructions (continued lines joined, comments dropped)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    image = Dockerfile()
    for instruction in "\n".join(lines).replace("\\\n", " ").splitlines():
        keyword, _, rest = instruction.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            image = Dockerfile(stages=image.stages + 1)
        elif keyword == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        elif keyword == "CMD":
            image.cmd = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            image.healthcheck = rest
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                image.environment[name] = value
        elif keyword == "USER":
            image.user = rest
        elif keyword == "RUN":
            image.final_runs.append(" ".join(rest.split()))
    return image


def dockerfile_problems(text: str, endpoints: Endpoints) -> list[str]:
    where = "Dockerfile"
    image = read_dockerfile(text)
    problems: list[str] = []
    if image.stages < 2:
        problems.append(f"{where}: not a multi-stage build")
    if image.entrypoint != ["bandit-router"]:
        problems.append(f"{where}: ENTRYPOINT is {image.entrypoint}, not the bandit-router script")
    if image.user.split(":")[0] in {"", "0", "root"}:
        problems.append(f"{where}: the final stage runs as root")
    for run in image.final_runs:
        if re.search(r"\b(apt-get|apk|pip)\b.*\binstall\b|\b(gcc|build-essential)\b", run):
            problems.append(f"{where}: the final stage installs packages: {run}")
    problems += environment_problems(list(image.environment), f"{where} ENV")
    cmd = image.cmd or []
    # (No key is baked in: `serve` beyond loopback gets one where the image runs.)
    problems += command_problems(cmd, f"{where} CMD")
    if "CMD" not in image.healthcheck:
        problems.append(f"{where}: no HEALTHCHECK")
    for url in re.findall(r"https?://\S+?(?=['\"\s])", image.healthcheck):
        port = re.search(r"://[^/:]+:(\d+)", url)
        if port is None or (cmd[:1] == ["serve"] and int(port.group(1)) != serve_port(cmd)):
            problems.append(f"{where} HEALTHCHECK: {url} is not the port serve listens on")
        for path in URL_PATH.findall(url):
            problems += probe_problems(path, f"{where} HEALTHCHECK", endpoints, open_only=True)
    return problems


# --- compose.yaml ---


def _compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(str(item).partition("=")[::2] for item in environment)
    return {str(name): str(value) for name, value in environment.items()}


def _arguments(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(word) for word in value]


def compose_problems(text: str, image: Dockerfile, endpoints: Endpoints, root: Path) -> list[str]:
    compose = yaml.safe_load(text)
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    problems: list[str] = []
    ours = {
        name: service
        for name, service in services.items()
        if (service.get("build") or {}).get("dockerfile") == "deploy/Dockerfile"
    }
    commands: dict[str, list[str]] = {}
    for name, service in ours.items():
        where = f"compose.yaml {name}"
        entrypoint = service.get("entrypoint")
        if entrypoint is not None and _arguments(entrypoint) != ["bandit-router"]:
            problems.append(f"{where}: entrypoint {entrypoint} is not bandit-router")
        arguments = _arguments(service.get("command", image.cmd or []))
        commands[name] = arguments
        environment = {**image.environment, **_compose_environment(service)}
        problems += command_problems(arguments, where)
        problems += environment_problems(list(_compose_environment(service)), where)
        problems += bind_problems(arguments, environment, where)
        healthcheck = service.get("healthcheck") or {}
        if arguments[:1] != ["serve"] and not healthcheck.get("disable"):
            problems.append(f"{where}: the image's HEALTHCHECK polls HTTP, which {name} lacks")
        for word in _arguments(healthcheck.get("test") or []):
            for path in URL_PATH.findall(word):
                problems += probe_problems(path, f"{where} healthcheck", endpoints, open_only=True)
        for config in service.get("configs") or []:
            source = (compose.get("configs") or {}).get(config["source"], {}).get("file")
            if source is None or not (root / source).is_file():
                problems.append(f"{where}: config {config['source']} names no file")
            elif config.get("target") == option(arguments, "--config"):
                problems += config_problems((root / source).read_text(), f"{where} --config")
        dependencies = service.get("depends_on") or {}
        if (
            name != "migrate"
            and (dependencies.get("migrate") or {}).get("condition")
            != "service_completed_successfully"
        ):
            problems.append(f"{where}: does not wait for the migrate service to succeed")
    problems += _topology_problems(
        "compose.yaml",
        commands,
        {n: s.get("deploy", {}).get("replicas", 1) for n, s in ours.items()},
    )
    for name, service in services.items():
        if name not in ours and str(service.get("image", "")).startswith("postgres:"):
            if not str(service["image"]).startswith("postgres:16"):
                problems.append(f"compose.yaml {name}: PostgreSQL {service['image']}, not 16")
            if not service.get("healthcheck"):
                problems.append(f"compose.yaml {name}: PostgreSQL without a health check")
    problems += _prometheus_problems(compose, root, commands, endpoints)
    return problems


def _prometheus_problems(
    compose: Mapping[str, Any], root: Path, commands: Mapping[str, list[str]], endpoints: Endpoints
) -> list[str]:
    problems: list[str] = []
    for config in (compose.get("configs") or {}).values():
        path = root / config.get("file", "")
        if path.name != "prometheus.yml":
            continue
        for job in yaml.safe_load(path.read_text()).get("scrape_configs", []):
            where = f"{path.name} {job.get('job_name')}"
            problems += probe_problems(
                job.get("metrics_path", "/metrics"), where, endpoints, open_only=False
            )
            if "authorization" not in job:
                problems.append(f"{where}: /metrics needs a metrics key; no authorization")
            for sd in job.get("dns_sd_configs", []):
                for name in sd.get("names", []):
                    if commands.get(name, [])[:1] != ["serve"]:
                        problems.append(f"{where}: {name} is not a serve service")
                    elif int(sd.get("port", 0)) != serve_port(commands[name]):
                        problems.append(f"{where}: port {sd.get('port')} is not {name}'s")
    return problems


def config_problems(text: str, where: str) -> list[str]:
    """The configuration file loads as `serve` loads it, its policies built."""
    try:
        config = config_from_mapping(tomllib.loads(text), source=where)
        for spec in (config.policy, *config.extra_policies):
            policies.build(spec)
    except (ConfigError, tomllib.TOMLDecodeError, ValueError) as error:
        return [f"{where}: {error}"]
    return []


def _topology_problems(
    where: str, commands: Mapping[str, list[str]], replicas: Mapping[str, int]
) -> list[str]:
    """The scale-out tests' topology: a migration, `serve --learner none` replicas, a learner."""
    problems = []
    if not any(arguments[:2] == ["db", "upgrade"] for arguments in commands.values()):
        problems.append(f"{where}: nothing runs bandit-router db upgrade")
    serving = [name for name, arguments in commands.items() if arguments[:1] == ["serve"]]
    if not serving:
        problems.append(f"{where}: nothing runs bandit-router serve")
    for name in serving:
        if option(commands[name], "--learner") != "none":
            problems.append(f"{where} {name}: serve without --learner none beside a learner")
        if replicas.get(name, 1) < 2:
            problems.append(f"{where} {name}: fewer than 2 serve replicas")
    if not any(arguments[:1] == ["learner"] for arguments in commands.values()):
        problems.append(f"{where}: nothing runs bandit-router learner")
    return problems


# --- Kubernetes ---

Manifest = dict[str, Any]


def render_with_kubectl(folder: Path) -> list[Manifest]:
    # Never skipped: `make test` installs kubectl where it is missing (the Makefile's tools).
    assert KUBECTL is not None, (
        "kubectl is not on PATH; `make test` installs it (kubernetes-client)"
    )
    finished = subprocess.run(
        ["kubectl", "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if finished.returncode != 0:
        raise AssertionError(f"kubectl kustomize {folder} failed: {finished.stderr}")
    return [doc for doc in yaml.safe_load_all(finished.stdout) if doc]


def render_in_python(folder: Path) -> list[Manifest]:
    """What the kustomizations used here do, read without kubectl: resources (files and
    folders), configMapGenerator (files, no name hash) and images."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    manifests: list[Manifest] = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        if path.is_dir():
            manifests += render_in_python(path)
        else:
            manifests += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(name).name: (folder / name).read_text() for name in generator["files"]}
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    for image in kustomization.get("images", []):
        for container in (c for m in manifests for c in _containers(m)):
            if container.get("image") == image["name"]:
                container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return manifests


def _pod_spec(manifest: Manifest) -> dict[str, Any]:
    if manifest.get("kind") not in WORKLOADS:
        return {}
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def _containers(manifest: Manifest) -> list[dict[str, Any]]:
    spec = _pod_spec(manifest)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _by_kind(manifests: Sequence[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m.get("kind") == kind}


def _values(resource: Manifest) -> dict[str, str]:
    return {**(resource.get("data") or {}), **(resource.get("stringData") or {})}


def kubernetes_problems(manifests: Sequence[Manifest], endpoints: Endpoints) -> list[str]:
    problems: list[str] = []
    secrets, config_maps = _by_kind(manifests, "Secret"), _by_kind(manifests, "ConfigMap")
    commands: dict[str, list[str]] = {}
    replicas: dict[str, int] = {}
    for manifest in manifests:
        spec = _pod_spec(manifest)
        for container in _containers(manifest):
            where = f"{manifest['kind']}/{manifest['metadata']['name']} {container['name']}"
            if not str(container.get("image", "")).split(":")[0].endswith(IMAGE):
                continue
            if container.get("command") not in (None, ["bandit-router"]):
                problems.append(f"{where}: command {container['command']} is not bandit-router")
            arguments = [str(word) for word in container.get("args", [])]
            commands[where] = arguments
            replicas[where] = int(manifest["spec"].get("replicas", 1))
            problems += command_problems(arguments, where)
            environment = {
                item["name"]: str(item.get("value", "")) for item in container.get("env", [])
            }
            for source in container.get("envFrom", []):
                for kind, found in (("secretRef", secrets), ("configMapRef", config_maps)):
                    if kind not in source:
                        continue
                    name = source[kind]["name"]
                    if name not in found:
                        problems.append(f"{where}: envFrom {kind} {name} is not in the manifests")
                    environment.update(_values(found.get(name, {})))
            problems += environment_problems(list(environment), where)
            problems += bind_problems(arguments, environment, where)
            problems += _mount_problems(where, arguments, container, spec, config_maps)
            ports = {port.get("name"): port["containerPort"] for port in container.get("ports", [])}
            for probe_name in PROBES:
                probe = container.get(probe_name)
                if probe is None:
                    if arguments[:1] == ["serve"]:
                        problems.append(f"{where}: no {probe_name}")
                    continue
                http = probe.get("httpGet")
                if http is None:
                    problems.append(f"{where} {probe_name}: not an HTTP probe")
                    continue
                problems += probe_problems(
                    http["path"], f"{where} {probe_name}", endpoints, open_only=True
                )
                port = ports.get(http["port"], http["port"])
                if arguments[:1] == ["serve"] and port != serve_port(arguments):
                    problems.append(f"{where} {probe_name}: port {http['port']} is not serve's")
            if arguments[:1] == ["serve"]:
                problems += _shutdown_problems(where, arguments, container, spec)
    problems += _topology_problems("k8s", commands, replicas)
    problems += _monitor_problems(manifests, endpoints, secrets)
    kinds = {m.get("kind") for m in manifests}
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Job"):
        if kind not in kinds:
            problems.append(f"k8s: no {kind}")
    return problems


def _mount_problems(
    where: str,
    arguments: Sequence[str],
    container: Mapping[str, Any],
    spec: Mapping[str, Any],
    config_maps: Mapping[str, Manifest],
) -> list[str]:
    """--config names a file of a mounted ConfigMap, and that file loads."""
    path = option(arguments, "--config")
    if path is None:
        return []
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        folder = mount["mountPath"].rstrip("/")
        if not path.startswith(f"{folder}/"):
            continue
        name = (volumes.get(mount["name"]) or {}).get("configMap", {}).get("name")
        text = _values(config_maps.get(name, {})).get(path[len(folder) + 1 :])
        if text is None:
            return [f"{where}: --config {path} is in no mounted ConfigMap"]
        return config_problems(text, f"{where} --config")
    return [f"{where}: --config {path} is not mounted"]


def _shutdown_problems(
    where: str, arguments: Sequence[str], container: Mapping[str, Any], spec: Mapping[str, Any]
) -> list[str]:
    """The pod's grace covers the preStop pause and serve's own graceful timeout."""
    graceful = float(
        option(arguments, "--graceful-timeout")
        or build_parser().parse_args(["serve"]).graceful_timeout
    )
    pause = 0.0
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if command[:1] == ["sleep"]:
        pause = float(command[1])
    grace = float(spec.get("terminationGracePeriodSeconds", 30))
    if grace <= pause + graceful:
        return [
            f"{where}: terminationGracePeriodSeconds {grace:g} ≤ preStop {pause:g} s + "
            f"--graceful-timeout {graceful:g} s"
        ]
    return []


def _monitor_problems(
    manifests: Sequence[Manifest], endpoints: Endpoints, secrets: Mapping[str, Manifest]
) -> list[str]:
    problems: list[str] = []
    services = _by_kind(manifests, "Service")
    for name, monitor in _by_kind(manifests, "ServiceMonitor").items():
        selector = monitor["spec"]["selector"]["matchLabels"]
        ports = {
            port.get("name")
            for service in services.values()
            if selector.items() <= service["metadata"].get("labels", {}).items()
            for port in service["spec"]["ports"]
        }
        for endpoint in monitor["spec"]["endpoints"]:
            where = f"ServiceMonitor/{name}"
            problems += probe_problems(
                endpoint.get("path", "/metrics"), where, endpoints, open_only=False
            )
            if endpoint.get("port") not in ports:
                problems.append(f"{where}: port {endpoint.get('port')} is not a selected Service's")
            credentials = endpoint.get("authorization", {}).get("credentials", {})
            if credentials.get("key") != "BANDIT_ROUTER_METRICS_KEYS" or credentials.get(
                "key"
            ) not in _values(secrets.get(credentials.get("name", ""), {})):
                problems.append(f"{where}: its bearer token is not the Secret's metrics key")
    return problems


# --- the whole folder ---


def deploy_problems(root: Path, endpoints: Endpoints, manifests: Sequence[Manifest]) -> list[str]:
    dockerfile = (root / "Dockerfile").read_text()
    image = read_dockerfile(dockerfile)
    return [
        *dockerfile_problems(dockerfile, endpoints),
        *compose_problems((root / "compose.yaml").read_text(), image, endpoints, root),
        *kubernetes_problems(manifests, endpoints),
    ]


# --- the tests ---


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Endpoints:
    return app_endpoints(tmp_path_factory.mktemp("app"))


KUBECTL = shutil.which("kubectl")
RENDERERS = [
    pytest.param(render_with_kubectl, id="kubectl"),
    pytest.param(render_in_python, id="python"),
]


def _without_hash(manifests: Sequence[Manifest]) -> list[tuple[str, str]]:
    """(kind, name), a generated ConfigMap's name without the hash kustomize appends."""
    return sorted(
        (m["kind"], re.sub(r"-[a-z0-9]{10}$", "", m["metadata"]["name"]))
        if m["kind"] == "ConfigMap"
        else (m["kind"], m["metadata"]["name"])
        for m in manifests
    )


def test_kubectl_renders_the_base_and_the_overlay_as_the_python_reading_does() -> None:
    base = render_with_kubectl(DEPLOY / "k8s")
    overlay = render_with_kubectl(DEPLOY / "k8s" / "overlays" / "monitoring")
    assert _without_hash(base) == _without_hash(render_in_python(DEPLOY / "k8s"))
    assert _without_hash(overlay) == sorted(
        [*_without_hash(base), ("ServiceMonitor", "bandit-router-api")]
    )
    assert {kind for kind, _ in _without_hash(base)} == {
        "ConfigMap", "Secret", "Job", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }  # fmt: skip


@pytest.mark.parametrize("render", RENDERERS)
def test_deploy_is_true_to_the_code(render: Any, endpoints: Endpoints) -> None:
    manifests = render(DEPLOY / "k8s" / "overlays" / "monitoring")
    assert deploy_problems(DEPLOY, endpoints, manifests) == []


def _break(root: Path, path: str, old: str, new: str) -> None:
    target = root / path
    text = target.read_text()
    assert old in text, (path, old)
    target.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("render", RENDERERS)
def test_a_broken_copy_is_reported(render: Any, endpoints: Endpoints, tmp_path: Path) -> None:
    root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, root)
    _break(root, "k8s/base/api-deployment.yaml", "- --no-access-log", "- --no-such-flag")
    _break(root, "k8s/base/api-deployment.yaml", "path: /healthz", "path: /ready")
    _break(
        root, "k8s/base/learner-deployment.yaml", '"learner",', '"learner", "--learner", "none",'
    )
    _break(root, "k8s/base/secret.yaml", "BANDIT_ROUTER_CLIENT_KEYS", "BANDIT_ROUTER_CLIENTS_KEYS")
    _break(root, "compose.yaml", "BANDIT_ROUTER_METRICS_KEYS: $", "BANDIT_ROUTER_METRIC_KEYS: $")
    _break(root, "compose.yaml", '      - "20"', '      - "soon"')
    _break(root, "Dockerfile", "8000/healthz", "8000/metrics")
    _break(root, "k8s/base/router.toml", 'policy = "linucb"', 'policy = "linucbb"')
    problems = deploy_problems(root, endpoints, render(root / "k8s" / "overlays" / "monitoring"))
    expected = [
        "Dockerfile HEALTHCHECK: /metrics needs a key, which a probe does not send",
        "compose.yaml api: BANDIT_ROUTER_METRIC_KEYS is not a setting",
        "compose.yaml api: bandit-router serve --learner none --host 0.0.0.0 --port 8000 "
        "--config /etc/bandit-router/router.toml --graceful-timeout soon --no-access-log: "
        "bandit-router serve: error: argument --graceful-timeout: invalid _non_negative "
        "value: 'soon'",
        "compose.yaml api --config: ",
        "compose.yaml learner --config: ",
        "Deployment/bandit-router-api api: bandit-router serve: no flag --no-such-flag",
        "Deployment/bandit-router-api api: BANDIT_ROUTER_CLIENTS_KEYS is not a setting",
        "Deployment/bandit-router-api api startupProbe: /ready is not a GET endpoint of the app",
        "Deployment/bandit-router-api api --config: ",
        "Deployment/bandit-router-learner learner: bandit-router learner: no flag --learner",
        "Deployment/bandit-router-learner learner: BANDIT_ROUTER_CLIENTS_KEYS is not a setting",
        "Deployment/bandit-router-learner learner --config: ",
        "Job/bandit-router-migrate migrate: BANDIT_ROUTER_CLIENTS_KEYS is not a setting",
    ]
    unexplained = [p for p in problems if not any(p.startswith(e) for e in expected)]
    unmatched = [e for e in expected if not any(p.startswith(e) for p in problems)]
    assert (unexplained, unmatched) == ([], [])
    assert all("linucbb" in p for p in problems if "--config: " in p)


def test_commands_are_checked_against_the_parser() -> None:
    assert command_problems(["serve", "--learner", "none", "--port", "8000"], "x") == []
    assert command_problems(["db", "upgrade"], "x") == []
    assert command_problems(["serve", "--porrt", "1"], "x") == [
        "x: bandit-router serve: no flag --porrt"
    ]
    assert command_problems(["db"], "x") == ["x: bandit-router db: a subcommand is missing"]
    assert command_problems(["serv"], "x") == ["x: bandit-router: no subcommand serv"]
    [choice] = command_problems(["serve", "--learner", "sometimes"], "x")
    assert "invalid choice: 'sometimes'" in choice


def test_only_the_settings_variables_pass() -> None:
    assert settings_variables() >= {
        "BANDIT_ROUTER_DATABASE_URL", "BANDIT_ROUTER_CONFIG", "BANDIT_ROUTER_ADMIN_KEYS",
        "BANDIT_ROUTER_CLIENT_KEYS", "BANDIT_ROUTER_METRICS_KEYS",
    }  # fmt: skip
    [problem] = environment_problems(
        ["BANDIT_ROUTER_DATABASE_URL", "BANDIT_ROUTER_DB", "PATH"], "x"
    )
    assert problem.startswith("x: BANDIT_ROUTER_DB is not a setting")


def test_probes_ask_open_endpoints_of_the_app(endpoints: Endpoints) -> None:
    assert {"/healthz", "/metrics"} <= endpoints.get
    assert probe_problems("/healthz", "x", endpoints, open_only=True) == []
    assert probe_problems("/metrics", "x", endpoints, open_only=False) == []
    assert probe_problems("/ready", "x", endpoints, open_only=True) == [
        "x: /ready is not a GET endpoint of the app"
    ]
    assert probe_problems("/metrics", "x", endpoints, open_only=True) == [
        "x: /metrics needs a key, which a probe does not send"
    ]


def test_serve_beyond_loopback_needs_an_admin_key() -> None:
    wide = ["serve", "--host", "0.0.0.0"]
    assert bind_problems(wide, {"BANDIT_ROUTER_ADMIN_KEYS": "k"}, "x") == []
    assert bind_problems([*wide, "--insecure"], {}, "x") == []
    assert bind_problems(["serve"], {}, "x") == []
    [refused] = bind_problems(wide, {"BANDIT_ROUTER_ADMIN_KEYS": ""}, "x")
    assert "refusing to serve on 0.0.0.0 without an admin key" in refused


def test_a_bad_dockerfile_is_reported(endpoints: Endpoints) -> None:
    text = """
FROM python:3.11-slim
# a comment
RUN apt-get update && \\
    apt-get install -y gcc
ENV BANDIT_ROUTER_DATABASE=x PYTHONUNBUFFERED=1
ENTRYPOINT ["python", "-m", "bandit_router.cli"]
CMD ["serve", "--host", "0.0.0.0", "--port", "9000"]
HEALTHCHECK CMD ["curl", "-f", "http://127.0.0.1:8000/health"]
"""
    assert dockerfile_problems(text, endpoints) == [
        "Dockerfile: not a multi-stage build",
        "Dockerfile: ENTRYPOINT is ['python', '-m', 'bandit_router.cli'], not the bandit-router "
        "script",
        "Dockerfile: the final stage runs as root",
        "Dockerfile: the final stage installs packages: apt-get update && apt-get install -y gcc",
        "Dockerfile ENV: BANDIT_ROUTER_DATABASE is not a setting (the settings read "
        + ", ".join(sorted(settings_variables()))
        + ")",
        "Dockerfile HEALTHCHECK: http://127.0.0.1:8000/health is not the port serve listens on",
        "Dockerfile HEALTHCHECK: /health is not a GET endpoint of the app",
    ]


def test_concurrent_migrations_on_one_postgres_database_take_turns(postgres_url: str) -> None:
    """The migration Job, the api pods and the learners may all start at once on a new
    database: each applies the migrations or finds them applied; none fails."""
    program = Path(sys.executable).with_name("bandit-router")
    starts = [
        subprocess.Popen(
            [str(program), "db", "upgrade", "--database-url", postgres_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [start.communicate(timeout=120)[0] for start in starts]
    assert [start.returncode for start in starts] == [0, 0, 0], outputs
    upgrade(postgres_url)  # and the head is where they left it

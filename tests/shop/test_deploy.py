"""The shop's Dockerfile and Kubernetes manifests agree with nativekit's code and drain timing."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from functools import cache
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest
import yaml

from nativekit._health import PROBE_PATHS
from nativekit.settings import ENV_PREFIX, Settings, variables

DEPLOY = Path(__file__).parents[2] / "examples" / "shop" / "deploy"
K8S = DEPLOY / "k8s"
SERVICES = {
    "orders": "examples.shop.orders:app",
    "payments": "examples.shop.payments:app",
    "inventory": "examples.shop.inventory:app",
}
PORT = 8000
PROBES = {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
# Seconds the pod keeps after the drain and the request grace: components stop then
# (consumers commit, producers flush, connections close) before kubelet's SIGKILL.
STOP_MARGIN = 10
BUILD_TOOLS = {"build-essential", "gcc", "g++", "cc", "clang", "make", "cmake", "python3-dev"}

Manifest = dict[str, Any]


# -- Dockerfile --------------------------------------------------------------------


@cache
def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), one list per stage.

    Instructions before the first FROM (global ARGs) form stage 0.
    """
    lines = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines()
    logical: list[str] = []
    pending = ""
    for line in lines:
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for entry in logical:
        keyword, _, rest = entry.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for kw, rest in stage if kw == keyword]


def assignments(stage: list[tuple[str, str]], keyword: str) -> dict[str, str]:
    """NAME=value pairs of the stage's ARG or ENV instructions."""
    pairs: dict[str, str] = {}
    for rest in instructions(stage, keyword):
        for word in shlex.split(rest):
            name, _, value = word.partition("=")
            pairs[name] = value
    return pairs


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: variables[m[1]], text)


def final_stage_user() -> str:
    users = instructions(dockerfile_stages()[-1], "USER")
    assert len(users) == 1
    return users[0]


def test_dockerfile_builds_in_a_builder_stage_and_runs_on_slim_python() -> None:
    """A builder stage with build tools makes the venv; the final stage is python:3.11-slim."""
    global_args, *stages = dockerfile_stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    image = assignments(global_args, "ARG")
    assert expand(instructions(builder, "FROM")[0], image).split() == [
        "python:3.11-slim",
        "AS",
        "builder",
    ]
    assert expand(instructions(final, "FROM")[0], image).split()[0] == "python:3.11-slim"
    assert "build-essential" in " ".join(instructions(builder, "RUN"))
    assert "/opt/venv" in " ".join(instructions(builder, "RUN"))


def test_final_stage_has_no_build_tools() -> None:
    """Nothing in the final stage names a compiler; it only copies the venv and app from builder."""
    final = dockerfile_stages()[-1]
    words = {w for _, rest in final for w in re.split(r"[\s;&|\"',\[\]]+", rest)}
    assert not words & BUILD_TOOLS
    copies = instructions(final, "COPY")
    assert copies and all(c.startswith("--from=builder ") for c in copies)


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    """USER is a numeric uid:gid other than root, so Kubernetes can check runAsNonRoot."""
    uid, _, gid = final_stage_user().partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) > 0 and int(gid) > 0


def test_image_runs_uvicorn_for_the_selected_service() -> None:
    """CMD execs uvicorn on 0.0.0.0:8000 without its access log; SERVICE picks the module."""
    final = dockerfile_stages()[-1]
    (cmd,) = instructions(final, "CMD")
    assert json.loads(cmd) == [
        "uvicorn",
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--no-access-log",
    ]
    assert instructions(final, "ENTRYPOINT") == []
    assert instructions(final, "EXPOSE") == [str(PORT)]
    app = expand(assignments(final, "ENV")["UVICORN_APP"], assignments(final, "ARG"))
    assert app in SERVICES.values()
    assert "/livez" in instructions(final, "HEALTHCHECK")[0]


def test_dockerignore_sends_what_the_copies_need() -> None:
    """The build context is an allow-list that still holds every COPY source."""
    patterns = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = {
        word.rstrip("/")
        for stage in dockerfile_stages()
        for rest in instructions(stage, "COPY")
        if not rest.startswith("--from=")
        for word in rest.split()[:-1]
    }
    assert sources and sources <= allowed


# -- manifests ---------------------------------------------------------------------


@cache
def manifests() -> dict[tuple[str, str], Manifest]:
    """Every resource in k8s/*.yaml, keyed by (kind, name)."""
    found: dict[tuple[str, str], Manifest] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            found[key] = doc
    return found


def get(kind: str, name: str) -> Manifest:
    return manifests()[(kind, name)]


def pod_spec(service: str) -> Manifest:
    spec: Manifest = get("Deployment", service)["spec"]["template"]["spec"]
    return spec


def container(service: str) -> Manifest:
    containers = pod_spec(service)["containers"]
    assert [c["name"] for c in containers] == [service]
    first: Manifest = containers[0]
    return first


def config_map_data() -> dict[str, str]:
    data: dict[str, str] = get("ConfigMap", "shop-config")["data"]
    return data


def env_of(service: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env."""
    env: dict[str, str] = {}
    for source in container(service).get("envFrom", []):
        env.update(get("ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container(service).get("env", []):
        env[entry["name"]] = entry.get("value", "")
    return env


def all_env_names() -> Iterator[str]:
    yield from config_map_data()
    for service in SERVICES:
        yield from (entry["name"] for entry in container(service).get("env", []))


def container_port(service: str, port: int | str) -> int:
    """Resolve a numeric or named port against the service's container."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container(service)["ports"]}
    return int(by_name[port])


def quantity(value: str | int) -> float:
    """A Kubernetes quantity ("250m", "1", "384Mi") as a number."""
    text = str(value)
    units = {
        "": 1.0,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
    }
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match, f"not a quantity: {text!r}"
    return float(match[1]) * units[match[2]]


def setting(service: str, path: str) -> float:
    """A numeric setting as the service will see it (its env, else the Settings default)."""
    variable = next(name for name, where in variables().items() if where == path)
    raw = env_of(service).get(variable)
    default = attrgetter(path)(Settings(_env_file=None))
    return float(raw if raw is not None else default)


def pre_stop_seconds(service: str) -> float:
    """Seconds a preStop hook sleeps (0 without one)."""
    hook = container(service).get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    words = " ".join(hook["exec"]["command"]).split()
    assert "sleep" in words, f"preStop of {service} does something else: {hook}"
    return float(words[words.index("sleep") + 1])


def test_kustomization_lists_every_manifest() -> None:
    """kustomization.yaml applies exactly the manifest files in k8s/."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_four_resources(service: str) -> None:
    """Each service has a Deployment, a Service, an autoscaling/v2 HPA and a policy/v1 PDB."""
    assert get("Deployment", service)["apiVersion"] == "apps/v1"
    assert get("Service", service)["apiVersion"] == "v1"
    assert get("HorizontalPodAutoscaler", service)["apiVersion"] == "autoscaling/v2"
    assert get("PodDisruptionBudget", service)["apiVersion"] == "policy/v1"


@pytest.mark.parametrize("service", SERVICES)
def test_probes_hit_nativekit_paths_on_the_serving_port(service: str) -> None:
    """Startup, readiness and liveness probes GET nativekit's probe paths on port 8000."""
    spec = container(service)
    assert {spec[probe]["httpGet"]["path"] for probe in PROBES} == PROBE_PATHS
    for probe, path in PROBES.items():
        assert spec[probe]["httpGet"]["path"] == path
        assert container_port(service, spec[probe]["httpGet"]["port"]) == PORT


@pytest.mark.parametrize("service", SERVICES)
def test_service_routes_to_the_container_port(service: str) -> None:
    """The Service selects this Deployment's pods and targets the port uvicorn listens on."""
    svc = get("Service", service)["spec"]
    labels = get("Deployment", service)["spec"]["template"]["metadata"]["labels"]
    assert [p["containerPort"] for p in container(service)["ports"]] == [PORT]
    assert svc["selector"].items() <= labels.items()
    assert [container_port(service, p["targetPort"]) for p in svc["ports"]] == [PORT]


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_serves_its_own_module(service: str) -> None:
    """UVICORN_APP names the service's module from the shop contract, and traces carry its name."""
    env = env_of(service)
    assert env["UVICORN_APP"] == SERVICES[service]
    assert env["OTEL_SERVICE_NAME"] == service


def test_nativekit_variables_are_settings_fields() -> None:
    """Every NATIVEKIT_* name in the ConfigMap and the Deployments is a Settings variable."""
    names = {n for n in all_env_names() if n.startswith(ENV_PREFIX)}
    unknown = names - set(variables())
    assert names and not unknown


@pytest.mark.parametrize("service", SERVICES)
def test_configured_values_are_valid_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The NATIVEKIT_* values a pod gets pass Settings validation (secret files aside)."""
    for name, value in env_of(service).items():
        if name.startswith(ENV_PREFIX) and not name.endswith("_FILE"):
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.redis.url.startswith("redis") and settings.kafka.url.startswith("kafka://")
    assert settings.telemetry.log_format == "json" and settings.environment == "production"


@pytest.mark.parametrize("service", SERVICES)
def test_redis_password_is_a_mounted_secret_file(service: str) -> None:
    """NATIVEKIT_REDIS_PASSWORD_FILE points into a Secret volume; no password sits in plain env."""
    path = Path(env_of(service)["NATIVEKIT_REDIS_PASSWORD_FILE"])
    mounts = {m["mountPath"]: m for m in container(service)["volumeMounts"]}
    mount = mounts[str(path.parent)]
    volume = next(v for v in pod_spec(service)["volumes"] if v["name"] == mount["name"])
    assert mount.get("readOnly") is True
    assert path.name in {item["path"] for item in volume["secret"]["items"]}
    plain = [n for n in env_of(service) if "PASSWORD" in n and not n.endswith("_FILE")]
    assert plain == []


def test_operator_api_of_orders_is_protected_by_a_mounted_token() -> None:
    """orders serves the operator API with NATIVEKIT_AUTH_TOKEN_FILE in a Secret volume."""
    env = env_of("orders")
    assert env["NATIVEKIT_SAGA_OPERATOR_API"] == "true"
    assert "NATIVEKIT_AUTH_INSECURE_OPERATOR_API" not in env
    path = Path(env["NATIVEKIT_AUTH_TOKEN_FILE"])
    mounts = {m["mountPath"]: m for m in container("orders")["volumeMounts"]}
    mount = mounts[str(path.parent)]
    volume = next(v for v in pod_spec("orders")["volumes"] if v["name"] == mount["name"])
    assert mount.get("readOnly") is True
    assert volume["secret"]["secretName"] == "shop-operator"
    assert path.name in {item["path"] for item in volume["secret"]["items"]}
    assert "NATIVEKIT_AUTH_TOKEN" not in env  # never the token itself in plain env


@pytest.mark.parametrize("service", SERVICES)
def test_termination_grace_covers_nativekit_drain(service: str) -> None:
    """Either preStop sleeps or nativekit delays; the kubelet waits for delay + grace + margin."""
    delay = setting(service, "http.shutdown_delay_seconds")
    grace = setting(service, "http.shutdown_grace_seconds")
    pre_stop = pre_stop_seconds(service)
    assert (delay > 0) != (pre_stop > 0), (
        "use one of preStop sleep and NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS"
    )
    # uvicorn waits for in-flight requests before nativekit's grace applies; cap it alike.
    assert 0 < int(env_of(service)["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"]) <= grace
    period = pod_spec(service)["terminationGracePeriodSeconds"]
    assert period >= pre_stop + delay + grace + STOP_MARGIN


@pytest.mark.parametrize("service", SERVICES)
def test_readiness_probe_outlasts_the_health_timeout(service: str) -> None:
    """The readiness probe waits longer than nativekit's own per-check timeout."""
    probe = container(service)["readinessProbe"]
    assert probe["timeoutSeconds"] > setting(service, "telemetry.health_timeout_seconds")


@pytest.mark.parametrize("service", SERVICES)
def test_resources_have_requests_within_limits(service: str) -> None:
    """CPU and memory requests and limits are set, each request at most its limit."""
    resources = container(service)["resources"]
    for kind in ("cpu", "memory"):
        assert 0 < quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])


@pytest.mark.parametrize("service", SERVICES)
def test_pods_run_non_root_on_a_read_only_root(service: str) -> None:
    """Pods run as the image's non-root uid on a read-only root, unprivileged, /tmp writable."""
    pod = pod_spec(service)["securityContext"]
    ctx = container(service)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == final_stage_user()
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    tmp = next(m for m in container(service)["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod_spec(service)["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume


@pytest.mark.parametrize("service", SERVICES)
def test_rollout_keeps_capacity_and_prometheus_scrapes(service: str) -> None:
    """Rollouts surge before removing pods; pods carry the prometheus.io scrape annotations."""
    deployment = get("Deployment", service)["spec"]
    rolling = deployment["strategy"]["rollingUpdate"]
    assert deployment["strategy"]["type"] == "RollingUpdate"
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] not in (0, "0%")
    annotations = deployment["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert container_port(service, int(annotations["prometheus.io/port"])) == PORT


@pytest.mark.parametrize("service", SERVICES)
def test_autoscaler_scales_its_deployment_on_cpu(service: str) -> None:
    """The HPA targets the service's Deployment by CPU, which alone sets the replica count."""
    hpa = get("HorizontalPodAutoscaler", service)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    assert [m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"] == ["cpu"]
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert "replicas" not in get("Deployment", service)["spec"]


@pytest.mark.parametrize("service", SERVICES)
def test_disruption_budget_selects_only_its_pods(service: str) -> None:
    """The PDB matches this service's pods, no other's, and still lets a node drain proceed."""
    pdb = get("PodDisruptionBudget", service)["spec"]
    selector = pdb["selector"]["matchLabels"].items()
    for other in SERVICES:
        labels = get("Deployment", other)["spec"]["template"]["metadata"]["labels"].items()
        assert (selector <= labels) == (other == service)
    min_replicas = get("HorizontalPodAutoscaler", service)["spec"]["minReplicas"]
    assert pdb.get("maxUnavailable", 0) >= 1 or pdb["minAvailable"] < min_replicas


def test_keda_example_scales_inventory_on_its_consumer_groups_lag() -> None:
    """The optional KEDA ScaledObject targets the inventory Deployment and watches the
    group and topic inventory's order consumer really uses."""
    from examples.shop import inventory

    [keda] = yaml.safe_load_all((K8S / "autoscale-on-lag/inventory-keda.yaml").read_text())
    assert keda["kind"] == "ScaledObject"
    assert keda["spec"]["scaleTargetRef"]["name"] == "inventory"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert keda["metadata"]["namespace"] == kustomization["namespace"]
    [lag] = [t["metadata"] for t in keda["spec"]["triggers"] if t["type"] == "kafka"]
    consumers = {
        (c.options.group, topic)
        for c in inventory.svc.messaging.consumers
        for topic in c.options.topics
    }
    assert (lag["consumerGroup"], lag["topic"]) in consumers
    assert lag["bootstrapServers"] == get("ConfigMap", "shop-config")["data"][
        "NATIVEKIT_KAFKA_URL"
    ].removeprefix("kafka://")

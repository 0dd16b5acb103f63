"""The generated Dockerfile, compose file and Kubernetes manifests agree with nativekit's code.

Like tests/shop/test_deploy.py for the shop: probe paths come from
``nativekit._health``, setting names and values are checked against
``nativekit.Settings``, and the drain timing against its shutdown settings.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from nativekit._health import PROBE_PATHS
from nativekit.cli._main import main
from nativekit.settings import ENV_PREFIX, Settings, variables

NAME, PACKAGE, PORT = "order-service", "order_service", 8000
PROBES = {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
STOP_MARGIN = 10  # seconds after the drain for consumers to commit and connections to close
BUILD_TOOLS = {"build-essential", "gcc", "g++", "cc", "clang", "make", "cmake", "python3-dev"}
UNITS = {"": 1.0, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}

Manifest = dict[str, Any]


@pytest.fixture(scope="module", params=[True, False], ids=["kafka", "no-kafka"])
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated project, with and without Kafka."""
    target = tmp_path_factory.mktemp("deploy") / NAME
    flag = "--kafka" if request.param else "--no-kafka"
    assert main(["new", NAME, str(target), flag, "--no-prompt"]) == 0
    return target


def stages(project: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, (KEYWORD, rest) per stage; stage 0 holds global ARGs."""
    text = re.sub(r"\\\n", " ", (project / "Dockerfile").read_text())
    result: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            result.append([])
        result[-1].append((keyword.upper(), rest.strip()))
    return result


def of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for kw, rest in stage if kw == keyword]


def manifests(project: Path) -> dict[tuple[str, str], Manifest]:
    found: dict[tuple[str, str], Manifest] = {}
    for path in sorted((project / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] != "Kustomization":
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def container(project: Path) -> Manifest:
    [spec] = manifests(project)[("Deployment", NAME)]["spec"]["template"]["spec"]["containers"]
    assert spec["name"] == NAME
    return dict(spec)


def env_of(project: Path) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env."""
    env: dict[str, str] = {}
    for source in container(project).get("envFrom", []):
        env.update(manifests(project)[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for entry in container(project).get("env", []):
        env[entry["name"]] = entry["value"]
    return env


def port_of(project: Path, port: int | str) -> int:
    named = {p["name"]: p["containerPort"] for p in container(project)["ports"]}
    return port if isinstance(port, int) else int(named[port])


def quantity(value: str | int) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match[1]) * UNITS[match[2]]


def test_final_image_stage_has_no_build_tools_and_runs_non_root(project: Path) -> None:
    """Two stages; the last copies only the builder's venv, names no compiler, runs as uid 10001."""
    _, *built = stages(project)
    assert len(built) == 2 and "build-essential" in " ".join(of(built[0], "RUN"))
    final = built[-1]
    words = {w for _, rest in final for w in re.split(r"[\s;&|\"',\[\]]+", rest)}
    assert not words & BUILD_TOOLS
    assert of(final, "COPY") and all(c.startswith("--from=builder ") for c in of(final, "COPY"))
    [user] = of(final, "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) > 0 and int(gid) > 0
    pod = manifests(project)[("Deployment", NAME)]["spec"]["template"]["spec"]["securityContext"]
    assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == user and pod["runAsNonRoot"] is True


def test_image_serves_the_package_app_on_the_probed_port(project: Path) -> None:
    """CMD execs uvicorn on the generated app; EXPOSE and HEALTHCHECK use nativekit's port/path."""
    final = stages(project)[-1]
    [cmd] = of(final, "CMD")
    assert json.loads(cmd)[:2] == ["uvicorn", f"{PACKAGE}.app:app"]
    assert json.loads(cmd)[2:6] == ["--host", "0.0.0.0", "--port", str(PORT)]
    assert of(final, "EXPOSE") == [str(PORT)] and "/livez" in of(final, "HEALTHCHECK")[0]
    assert (project / "src" / PACKAGE / "app.py").is_file()


def test_dockerignore_lets_through_what_the_copies_need(project: Path) -> None:
    """The build context is an allow-list holding every COPY source."""
    lines = [p for p in (project / ".dockerignore").read_text().splitlines() if p and p[0] != "#"]
    assert lines[0] == "*"
    allowed = {p[1:].rstrip("/") for p in lines if p.startswith("!")}
    sources = {
        word.rstrip("/")
        for stage in stages(project)
        for rest in of(stage, "COPY")
        if not rest.startswith("--from=")
        for word in shlex.split(rest)[:-1]
    }
    assert sources and sources <= allowed


def test_kustomization_applies_every_manifest(project: Path) -> None:
    """kustomization.yaml lists exactly the other files in k8s/."""
    kustomization = yaml.safe_load((project / "k8s/kustomization.yaml").read_text())
    files = {p.name for p in (project / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    kinds = {kind for kind, _ in manifests(project)}
    assert kinds == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    }


def test_probes_hit_nativekit_paths_on_the_serving_port(project: Path) -> None:
    """Startup, readiness and liveness GET nativekit's probe paths on port 8000."""
    spec = container(project)
    assert {spec[probe]["httpGet"]["path"] for probe in PROBES} == PROBE_PATHS
    for probe, path in PROBES.items():
        assert spec[probe]["httpGet"]["path"] == path
        assert port_of(project, spec[probe]["httpGet"]["port"]) == PORT
    assert (
        spec["readinessProbe"]["timeoutSeconds"]
        > Settings(_env_file=None).telemetry.health_timeout_seconds
    )


def test_termination_grace_covers_prestop_and_nativekit_drain(project: Path) -> None:
    """The kubelet waits for the preStop sleep + nativekit's grace + a margin before SIGKILL."""
    env = env_of(project)
    hook = container(project)["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[0] == "sleep"
    pre_stop, delay = float(hook[1]), float(env["NATIVEKIT_HTTP_SHUTDOWN_DELAY_SECONDS"])
    grace = float(env["NATIVEKIT_HTTP_SHUTDOWN_GRACE_SECONDS"])
    assert pre_stop > 0 and delay == 0, "the preStop sleep replaces nativekit's own delay"
    assert 0 < float(env["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"]) <= grace
    spec = manifests(project)[("Deployment", NAME)]["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + delay + grace + STOP_MARGIN


def test_resources_have_requests_within_limits(project: Path) -> None:
    """CPU and memory requests and limits are set, each request at most its limit."""
    resources = container(project)["resources"]
    for kind in ("cpu", "memory"):
        assert 0 < quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])


def test_settings_in_the_manifests_are_valid(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NATIVEKIT_* names are Settings variables with valid values; the app's own are its fields."""
    env = env_of(project)
    ours = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    assert set(ours) <= set(variables()), set(ours) - set(variables())
    for name, value in ours.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.environment == "production" and settings.redis.url.startswith("redis://")
    kafka = "@svc.consumer" in (project / f"src/{PACKAGE}/app.py").read_text()
    assert settings.kafka.url.startswith("kafka://" if kafka else "memory://")
    app_prefix = f"{PACKAGE.upper()}_"
    app_fields = {k.removeprefix(app_prefix).lower() for k in env if k.startswith(app_prefix)}
    settings_py = (project / f"src/{PACKAGE}/settings.py").read_text()
    assert app_fields and all(f"\n    {field}: " in settings_py for field in app_fields)
    assert env["OTEL_SERVICE_NAME"] == NAME


def test_service_hpa_and_pdb_select_the_deployment(project: Path) -> None:
    """The Service routes to the container port; the HPA scales and the PDB guards these pods."""
    found = manifests(project)
    labels = found[("Deployment", NAME)]["spec"]["template"]["metadata"]["labels"].items()
    service = found[("Service", NAME)]["spec"]
    assert service["selector"].items() <= labels
    assert [port_of(project, p["targetPort"]) for p in service["ports"]] == [PORT]
    hpa = found[("HorizontalPodAutoscaler", NAME)]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    assert "replicas" not in found[("Deployment", NAME)]["spec"]
    pdb = found[("PodDisruptionBudget", NAME)]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels and pdb["maxUnavailable"] >= 1


def test_compose_runs_what_env_example_points_at(project: Path) -> None:
    """compose.yaml publishes Redis (and Kafka, when chosen) where .env.example's URLs point."""
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    env_example = (project / ".env.example").read_text()
    assert "127.0.0.1:6379:6379" in services["redis"]["ports"]
    assert "redis://127.0.0.1:6379/0" in env_example
    kafka = "@svc.consumer" in (project / f"src/{PACKAGE}/app.py").read_text()
    assert ("kafka" in services) is kafka
    if kafka:
        assert "127.0.0.1:9092:9092" in services["kafka"]["ports"]
        assert "kafka://127.0.0.1:9092" in env_example


def test_keda_example_watches_the_generated_consumer(project: Path) -> None:
    """With Kafka, k8s/autoscale-on-lag/keda.yaml scales the Deployment on the lag of the
    generated consumer's group and topic; without Kafka there is no such file."""
    path = project / "k8s/autoscale-on-lag/keda.yaml"
    app = (project / f"src/{PACKAGE}/app.py").read_text()
    if "@svc.consumer" not in app:
        assert not path.exists()
        return
    [keda] = yaml.safe_load_all(path.read_text())
    assert keda["spec"]["scaleTargetRef"]["name"] == NAME
    [lag] = [t["metadata"] for t in keda["spec"]["triggers"] if t["type"] == "kafka"]
    assert f'RESTOCKS = "{lag["topic"]}"' in app
    assert "@svc.consumer(RESTOCKS, group=svc.name)" in app and lag["consumerGroup"] == NAME

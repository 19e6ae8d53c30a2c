"""The Kubernetes manifests (deploy/kubernetes), as ``kubectl kustomize`` renders each overlay.

No cluster runs here: every rendered object is validated against the schemas of a pinned
Kubernetes version (``kubernetes-validate``, strict: an unknown field is an error), and checked
against what the project itself says: compose.yaml's images, environment and ports, the routes of
the service's FastAPI app, the metrics it exports, the Settings it reads, and the Grafana files
compose mounts.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cluster_support import CPU, DOCKER, GPU, ROOT, compose_config, env_example, run_tool, tool
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Match

from reward_service.app import create_app
from reward_service.metrics import ServiceMetrics
from reward_service.settings import Settings

KUBERNETES = ROOT / "deploy" / "kubernetes"
# The API every object must fit: kubectl 1.32's (the validator ships the schemas of 1.28 to 1.37).
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "distreward"
OVERLAYS = {
    "gpu": "overlays/gpu",
    "cpu": "overlays/cpu",
    "external-redis": "examples/external-redis",
}
COMPOSE_FILES = {"gpu": GPU, "cpu": CPU, "external-redis": GPU}
# Each workload of the manifests and the compose service it stands for.
COMPOSE_SERVICE = {
    ("Deployment", "reward-service"): "reward-service",
    ("Job", "reference-init"): "reference-init",
    ("StatefulSet", "redis"): "redis",
    ("StatefulSet", "redis-sentinel"): "redis",
    ("Deployment", "prometheus"): "prometheus",
    ("Deployment", "grafana"): "grafana",
}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
SECRET = "distreward-tokens"
GPU_RESOURCE = "nvidia.com/gpu"
DASHBOARDS = DOCKER / "grafana" / "dashboards"
GRAFANA_PROVISIONING = DOCKER / "grafana" / "provisioning"
ADAPTER_VALUES = KUBERNETES / "prometheus-adapter" / "values.yaml"


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class FieldRef:
    path: str


@dataclass(frozen=True)
class Manifests:
    """The objects one overlay renders to."""

    objects: tuple[dict[str, Any], ...]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object ``kind``/``name``; a generated ConfigMap is found by the name before its
        content hash."""
        pattern = re.compile(rf"{re.escape(name)}(-[a-z0-9]{{10}})?")
        found = [o for o in self.all(kind) if pattern.fullmatch(o["metadata"]["name"])]
        assert len(found) <= 1, [o["metadata"]["name"] for o in found]
        return found[0] if found else None

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = self.find(kind, name)
        assert found is not None, f"no {kind} {name}"
        return found

    def config_map_data(self, name: str) -> dict[str, str]:
        """The data of the ConfigMap ``name`` exactly as a pod refers to it (hash included)."""
        (config_map,) = [o for o in self.all("ConfigMap") if o["metadata"]["name"] == name]
        return dict(config_map["data"])

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in WORKLOADS]

    def container(self, kind: str, name: str) -> dict[str, Any]:
        (container,) = pod_spec(self.get(kind, name))["containers"]
        return dict(container)

    def environment(self, container: dict[str, Any]) -> dict[str, str | SecretRef | FieldRef]:
        """A container's environment: ConfigMap values resolved, Secret and field references
        kept as references."""
        env: dict[str, str | SecretRef | FieldRef] = {}
        for source in container.get("envFrom", []):
            env |= self.config_map_data(source["configMapRef"]["name"])
        for variable in container.get("env", []):
            name = variable["name"]
            if "value" in variable:
                env[name] = variable["value"]
                continue
            source = variable["valueFrom"]
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[name] = self.config_map_data(ref["name"])[ref["key"]]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[name] = SecretRef(ref["name"], ref["key"], ref.get("optional", False))
            else:
                env[name] = FieldRef(source["fieldRef"]["fieldPath"])
        return env


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def containers(manifests: Manifests) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container, init containers included."""
    return [
        (workload, container)
        for workload in manifests.workloads()
        for key in ("initContainers", "containers")
        for container in pod_spec(workload).get(key, [])
    ]


@functools.cache
def rendered(overlay: str) -> Manifests:
    out = run_tool(tool("kubectl"), "kustomize", KUBERNETES / OVERLAYS[overlay])
    return Manifests(tuple(o for o in yaml.safe_load_all(out) if o))


@functools.cache
def compose(overlay: str) -> dict[str, Any]:
    return dict(compose_config(COMPOSE_FILES[overlay])["services"])


@functools.cache
def service_app() -> Starlette:
    return create_app(Settings(env="development"))


def served_by_get(path: str) -> bool:
    """Whether one of the service app's own routes answers ``GET path`` (the router decides,
    as it does for a request)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in service_app().routes)


def exported_metrics() -> set[str]:
    """Sample names of a fresh service's registry (every unlabelled gauge shows at 0)."""
    text = generate_latest(ServiceMetrics().registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def setting_variables() -> set[str]:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def named_port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def compose_target_ports(service: dict[str, Any]) -> set[int]:
    return {int(p["target"]) for p in service.get("ports", [])} | {
        int(p) for p in service.get("expose", [])
    }


# -- rendering and schemas ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders_the_whole_cluster(overlay: str) -> None:
    manifests = rendered(overlay)
    expected = {
        ("Deployment", "reward-service"),
        ("Service", "reward-service"),
        ("PodDisruptionBudget", "reward-service"),
        ("HorizontalPodAutoscaler", "reward-service"),
        ("Job", "reference-init"),
        ("Deployment", "prometheus"),
        ("Service", "prometheus"),
        ("Deployment", "grafana"),
        ("ConfigMap", "grafana-dashboards"),
    }
    in_cluster_redis = {("StatefulSet", "redis"), ("StatefulSet", "redis-sentinel")}
    if overlay != "external-redis":
        expected |= in_cluster_redis
    assert all(manifests.find(kind, name) for kind, name in expected)
    if overlay == "external-redis":
        assert not any(manifests.find(kind, name) for kind, name in in_cluster_redis)
    assert {o["metadata"].get("namespace") for o in manifests.objects} == {NAMESPACE}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_pinned_kubernetes_schemas(overlay: str) -> None:
    errors = []
    for obj in rendered(overlay).objects:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{what} at {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{what}: {error.message}")
    assert not errors, "\n".join(errors)


def test_the_schemas_refuse_a_misspelled_field() -> None:
    """The check above can fail: strict schemas refuse a field Kubernetes does not know."""
    deployment = copy.deepcopy(rendered("gpu").get("Deployment", "reward-service"))
    container = pod_spec(deployment)["containers"][0]
    deployment["spec"]["template"]["spec"]["containers"][0] = container | {
        "readinesProbe": container["readinessProbe"]
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_names_an_object_of_the_overlay(overlay: str) -> None:
    """ConfigMaps, claims, service accounts and scale targets exist; Secrets are the one the
    README tells to create, with keys of docker/distreward.env.example."""
    manifests = rendered(overlay)
    config_maps = {o["metadata"]["name"] for o in manifests.all("ConfigMap")}
    claims = {o["metadata"]["name"] for o in manifests.all("PersistentVolumeClaim")}
    for workload in manifests.workloads():
        spec = pod_spec(workload)
        templates = workload["spec"].get("volumeClaimTemplates", [])
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for _, container in containers(Manifests((workload,))):
            mounted = {m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"] for v in spec.get("volumes", [])}
            assert mounted <= volumes | {t["metadata"]["name"] for t in templates}
            for value in manifests.environment(container).values():
                if isinstance(value, SecretRef):
                    assert value.name == SECRET
                    # the env file's tokens, or a setting the Secret may carry
                    assert value.key in env_example() or (
                        value.optional and value.key in setting_variables()
                    ), value
        if "serviceAccountName" in spec:
            assert manifests.find("ServiceAccount", spec["serviceAccountName"])
    target = manifests.get("HorizontalPodAutoscaler", "reward-service")["spec"]["scaleTargetRef"]
    assert manifests.find(target["kind"], target["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_pick_the_pods_they_are_for(overlay: str) -> None:
    manifests = rendered(overlay)
    workloads = manifests.workloads()
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in manifests.all(kind):
            selector = obj["spec"]["selector"]
            labels = selector.get("matchLabels", selector)
            picked = [
                w
                for w in workloads
                if labels.items() <= w["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert picked, f"{kind}/{obj['metadata']['name']} selects no pod"
    deployment = manifests.get("Deployment", "reward-service")
    service = manifests.get("Service", "reward-service")
    pdb = manifests.get("PodDisruptionBudget", "reward-service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


# -- agreement with compose.yaml ---------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_ones_compose_runs(overlay: str) -> None:
    services = compose(overlay)
    seen = set()
    for workload, container in containers(rendered(overlay)):
        key = (workload["kind"], workload["metadata"]["name"])
        assert key in COMPOSE_SERVICE, f"{key}: which compose service does it stand for?"
        assert container["image"] == services[COMPOSE_SERVICE[key]]["image"], key
        seen.add(COMPOSE_SERVICE[key])
    expected = set(COMPOSE_SERVICE.values()) - ({"redis"} if overlay == "external-redis" else set())
    assert seen == expected


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_environment_agrees_with_compose_and_the_settings(overlay: str) -> None:
    """Every variable is a setting of the service; compose's settings are all set, the same
    ones to the same values (Redis's address aside: here the sentinels name it); tokens come
    from the Secret under the names of the env file, and only those the service reads."""
    manifests = rendered(overlay)
    env = manifests.environment(manifests.container("Deployment", "reward-service"))
    settings = setting_variables()
    unknown = sorted(set(env) - settings)
    assert not unknown, f"not settings of the service: {unknown}"
    composed = {k: v for k, v in compose(overlay)["reward-service"]["environment"].items()}
    redis_address = {"DISTREWARD_REDIS_URL", "DISTREWARD_REDIS_SENTINELS"}
    assert {k for k in composed if k in settings} - redis_address <= set(env)
    assert len(redis_address & set(env)) == 1  # one or the other
    for name in ("DISTREWARD_HOST", "DISTREWARD_PORT", "DISTREWARD_DEVICE"):
        assert env.get(name) == composed.get(name), name
    tokens = {k: v for k, v in env.items() if isinstance(v, SecretRef) and not v.optional}
    assert tokens == {
        name: SecretRef(SECRET, name) for name in ("DISTREWARD_TOKENS", "DISTREWARD_ADMIN_TOKENS")
    }
    assert set(tokens) <= set(env_example())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_starts_with_that_environment(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's environment, with real tokens in the Secret and its optional keys absent, is
    what Settings accepts (the service refuses to start otherwise): Redis behind sentinels, a
    write acknowledged once a replica holds it."""
    manifests = rendered(overlay)
    env = manifests.environment(manifests.container("Deployment", "reward-service"))
    for name in [k for k in os.environ if k.startswith("DISTREWARD_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
        elif isinstance(value, SecretRef) and not value.optional:
            monkeypatch.setenv(name, secrets.token_urlsafe(32))
    settings = Settings()
    assert settings.store_kind == "redis" and settings.redis_sentinels
    assert settings.min_replicas == 1
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_reference_init_reads_what_compose_gives_it_and_calls_the_service(overlay: str) -> None:
    manifests = rendered(overlay)
    container = manifests.container("Job", "reference-init")
    env = manifests.environment(container)
    script = (DOCKER / "trainer" / "init_reference.py").read_text()
    required = set(re.findall(r"os\.environ\[\"(\w+)\"\]", script))
    assert required == {"DISTREWARD_URL", "DISTREWARD_ADMIN_TOKEN"}
    assert required <= set(env)
    assert env["DISTREWARD_ADMIN_TOKEN"] == SecretRef(SECRET, "DISTREWARD_ADMIN_TOKEN")
    assert compose(overlay)["reference-init"]["entrypoint"] == container["command"]
    service = manifests.get("Service", "reward-service")
    (port,) = service["spec"]["ports"]
    assert env["DISTREWARD_URL"] == f"http://{service['metadata']['name']}:{port['port']}"
    # compose also hands it every token of the env file; here it gets only the one it uses
    assert set(compose(overlay)["reference-init"]["environment"]) - set(env_example()) <= set(env)
    assert pod_spec(manifests.get("Job", "reference-init"))["restartPolicy"] == "OnFailure"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_are_the_ones_compose_uses(overlay: str) -> None:
    manifests = rendered(overlay)
    services = compose(overlay)
    service = manifests.container("Deployment", "reward-service")
    port = named_port(service, "http")
    env = manifests.environment(service)
    assert port == int(str(env["DISTREWARD_PORT"]))
    assert compose_target_ports(services["reward-service"]) == {port}
    (exposed,) = manifests.get("Service", "reward-service")["spec"]["ports"]
    assert exposed["targetPort"] == "http"
    for name, port_name in (("prometheus", "web"), ("grafana", "web")):
        container = manifests.container("Deployment", name)
        assert compose_target_ports(services[name]) == {named_port(container, port_name)}
        (exposed,) = manifests.get("Service", name)["spec"]["ports"]
        assert exposed["targetPort"] == port_name
    compose_url = services["reward-service"]["environment"]["DISTREWARD_REDIS_URL"]
    redis_port = int(compose_url.rsplit(":", 1)[1].split("/")[0])
    if overlay != "external-redis":
        redis = manifests.container("StatefulSet", "redis")
        assert named_port(redis, "redis") == redis_port
        assert manifests.environment(redis)["REDIS_PORT"] == str(redis_port)
        sentinel = manifests.environment(manifests.container("StatefulSet", "redis-sentinel"))
        assert sentinel["REDIS_PORT"] == str(redis_port)


# -- probes, scraping and autoscaling ----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_point_at_routes_of_the_service(overlay: str) -> None:
    container = rendered(overlay).container("Deployment", "reward-service")
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe")}
    probes["readinessProbe"] = container["readinessProbe"]["httpGet"]
    for kind, probe in probes.items():
        assert served_by_get(probe["path"]), f"{kind}: no route answers GET {probe['path']}"
        assert probe["port"] == "http"
    assert probes["readinessProbe"]["path"] == "/readyz"  # ready = the store answers
    assert probes["livenessProbe"]["path"] == "/healthz"  # alive = the process answers


def apply_relabeling(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's ``keep`` and ``replace`` relabeling of one target's labels (None: dropped);
    regexes are anchored at both ends, as Prometheus anchors them."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                replacement = re.sub(r"\$(\d+)", r"\\\1", rule.get("replacement", "$1"))
                labels[rule["target_label"]] = match.expand(replacement)
        else:
            pytest.fail(f"relabel action {action} is not modelled here")
    return labels


def kubernetes_sd_labels(workload: dict[str, Any], port: dict[str, Any]) -> dict[str, str]:
    """The labels Prometheus's pod discovery gives a running pod of ``workload`` for one of its
    container ports (names sanitised as Prometheus does)."""

    def sanitise(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", name)

    metadata = workload["spec"]["template"]["metadata"]
    pod = f"{workload['metadata']['name']}-0"
    labels = {
        "__address__": f"10.0.0.1:{port['containerPort']}",
        "__meta_kubernetes_namespace": workload["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
    }
    for key, value in metadata.get("labels", {}).items():
        labels[f"__meta_kubernetes_pod_label_{sanitise(key)}"] = value
    for key, value in metadata.get("annotations", {}).items():
        labels[f"__meta_kubernetes_pod_annotation_{sanitise(key)}"] = value
    return labels


def prometheus_config(manifests: Manifests) -> dict[str, Any]:
    volumes = pod_spec(manifests.get("Deployment", "prometheus"))["volumes"]
    (name,) = [v["configMap"]["name"] for v in volumes if "configMap" in v]
    return dict(yaml.safe_load(manifests.config_map_data(name)["prometheus.yml"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_every_service_pod_at_its_metrics_route_and_nothing_else(
    overlay: str,
) -> None:
    manifests = rendered(overlay)
    config = prometheus_config(manifests)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "reward-service"]
    (discovery,) = job["kubernetes_sd_configs"]
    assert discovery["role"] == "pod" and discovery["namespaces"] == {"own_namespace": True}
    scraped = []
    for workload, container in containers(manifests):
        for port in container.get("ports", []):
            labels = kubernetes_sd_labels(workload, port)
            kept = apply_relabeling(job["relabel_configs"], labels)
            if kept is not None:
                scraped.append((workload["metadata"]["name"], kept))
    assert [name for name, _ in scraped] == ["reward-service"]  # one target per pod
    ((_, target),) = scraped
    path = target.get("__metrics_path__", job.get("metrics_path", "/metrics"))
    assert served_by_get(path) and path == "/metrics"
    container = manifests.container("Deployment", "reward-service")
    assert target["__address__"].endswith(f":{named_port(container, 'http')}")
    assert target["pod"] == target["instance"] == "reward-service-0"
    assert target["namespace"] == NAMESPACE
    # The annotations tell other scrapers the same port and path.
    template = manifests.get("Deployment", "reward-service")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == named_port(container, "http")
    assert annotations["prometheus.io/path"] == path


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    """Debian's promtool is built without Kubernetes discovery: the rest of the config (relabel
    rules, their regexes) is checked with a static target in its place."""
    config = prometheus_config(rendered("gpu"))
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert "SUCCESS" in run_tool(tool("promtool"), "check", "config", path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_autoscaler_scales_on_a_metric_the_service_exports(
    overlay: str, tmp_path: Path
) -> None:
    manifests = rendered(overlay)
    hpa = manifests.get("HorizontalPodAutoscaler", "reward-service")["spec"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    assert name in exported_metrics()
    replicas = manifests.get("Deployment", "reward-service")["spec"]["replicas"]
    assert (
        hpa["minReplicas"] == replicas == compose(overlay)["reward-service"]["deploy"]["replicas"]
    )
    assert hpa["minReplicas"] <= hpa["maxReplicas"]
    assert (
        hpa["minReplicas"]
        >= manifests.get("PodDisruptionBudget", "reward-service")["spec"]["minAvailable"] + 1
    )  # a drain never waits on the autoscaler

    # The metrics adapter serves it, from the namespace's Prometheus, per pod.
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == name
    series = re.fullmatch(r"(\w+)\{.*\}", rule["seriesQuery"])
    assert series and series.group(1) in exported_metrics()
    assert re.fullmatch(rule["name"]["matches"], series.group(1))
    relabeled = {
        r["target_label"]
        for job in prometheus_config(manifests)["scrape_configs"]
        for r in job.get("relabel_configs", [])
        if "target_label" in r
    }
    overrides = rule["resources"]["overrides"]
    assert {k: v["resource"] for k, v in overrides.items()} == {
        "namespace": "namespace",
        "pod": "pod",
    }
    assert set(overrides) <= relabeled
    prometheus = manifests.get("Service", "prometheus")
    (port,) = prometheus["spec"]["ports"]
    assert values["prometheus"]["url"] == f"http://prometheus.{NAMESPACE}.svc"
    assert values["prometheus"]["port"] == port["port"]
    query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", series.group(1))
        .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"reward-service-.*"')
        .replace("<<.GroupBy>>", "pod")
    )
    rules = tmp_path / "adapter.rules.yml"
    rules.write_text(
        yaml.safe_dump({"groups": [{"name": "adapter", "rules": [{"record": "a", "expr": query}]}]})
    )
    assert "1 rules found" in run_tool(tool("promtool"), "check", "rules", rules)


# -- GPU and resources -------------------------------------------------------------------------


def gpu_limits(manifests: Manifests) -> dict[str, str]:
    found = {}
    for workload, container in containers(manifests):
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            if GPU_RESOURCE in resources.get(part, {}):
                found[f"{workload['metadata']['name']}/{part}"] = resources[part][GPU_RESOURCE]
    return found


def test_the_gpu_overlay_gives_each_service_pod_one_gpu() -> None:
    assert gpu_limits(rendered("gpu")) == {"reward-service/limits": 1}
    deployment = rendered("gpu").get("Deployment", "reward-service")
    assert {t["key"] for t in pod_spec(deployment)["tolerations"]} == {GPU_RESOURCE}
    # an update never waits for a spare GPU: it replaces one pod at a time
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    (device,) = compose("gpu")["reward-service"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == 1


def test_the_cpu_overlay_asks_for_no_gpu_and_computes_on_the_cpu() -> None:
    manifests = rendered("cpu")
    assert gpu_limits(manifests) == {}
    assert "tolerations" not in pod_spec(manifests.get("Deployment", "reward-service"))
    env = manifests.environment(manifests.container("Deployment", "reward-service"))
    assert env["DISTREWARD_DEVICE"] == "cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resources_and_runs_unprivileged(overlay: str) -> None:
    for workload, container in containers(rendered(overlay)):
        what = f"{workload['metadata']['name']}/{container['name']}"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), what
        assert "memory" in resources["limits"], what
        assert pod_spec(workload)["securityContext"]["runAsNonRoot"] is True, what
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, what


# -- Redis with Sentinel -----------------------------------------------------------------------


def test_the_service_and_redis_name_the_same_sentinels_and_master() -> None:
    manifests = rendered("gpu")
    service = manifests.environment(manifests.container("Deployment", "reward-service"))
    sentinels = manifests.get("StatefulSet", "redis-sentinel")
    headless = manifests.get("Service", sentinels["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    port = named_port(manifests.container("StatefulSet", "redis-sentinel"), "sentinel")
    pods = [
        f"{sentinels['metadata']['name']}-{i}.{headless['metadata']['name']}:{port}"
        for i in range(sentinels["spec"]["replicas"])
    ]
    assert str(service["DISTREWARD_REDIS_SENTINELS"]).split(",") == pods
    redis = manifests.get("StatefulSet", "redis")
    pod_zero = f"redis-0.{redis['spec']['serviceName']}.$(POD_NAMESPACE).svc"
    for workload in ("redis", "redis-sentinel"):
        env = manifests.environment(manifests.container("StatefulSet", workload))
        for name in ("DISTREWARD_REDIS_SENTINELS", "DISTREWARD_REDIS_MASTER_NAME"):
            assert env[name] == service[name], (workload, name)
        assert env["INITIAL_PRIMARY"] == pod_zero
    sentinel = manifests.environment(manifests.container("StatefulSet", "redis-sentinel"))
    quorum = int(str(sentinel["SENTINEL_QUORUM"]))
    assert sentinels["spec"]["replicas"] // 2 < quorum <= sentinels["spec"]["replicas"]
    # A write is acknowledged once that many replicas hold it: there are as many.
    replicas = redis["spec"]["replicas"] - 1
    assert 1 <= int(str(service["DISTREWARD_REDIS_MIN_REPLICAS"])) <= replicas


def test_a_failover_leaves_the_service_pods_in_the_service() -> None:
    """Readiness fails only after twice the time the sentinels wait before they declare the
    primary down, so a failover (that wait, then a vote: about 6 s measured by hand on
    loopback) does not empty the Service while the pods serve rewards from the version held."""
    manifests = rendered("gpu")
    probe = manifests.container("Deployment", "reward-service")["readinessProbe"]
    sentinel = manifests.environment(manifests.container("StatefulSet", "redis-sentinel"))
    down_after = int(str(sentinel["SENTINEL_DOWN_AFTER_MILLISECONDS"])) / 1000
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 2 * down_after


def test_redis_persists_as_compose_runs_it() -> None:
    """AOF fsynced before each reply, in the pod's own volume; each sentinel keeps its state
    in its own volume too."""
    manifests = rendered("gpu")
    command = compose("gpu")["redis"]["command"]
    for name in ("redis", "redis-sentinel"):
        workload = manifests.get("StatefulSet", name)
        (container,) = pod_spec(workload)["containers"]
        (scripts,) = [v for v in pod_spec(workload)["volumes"] if "configMap" in v]
        script = manifests.config_map_data(scripts["configMap"]["name"])[
            container["command"][-1].rsplit("/", 1)[1]
        ]
        claims = {t["metadata"]["name"] for t in workload["spec"]["volumeClaimTemplates"]}
        (data,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims]
        assert manifests.environment(container)["DATA_DIR"] == data
        if name == "redis":
            for flag in ("--appendonly", "--appendfsync"):
                assert f"{flag} {command[command.index(flag) + 1]}" in script
            assert '--dir "$DATA_DIR"' in script
        else:
            assert "conf=$DATA_DIR/sentinel.conf" in script


def test_the_external_redis_example_leaves_nothing_of_the_in_cluster_redis() -> None:
    manifests = rendered("external-redis")
    names = {o["metadata"]["name"] for o in manifests.objects}
    assert not {n for n in names if n.startswith("redis")}
    env = manifests.environment(manifests.container("Deployment", "reward-service"))
    example = KUBERNETES / OVERLAYS["external-redis"] / "redis.env"
    lines = (line for line in example.read_text().splitlines() if line and line[0] != "#")
    assert dict(line.split("=", 1) for line in lines) == {
        k: v for k, v in env.items() if k.startswith("DISTREWARD_REDIS_") and isinstance(v, str)
    }


# -- Grafana -----------------------------------------------------------------------------------


def test_grafana_gets_the_dashboards_and_provisioning_compose_mounts() -> None:
    """Generated from docker/grafana's own files (no copy under deploy/), every dashboard of the
    folder, mounted where the provisioning looks, and Grafana's settings as in compose."""
    manifests = rendered("gpu")
    assert not list(KUBERNETES.rglob("*.json"))
    grafana = manifests.get("Deployment", "grafana")
    (container,) = pod_spec(grafana)["containers"]
    volumes = {
        v["name"]: v["configMap"]["name"] for v in pod_spec(grafana)["volumes"] if "configMap" in v
    }
    mounted = {
        m["mountPath"]: manifests.config_map_data(volumes[m["name"]])
        for m in container["volumeMounts"]
        if m["name"] in volumes
    }
    dashboards = {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    (provider,) = yaml.safe_load(
        (GRAFANA_PROVISIONING / "dashboards" / "distreward.yaml").read_text()
    )["providers"]
    assert dashboards and mounted[provider["options"]["path"]] == dashboards
    for kind in ("dashboards", "datasources"):
        files = {p.name: p.read_text() for p in (GRAFANA_PROVISIONING / kind).iterdir()}
        assert mounted[f"/etc/grafana/provisioning/{kind}"] == files
    env = manifests.environment(container)
    assert env == compose("gpu")["grafana"]["environment"]
    # The data source's address is the Prometheus Service of the namespace.
    (source,) = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "prometheus.yaml").read_text()
    )["datasources"]
    address = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"])
    assert address
    (exposed,) = manifests.get("Service", address.group(1))["spec"]["ports"]
    assert exposed["port"] == int(address.group(2))

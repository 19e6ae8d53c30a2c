"""The cluster's Prometheus config: promtool accepts it, and its DNS service discovery names the
compose service and port every replica listens on (also what the load balancer resolves)."""

from __future__ import annotations

import re

from cluster_support import DOCKER, ROOT, load_yaml, run_tool, tool

CONFIG = DOCKER / "prometheus" / "prometheus.yml"


def test_promtool_accepts_the_config() -> None:
    out = run_tool(tool("promtool"), "check", "config", CONFIG)
    assert "SUCCESS" in out


def test_replicas_are_found_by_dns_on_the_service_port() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(CONFIG)["scrape_configs"]}
    (sd,) = jobs["reward-service"]["dns_sd_configs"]
    assert "static_configs" not in jobs["reward-service"]
    compose = load_yaml(ROOT / "compose.yaml")
    port = int(compose["services"]["reward-service"]["environment"]["DISTREWARD_PORT"])
    assert (sd["names"], sd["type"], sd["port"]) == (["reward-service"], "A", port)


def test_load_balancer_resolves_the_replicas_through_the_container_dns() -> None:
    """nginx asks the container's own DNS server only (the first nameserver: Docker's 127.0.0.11
    or podman's gateway; the image's entrypoint fills the template with it) and resolves the
    service name per request through a variable, which every nginx version supports."""
    template = (DOCKER / "nginx" / "templates" / "default.conf.template").read_text()
    assert re.search(r"^resolver \$\{DISTREWARD_RESOLVER\} valid=5s", template, re.MULTILINE)
    assert re.search(r"^\s*set \$reward_service reward-service;", template, re.MULTILINE)
    assert re.search(r"^\s*proxy_pass http://\$reward_service:8000;", template, re.MULTILINE)
    lb = load_yaml(ROOT / "compose.yaml")["services"]["lb"]
    assert "./docker/nginx/templates:/etc/nginx/templates:ro" in lb["volumes"]
    script = "18-cluster-resolver.envsh"
    assert f"./docker/nginx/{script}:/docker-entrypoint.d/{script}:ro" in lb["volumes"]
    assert (DOCKER / "nginx" / script).stat().st_mode & 0o111  # the entrypoint sources it if +x

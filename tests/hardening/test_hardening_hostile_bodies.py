"""Hostile request bodies from ordinary tokens, on a real service process with its defaults.

* One long JSON number (16 MiB of ``0.000…0``) is a 400 naming its length, and the process grows
  by the body and the decoder's bounded temporaries: numbers may take 400 characters, and the
  decoder reads any text in blocks (it grew by 370 MiB, and answered 200, before).
* Whitespace, inside a JSON array or after it, costs the event loop no more than an ordinary
  body of its size: the body is split and decoded in worker threads, block by block (the event
  loop parsed it byte by byte before, 32 MiB in 1.4 to 2.2 s).
* Idle bodies: chunked bodies that send nothing hold nothing, so other tokens are served at
  once (four of them reserved the whole decode budget before, and a third token got 429), and
  a body that sends nothing for ``DISTREWARD_BODY_IDLE_TIMEOUT_SECONDS`` is answered 408 and
  gives back its token's share.
* JSON targets are admitted like every array body: the token's share of requests in flight,
  memory reserved as the body arrives, decoded without Python lists (pydantic's lists grew the
  process by 11x the body before, outside any share).
* A member named twice, or a member name written with escapes, is a 400 on every route that
  reads a JSON body (the array routes read the first copy before, where JSON reads the last).

Memory is the process's own peak (``VmHWM``, reset through ``/proc/PID/clear_refs``) less its
resident set before; the event loop's cost is the CPU time of the process's main thread. No
wall-clock time is asserted.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_support import ADMIN_TOKEN, SPACE, TRAINER_TOKEN, ServiceProcess, npy, service_process

from reward_service.settings import Settings

pytestmark = pytest.mark.slow

D = 8
MIB = 2**20
TOKENS = (TRAINER_TOKEN, "hostile-bodies-trainer-token-b", "hostile-bodies-trainer-token-c")
REWARDS = "/v1/references/ref/rewards"
_ROW = b"[" + b",".join([b"1"] * D) + b"]"
ONE_GROUP = b"[[" + _ROW + b"," + _ROW + b"]]"  # G = 1 group of K = 2 rows of d


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service with three trainer tokens and the reference ``ref`` (d = 8), at its defaults."""
    log = tmp_path_factory.mktemp("hostile-bodies") / "service.log"
    process = service_process("", log, DISTREWARD_TOKENS=",".join(TOKENS))
    try:
        process.wait_ready(timeout=120)
        rng = np.random.default_rng(0)
        for part, rows in (
            ("target", rng.normal(0.3, 1.0, (256, D))),
            ("pool", rng.normal(size=(64, D))),
        ):
            answer = _send(
                process,
                "PUT",
                f"/v1/references/ref/{part}",
                npy(rows),
                ADMIN_TOKEN,
                "application/x-npy",
            )
            assert answer.status_code == 200, answer.text
        yield process
    finally:
        process.stop(timeout=30)


def _send(
    service: ServiceProcess,
    method: str,
    path: str,
    body: bytes,
    token: str = TRAINER_TOKEN,
    kind: str = "application/json",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": kind, "Feature-Space": SPACE}
    with httpx.Client(timeout=600) as client:
        return client.request(method, service.url + path, content=body, headers=headers)


def _rewards(groups: bytes) -> bytes:
    return b'{"groups": ' + groups + b"}"


@dataclass
class Growth:
    bytes: int = 0


@contextmanager
def _peak_growth(service: ServiceProcess) -> Iterator[Growth]:
    """How far the process's resident memory rose above its level at the start of the block."""
    status = Path(f"/proc/{service.process.pid}/status")

    def kib(field: str) -> int:
        line = next(line for line in status.read_text().splitlines() if line.startswith(field))
        return int(line.split()[1]) * 1024

    Path(f"/proc/{service.process.pid}/clear_refs").write_text("5")  # peak := current
    before = kib("VmRSS:")
    growth = Growth()
    yield growth
    growth.bytes = kib("VmHWM:") - before


def _loop_cpu_seconds(
    service: ServiceProcess, send: Callable[[], httpx.Response]
) -> tuple[float, httpx.Response]:
    """The CPU time the service's event loop (its main thread) spent while ``send`` ran, and
    the answer. Read from the scheduler's per-thread run time (ns), else from the thread's
    user and system time (ticks)."""
    task = Path(f"/proc/{service.process.pid}/task/{service.process.pid}")

    def seconds() -> float:
        schedstat = task / "schedstat"
        if schedstat.exists():
            return int(schedstat.read_text().split()[0]) / 1e9
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100

    before = seconds()
    answer = send()
    return seconds() - before, answer


class IdleBody:
    """A request on its own connection whose chunked body never sends a byte, once admitted:
    it asks ``Expect: 100-continue``, which the service answers when it starts reading the
    body, past its admission (on a busy machine a later request could otherwise overtake it)."""

    def __init__(
        self, service: ServiceProcess, path: str, token: str, kind: str = "application/x-npy"
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", service.port), timeout=120)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Feature-Space: {SPACE}\r\nContent-Type: {kind}\r\nTransfer-Encoding: chunked\r\n"
            "Expect: 100-continue\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        self.received = b""
        status, _ = self._head()
        assert status == 100, self.received

    def _head(self) -> tuple[int, bytes]:
        """The next answer's status and head; what follows it stays in ``received``."""
        while b"\r\n\r\n" not in self.received:
            self.received += self.sock.recv(65536)
        head, self.received = self.received.split(b"\r\n\r\n", 1)
        return int(head.split()[1]), head

    def answer(self) -> tuple[int, str, bytes]:
        """Status, body and what follows (b"" once the service closed the connection)."""
        status, head = self._head()
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(self.received) < length:
            self.received += self.sock.recv(65536)
        after = self.sock.recv(65536)  # the service closes: b""
        return status, self.received[:length].decode(), after

    def close(self) -> None:
        self.sock.close()


def test_one_long_json_number_is_refused_in_the_memory_of_its_body(service: ServiceProcess) -> None:
    number = b"0." + b"0" * (16 * MIB)
    groups = (
        b"[[["
        + number
        + b","
        + b",".join([b"1"] * (D - 1))
        + b"],["
        + b",".join([b"1"] * D)
        + b"]]]"
    )
    with _peak_growth(service) as growth:
        answer = _send(service, "POST", REWARDS, _rewards(groups))
    assert answer.status_code == 400, answer.text[:200]
    assert "characters; JSON numbers may take at most 400" in answer.json()["detail"]
    # The 16 MiB body, held once, and the decoder's temporaries (6 MiB); 370 MiB before.
    assert growth.bytes < 64 * MIB, f"{growth.bytes / MIB:.0f} MiB"


def test_a_number_as_long_as_a_float64_can_be_written_is_read_exactly(
    service: ServiceProcess,
) -> None:
    longest = np.format_float_positional(5e-324)
    groups = (
        b"[[["
        + longest.encode()
        + b","
        + b",".join([b"1"] * (D - 1))
        + b"],["
        + b",".join([b"1"] * D)
        + b"]]]"
    )
    answer = _send(service, "POST", REWARDS, _rewards(groups))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("where", "status"),
    [("inside", 200), ("trailing", 413)],
)
def test_whitespace_costs_the_event_loop_no_more_than_an_ordinary_body(
    service: ServiceProcess, where: str, status: int
) -> None:
    """32 MiB of spaces inside the array (valid JSON, decoded) or after it (beyond the members'
    limit: 413): the event loop spends on it what it spends on any body of its size, receiving
    it (an ordinary body of the same size, refused by the members' limit, measures that)."""
    spaces = b" " * (32 * MIB)
    plain = _rewards(ONE_GROUP)
    if where == "inside":
        hostile = _rewards(b"[" + spaces + ONE_GROUP[1:])
    else:
        hostile = plain[:-1] + spaces + b"}"
    padding = b', "padding": "' + b"x" * (len(hostile) - len(plain) - 15) + b'"'
    ordinary = plain[:-1] + padding + b"}"
    assert len(ordinary) == len(hostile)
    ordinary_cpu, answer = _loop_cpu_seconds(
        service, lambda: _send(service, "POST", REWARDS, ordinary)
    )
    assert answer.status_code == 413 and "DISTREWARD_MAX_JSON_FIELDS_BYTES" in answer.text
    hostile_cpu, answer = _loop_cpu_seconds(
        service, lambda: _send(service, "POST", REWARDS, hostile)
    )
    assert answer.status_code == status, answer.text[:200]
    # Before: 1.4 s (after) and 2.2 s (inside) of event loop for 32 MiB, against 0.03 s.
    assert hostile_cpu < 2 * ordinary_cpu + 0.1, (hostile_cpu, ordinary_cpu)


def test_idle_bodies_hold_nothing_and_time_out_with_408(service: ServiceProcess) -> None:
    """Two tokens open chunked ``.npy`` bodies that send nothing (two each, then the first its
    whole share of requests in flight); a third token is served at once, the first is refused
    only for its own share (429), and once the idle timeout has passed every idle body has been
    answered 408 and its connection closed, and both tokens are served again."""
    a, b, c = TOKENS
    idle = [IdleBody(service, REWARDS, token) for token in (a, a, b, b)]
    try:
        groups = npy(np.ones((1, 2, D)))
        answer = _send(service, "POST", REWARDS, groups, c, "application/x-npy")
        assert answer.status_code == 200, answer.text  # 429 before: the budget was reserved
        idle += [IdleBody(service, REWARDS, a) for _ in range(2)]
        answer = _send(service, "POST", REWARDS, groups, a, "application/x-npy")
        assert answer.status_code == 429 and "DISTREWARD_TOKEN_MAX_IN_FLIGHT" in answer.text
        for body in idle:  # each answered within the timeout of its request's start
            status, detail, after = body.answer()
            assert status == 408, detail
            assert "DISTREWARD_BODY_IDLE_TIMEOUT_SECONDS" in detail and after == b""
        for token in (a, b):
            answer = _send(service, "POST", REWARDS, groups, token, "application/x-npy")
            assert answer.status_code == 200, answer.text
    finally:
        for body in idle:
            body.close()


def test_the_idle_timeout_defaults_to_at_most_30_seconds() -> None:
    assert Settings.model_fields["body_idle_timeout_seconds"].default <= 30


def test_a_json_target_is_admitted_and_decoded_without_python_lists(
    service: ServiceProcess,
) -> None:
    """A 32 MiB JSON ``features`` target grows the process by about its body and its float64
    array (pydantic's lists: 350 MiB before), and counts in its token's share of requests in
    flight like every array body (it was not admitted at all before)."""
    rows = np.round(np.random.default_rng(1).normal(0.3, 1.0, (400_000, D)), 6)
    body = json.dumps({"features": rows.tolist()}).encode()
    assert 30 * MIB < len(body) < 34 * MIB
    with _peak_growth(service) as growth:
        answer = _send(service, "PUT", "/v1/references/json-target/target", body, ADMIN_TOKEN)
    assert answer.status_code == 200, answer.text
    # The body (32 MiB), the array (24 MiB), the decoder's temporaries and the fit's own.
    assert growth.bytes < 128 * MIB, f"{growth.bytes / MIB:.0f} MiB"
    idle = [IdleBody(service, "/v1/references/ref/pool", ADMIN_TOKEN) for _ in range(4)]
    try:
        small = json.dumps({"mu": [0.0] * D, "sigma": np.eye(D).tolist()}).encode()
        answer = _send(service, "PUT", "/v1/references/json-target/target", small, ADMIN_TOKEN)
        assert answer.status_code == 429 and "DISTREWARD_TOKEN_MAX_IN_FLIGHT" in answer.text
    finally:
        for body in idle:
            body.close()
    for _ in range(300):  # the service frees the share as it sees the connections close
        answer = _send(service, "PUT", "/v1/references/json-target/target", small, ADMIN_TOKEN)
        if answer.status_code != 429:
            break
    assert answer.status_code == 200, answer.text


GROUPS = b"[[[" + b",".join([b"1"] * D) + b"],[" + b",".join([b"2"] * D) + b"]]]"
OTHER = b"[[[" + b",".join([b"3"] * D) + b"],[" + b",".join([b"4"] * D) + b"]]]"


@pytest.mark.parametrize(
    ("method", "path", "body", "words"),
    [
        (
            "POST",
            REWARDS,
            b'{"groups": ' + GROUPS + b', "groups": ' + OTHER + b"}",
            "'groups' appears more than once",
        ),
        (
            "POST",
            REWARDS,
            b'{"groups": ' + GROUPS + b', "group\\u0073": ' + OTHER + b"}",
            "written with escapes",
        ),
        (
            "POST",
            REWARDS,
            b'{"groups": ' + GROUPS + b', "seed": 1, "seed": 2}',
            '"seed" appears more than once',
        ),
        ("POST", REWARDS, b'{"groups": ' + GROUPS + b', "s\\u0065ed": 1}', "written with escapes"),
        (
            "POST",
            "/v1/references/ref/fd",
            b'{"features": [[1,2,3,4,5,6,7,8], [1,1,1,1,1,1,1,1]], "features": [[0]]}',
            "'features' appears more than once",
        ),
        (
            "PUT",
            "/v1/references/ref/target",
            b'{"mu": [0,0,0,0,0,0,0,0], "sigma": [[1]], "m\\u0075": [1,1,1,1,1,1,1,1]}',
            "written with escapes",
        ),
    ],
)
def test_member_names_json_reads_differently_are_refused_everywhere(
    service: ServiceProcess, method: str, path: str, body: bytes, words: str
) -> None:
    json.loads(body)  # valid JSON, which json reads (the last copy, the escape decoded)
    token = ADMIN_TOKEN if path.endswith("target") else TRAINER_TOKEN
    answer = _send(service, method, path, body, token)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["detail"]

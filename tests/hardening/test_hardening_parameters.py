"""Parameters and idempotency keys, against real service processes on loopback:

* parameters come from one place per wire format: a query parameter beside a JSON body, or one
  a route does not take beside a ``.npy`` body, is a 400 that names it, never ignored (ignored,
  ``?commit_fraction=1.0`` committed nothing and ``?row=3`` replaced another row);
* a request is refused by its parameters and headers before its body is read: a malformed one
  whose 200 MB body never arrives is answered at once, with the answer that names what is wrong.

No timing is asserted: a refusal "at once" is one that comes while the body is still missing,
however long the machine takes to send it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from service_support import (
    ADMIN_TOKEN,
    TRAINER_TOKEN,
    ApiAt,
    D,
    ServiceProcess,
    clients,
    service_process,
)

pytestmark = pytest.mark.asyncio

OTHER_TOKEN = "trainer-token-for-tests-0002"  # a second trainer job
ANSWER_SECONDS = 120  # a refusal needs no body; this only ends the test if the service waits
DECLARED = 200 * 2**20  # a body within the default 256 MiB limit that is never sent


def _start(redis_url: str, log: Path) -> ServiceProcess:
    process = service_process(redis_url, log, DISTREWARD_TOKENS=f"{TRAINER_TOKEN},{OTHER_TOKEN}")
    process.wait_ready()
    return process


@pytest.fixture(scope="module")
def memory_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = _start("", tmp_path_factory.mktemp("parameters") / "service.log")
    yield process
    process.stop()


async def _reference(api: ApiAt) -> str:
    """A fresh reference (d = D, feature space "unknown": no header needed) of its own name."""
    name = f"ref-{uuid.uuid4().hex[:12]}"
    await api.create(name, np.random.default_rng(7))
    return name


async def _version(api: ApiAt, name: str) -> int:
    answer = await api.info(name)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["version"])


# -- parameters come from one place per wire format ----------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "field", "query"),
    [
        ("POST", "rewards", "groups", {"commit_fraction": "1.0"}),  # the commit
        ("POST", "credits", "samples", {"row": "3", "seed": "1"}),  # the row
        ("POST", "commit", "features", {"seed": "1"}),
        ("POST", "fd", "features", {"version": "0"}),
        ("PUT", "pool", "features", {"final": "false"}),  # would have published the chunk
    ],
)
async def test_a_query_parameter_beside_a_json_body_is_a_400_naming_it(
    memory_service: ServiceProcess, method: str, route: str, field: str, query: dict[str, str]
) -> None:
    rng = np.random.default_rng(1)
    array = rng.normal(size=(2, 4, D) if route == "rewards" else (4, D))
    async with clients(memory_service) as (api,):
        name = await _reference(api)
        before = await _version(api, name)
        answer = await api.send(
            method,
            f"/v1/references/{name}/{route}",
            binary=False,
            json_fields={field: array.tolist()},
            params=query,
            headers={"Idempotency-Key": f"{route}-key"},
            token=ADMIN_TOKEN if route == "pool" else TRAINER_TOKEN,
        )
        assert answer.status_code == 400, answer.text
        detail = answer.json()["detail"]
        assert all(parameter in detail for parameter in query), detail
        assert "JSON body" in detail
        assert await _version(api, name) == before  # nothing committed, nothing published


async def test_the_same_parameters_as_json_members_are_honoured(
    memory_service: ServiceProcess,
) -> None:
    """The refusals above are of the place, not of the parameters: as members they work."""
    rng = np.random.default_rng(2)
    async with clients(memory_service) as (api,):
        name = await _reference(api)
        path = f"/v1/references/{name}"
        rewards = await api.send(
            "POST",
            f"{path}/rewards",
            binary=False,
            json_fields={"groups": rng.normal(size=(2, 4, D)).tolist(), "commit_fraction": 1.0},
            headers={"Idempotency-Key": "members"},
            token=TRAINER_TOKEN,
        )
        assert rewards.status_code == 200, rewards.text
        assert rewards.json()["committed"]["rows"] == 8
        credits = await api.send(
            "POST",
            f"{path}/credits",
            binary=False,
            json_fields={"samples": rng.normal(size=(4, D)).tolist(), "form": "replace", "row": 3},
            token=TRAINER_TOKEN,
        )
        assert credits.status_code == 200, credits.text
        assert credits.json()["row"] == 3


async def test_a_query_parameter_a_route_does_not_take_is_a_400_naming_it(
    memory_service: ServiceProcess,
) -> None:
    """Beside a ``.npy`` body: a misspelt ``commit_fraction`` would commit nothing, and a key
    in the query (it travels in its header) would be lost."""
    rng = np.random.default_rng(3)
    async with clients(memory_service) as (api,):
        name = await _reference(api)
        path = f"/v1/references/{name}"
        before = await _version(api, name)
        misspelt = await api.send(
            "POST",
            f"{path}/credits",
            rng.normal(size=(4, D)),
            params={"commit_fractoin": "1.0"},
            headers={"Idempotency-Key": "misspelt"},
            token=TRAINER_TOKEN,
        )
        assert misspelt.status_code == 400, misspelt.text
        detail = misspelt.json()["detail"]
        assert "commit_fractoin" in detail and "commit_fraction" in detail  # and what it takes
        keyed = await api.send(
            "POST",
            f"{path}/commit",
            rng.normal(size=(2, D)),
            params={"idempotency_key": "k"},
            headers={"Idempotency-Key": "k"},
            token=TRAINER_TOKEN,
        )
        assert keyed.status_code == 400 and "idempotency_key" in keyed.json()["detail"]
        assert await _version(api, name) == before


async def test_a_json_key_and_a_different_key_header_are_a_400(
    memory_service: ServiceProcess,
) -> None:
    rng = np.random.default_rng(4)
    async with clients(memory_service) as (api,):
        name = await _reference(api)
        answer = await api.send(
            "POST",
            f"/v1/references/{name}/credits",
            binary=False,
            json_fields={
                "samples": rng.normal(size=(4, D)).tolist(),
                "commit_fraction": 1.0,
                "idempotency_key": "in-the-body",
            },
            headers={"Idempotency-Key": "in-the-header"},
            token=TRAINER_TOKEN,
        )
        assert answer.status_code == 400 and "Idempotency-Key" in answer.json()["detail"]
        assert await _version(api, name) == 1  # the pool's version: nothing committed


# -- parameters and headers are checked before the body -------------------------------------


async def _answer_without_body(url: str, head: str) -> tuple[int, str]:
    """Send ``head`` (request line and headers) and none of the body it announces; the answer
    that comes anyway (status, body). The connection is closed after it."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(head.encode("latin-1"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), ANSWER_SECONDS)
        assert status_line, "the service closed the connection without an answer"
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), ANSWER_SECONDS)) != b"\r\n":
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        body = await asyncio.wait_for(
            reader.readexactly(int(headers["content-length"])), ANSWER_SECONDS
        )
        return int(status_line.split()[1]), body.decode()
    finally:
        writer.close()
        await writer.wait_closed()


def _head(url: str, target: str, headers: dict[str, str], *, chunked: bool) -> str:
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(DECLARED)}
    lines = [f"POST {target} HTTP/1.1", f"Host: {urlsplit(url).netloc}"]
    lines += [f"{key}: {value}" for key, value in {**headers, **framing}.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


NPY_TYPE = {"Content-Type": "application/x-npy"}
JSON_TYPE = {"Content-Type": "application/json"}


@pytest.mark.parametrize("chunked", [False, True], ids=["declared-200MB", "chunked"])
@pytest.mark.parametrize(
    ("route", "query", "headers", "status", "named"),
    [
        ("rewards", "seed=-1", NPY_TYPE, 422, "seed"),
        ("rewards", "mode=zzz", NPY_TYPE, 422, "mode"),
        ("credits", "row=-1", NPY_TYPE, 422, "row"),
        ("credits", "", {**NPY_TYPE, "Feature-Space": "two words"}, 422, "Feature-Space"),
        ("commit", "", {**JSON_TYPE, "Feature-Space": "x" * 300}, 422, "Feature-Space"),
        ("commit", "", NPY_TYPE, 422, "Idempotency-Key"),  # required, missing
        ("rewards", "commit_fraction=1.0", JSON_TYPE, 400, "commit_fraction"),
        ("fd", "sede=1", NPY_TYPE, 400, "sede"),
    ],
)
async def test_a_bad_parameter_is_refused_before_its_body_arrives(
    memory_service: ServiceProcess,
    route: str,
    query: str,
    headers: dict[str, str],
    status: int,
    named: str,
    chunked: bool,
) -> None:
    """The body is announced (200 MB, or chunked) and never sent: the answer comes anyway, and
    it is the refusal of the parameter. Before, the service reserved the body's memory and
    waited for it, then refused the parameter only once all of it had arrived."""
    async with clients(memory_service) as (api,):
        name = await _reference(api)
    url = memory_service.url
    target = f"/v1/references/{name}/{route}" + (f"?{query}" if query else "")
    sent = {"Authorization": f"Bearer {TRAINER_TOKEN}", **headers}
    code, body = await _answer_without_body(url, _head(url, target, sent, chunked=chunked))
    assert code == status, body
    assert named in body


async def test_a_good_request_after_refused_ones_is_served(memory_service: ServiceProcess) -> None:
    """Refusals that came before their bodies left nothing reserved behind them: the token's
    share of requests in flight and the decode memory are whole again."""
    async with clients(memory_service) as (api,):
        name = await _reference(api)
        url = memory_service.url
        target = f"/v1/references/{name}/rewards?seed=-1"
        sent = {"Authorization": f"Bearer {TRAINER_TOKEN}", **NPY_TYPE}
        refusals = await asyncio.gather(
            *(_answer_without_body(url, _head(url, target, sent, chunked=True)) for _ in range(8))
        )
        assert [code for code, _ in refusals] == [422] * 8
        groups = np.random.default_rng(5).normal(size=(2, 4, D)).astype(np.float32)
        answer = await api.send(
            "POST", f"/v1/references/{name}/rewards", groups, token=TRAINER_TOKEN
        )
        assert answer.status_code == 200, answer.text

"""Parameters and idempotency keys, against real service processes on loopback:

* parameters come from one place per wire format: a query parameter beside a JSON body, or one
  a route does not take beside a ``.npy`` body, is a 400 that names it, never ignored (ignored,
  ``?commit_fraction=1.0`` committed nothing and ``?row=3`` replaced another row);
* a request is refused by its parameters and headers before its body is read: a malformed one
  whose 200 MB body never arrives is answered at once, with the answer that names what is wrong;
* idempotency keys are each token's own, on the memory store and on Redis: another token's key
  is another key (no ``"replayed": true`` that would tell it what the first token sent), and a
  key reused with another request is a 409 whatever its ``commit_fraction``, a share that drew
  no row included.

No timing is asserted: a refusal "at once" is one that comes while the body is still missing,
however long the machine takes to send it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import pytest_asyncio
from service_support import (
    ADMIN_TOKEN,
    TRAINER_TOKEN,
    ApiAt,
    D,
    RedisServer,
    ServiceProcess,
    clients,
    record,
    service_process,
)

from reward_service.store import MemoryStore, Store, StoreConflict
from reward_service.store.base import Target
from reward_service.store.redis import RedisStore

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


@pytest.fixture(scope="module")
def redis_service(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    redis_server.flushall()
    process = _start(redis_server.url, tmp_path_factory.mktemp("parameters") / "redis.log")
    yield process
    process.stop()


@pytest.fixture(params=["memory", "redis"])
def service(request: pytest.FixtureRequest) -> ServiceProcess:
    """A service process on either store (references of their own names: no flush between)."""
    process = request.getfixturevalue(f"{request.param}_service")
    assert isinstance(process, ServiceProcess)
    return process


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


# -- idempotency keys are each token's own --------------------------------------------------


async def _commit(api: ApiAt, name: str, rows: np.ndarray, key: str, token: str) -> dict:
    answer = await api.send(
        "POST",
        f"/v1/references/{name}/commit",
        rows,
        headers={"Idempotency-Key": key},
        token=token,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_another_tokens_key_is_another_key(service: ServiceProcess) -> None:
    """Token B sending A's key and rows commits them as its own (no replay of A's commit, so
    nothing tells B what A sent), and A's retry still replays A's."""
    rows = np.random.default_rng(6).normal(size=(2, D)).astype(np.float32)
    async with clients(service) as (api,):
        name = await _reference(api)
        first = await _commit(api, name, rows, "shared-key", TRAINER_TOKEN)
        assert first["replayed"] is False
        other = await _commit(api, name, rows, "shared-key", OTHER_TOKEN)
        assert other["replayed"] is False and other["version"] == first["version"] + 1
        retry = await _commit(api, name, rows, "shared-key", TRAINER_TOKEN)
        assert retry["replayed"] is True and retry["version"] == first["version"]
        # B's key with other rows is B's own conflict; A's key stays A's.
        refused = await api.send(
            "POST",
            f"/v1/references/{name}/commit",
            rows + 1,
            headers={"Idempotency-Key": "shared-key"},
            token=OTHER_TOKEN,
        )
        assert refused.status_code == 409, refused.text
        assert await _version(api, name) == other["version"]


async def test_another_tokens_share_key_is_another_key(service: ServiceProcess) -> None:
    samples = np.random.default_rng(8).normal(size=(6, D))
    async with clients(service) as (api,):
        name = await _reference(api)
        path = f"/v1/references/{name}/credits"
        committed = []
        for token in (TRAINER_TOKEN, OTHER_TOKEN, TRAINER_TOKEN):
            answer = await api.send(
                "POST",
                path,
                samples,
                params={"commit_fraction": "1.0", "seed": "3"},
                headers={"Idempotency-Key": "share-key"},
                token=token,
            )
            assert answer.status_code == 200, answer.text
            committed.append(answer.json()["committed"])
        first, other, retry = committed
        assert (first["replayed"], other["replayed"], retry["replayed"]) == (False, False, True)
        assert other["version"] == first["version"] + 1 and retry["version"] == first["version"]


async def _credits(
    api: ApiAt, name: str, samples: np.ndarray, key: str, fraction: str
) -> tuple[int, dict]:
    answer = await api.send(
        "POST",
        f"/v1/references/{name}/credits",
        samples,
        params={"commit_fraction": fraction},
        headers={"Idempotency-Key": key},
        token=TRAINER_TOKEN,
    )
    return answer.status_code, dict(answer.json())


async def test_a_reused_key_with_another_request_is_a_409_whatever_the_fraction(
    service: ServiceProcess,
) -> None:
    """``commit_fraction=1e-300`` draws no row, and so skipped the key's check: a key used for a
    commit came back 200 with another request. Now a share's key is remembered with its
    request whatever it drew, and any other request under it is a 409."""
    rng = np.random.default_rng(9)
    samples, others = rng.normal(size=(6, D)), rng.normal(size=(6, D))
    async with clients(service) as (api,):
        name = await _reference(api)
        committed = await _commit(api, name, samples[:2], "used", TRAINER_TOKEN)
        status, body = await _credits(api, name, others, "used", "1e-300")
        assert status == 409, body
        assert "used" in body["detail"]

        # A share that drew no row: its key is taken all the same.
        status, body = await _credits(api, name, samples, "tiny", "1e-300")
        assert status == 200 and body["committed"] is None, body
        status, body = await _credits(api, name, samples, "tiny", "1e-300")  # a retry
        assert status == 200 and body["committed"] is None, body
        for sent, fraction in ((others, "1e-300"), (others, "1.0"), (samples, "0.5")):
            status, body = await _credits(api, name, sent, "tiny", fraction)
            assert status == 409, (fraction, body)

        # A share that drew rows: its retry replays, another request under its key is a 409.
        status, body = await _credits(api, name, samples, "whole", "1.0")
        assert status == 200 and body["committed"]["replayed"] is False, body
        version = body["committed"]["version"]
        status, body = await _credits(api, name, samples, "whole", "1.0")
        assert status == 200, body
        assert body["committed"]["replayed"] is True and body["committed"]["version"] == version
        status, body = await _credits(api, name, samples, "whole", "1e-300")
        assert status == 409, body
        assert await _version(api, name) == version == committed["version"] + 1


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    backing: Store = (
        RedisStore.from_url(request.getfixturevalue("redis_url"))
        if request.param == "redis"
        else MemoryStore()
    )
    yield backing
    await backing.close()


async def test_the_stores_keep_keys_per_caller(store: Store) -> None:
    """The store's side of the scoping: the same key of two callers is two keys, and a record of
    no rows (a share that drew none) remembers its key at the current version, appending
    nothing."""
    rng = np.random.default_rng(10)
    meta = await store.put_target("r", Target(np.zeros(D), np.eye(D)), 1.0, feature_space="s")
    await store.stage_pool("r", meta.incarnation, rng.normal(size=(8, D)), reset=True)
    assert await store.publish_pool("r", meta.incarnation, now=2.0) == 1
    rows = rng.normal(size=(2, D))
    a = await store.append_commit("r", meta.incarnation, record(rows, "k", caller="a" * 64))
    b = await store.append_commit("r", meta.incarnation, record(rows, "k", caller="b" * 64))
    assert (a.version, a.replayed, b.version, b.replayed) == (2, False, 3, False)
    again = await store.append_commit("r", meta.incarnation, record(rows, "k", caller="a" * 64))
    assert (again.version, again.replayed) == (2, True)

    nothing = record(np.empty((0, D)), "empty", caller="a" * 64)
    held = await store.append_commit("r", meta.incarnation, nothing)
    assert (held.version, held.replayed) == (3, False)
    assert (await store.append_commit("r", meta.incarnation, nothing)).replayed is True
    with pytest.raises(StoreConflict, match="another commit"):
        await store.append_commit("r", meta.incarnation, record(rows, "empty", caller="a" * 64))
    stored = await store.read_meta("r")
    assert stored is not None and stored.version == 3
    log = await store.read_log("r", (await store.read_base("r")).log_id)
    assert [entry.version for entry in log] == [2, 3]  # the record of no rows appended nothing

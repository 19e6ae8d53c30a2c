"""A trainer's commits cannot send other tokens' rewards to the exact path unpriced.

On a real service process on loopback (two trainer tokens, the memory store):

* a commit that would make a regular pool numerically singular for the low-rank path (N rows
  of one value, or the last of many small commits that leaves fewer than d + 1 distinct rows)
  is refused 409, saying why, and changes nothing: the other token's rewards stay on the
  low-rank path. Before, the commit was stored and every later group of every token ran exact
  (d = 512, N = 4096: 16 x 16 rewards 0.05 s -> 0.48 s);
* a pool singular by nature (N <= d) keeps taking commits, and its rewards and credits are
  priced as the exact path they run: over the bound, 413 saying why. The process runs with
  ``DISTREWARD_MAX_REQUEST_GFLOP=1`` so that requests at d = 256 cross it (priced as low-rank,
  as before, they were admitted at a sixth of it).

Exact fallbacks (groups the low-rank path could not certify) count against the requesting
token's compute share: driven directly on :class:`ComputeSlots`, and through an in-process
service whose groups fall back.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from service_support import ADMIN_TOKEN, TRAINER_TOKEN, make_settings, npy, service_process

from reward_service.admission import ComputeSlots, _caller
from reward_service.app import create_app
from reward_service.cost import turns_taken
from support.launch import ServiceProcess

OTHER_TOKEN = "other-trainer-token-for-tests-01"
NPY = "application/x-npy"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = service_process(
        "",
        tmp_path_factory.mktemp("degenerate") / "service.log",
        DISTREWARD_TOKENS=f"{TRAINER_TOKEN},{OTHER_TOKEN}",
        DISTREWARD_MAX_REQUEST_GFLOP="1",
    )
    try:
        process.wait_ready(timeout=120)
        yield process
    finally:
        process.stop(timeout=30)


def _send(
    client: httpx.Client,
    method: str,
    path: str,
    array: np.ndarray | None = None,
    *,
    token: str = ADMIN_TOKEN,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Authorization": f"Bearer {token}", **(headers or {})}
    if array is None:
        return client.request(method, path, headers=sent, params=params)
    sent["Content-Type"] = NPY
    return client.request(method, path, content=npy(array), headers=sent, params=params)


def _create(client: httpx.Client, name: str, rng: np.random.Generator, d: int, n: int) -> None:
    """A reference whose target is fitted to shifted features and whose pool holds n rows."""
    base = f"/v1/references/{name}"
    target = _send(
        client,
        "PUT",
        f"{base}/target",
        rng.normal(0.3, 1.0, size=(4 * d, d)),
        params={"accept_unknown_feature_space": "true"},
    )
    assert target.status_code == 200, target.text
    pool = _send(client, "PUT", f"{base}/pool", rng.normal(size=(n, d)).astype(np.float32))
    assert pool.status_code == 200, pool.text


def _commit(client: httpx.Client, name: str, rows: np.ndarray, key: str) -> httpx.Response:
    return _send(
        client,
        "POST",
        f"/v1/references/{name}/commit",
        rows,
        token=TRAINER_TOKEN,
        headers={"Idempotency-Key": key},
    )


def _version(client: httpx.Client, name: str) -> int:
    return int(_send(client, "GET", f"/v1/references/{name}").json()["version"])


def _methods(client: httpx.Client, name: str, groups: np.ndarray) -> list[str]:
    """The other token's rewards of ``groups``: the path each group took."""
    answer = _send(
        client,
        "POST",
        f"/v1/references/{name}/rewards",
        groups,
        token=OTHER_TOKEN,
        params={"seed": "7"},
    )
    assert answer.status_code == 200, answer.text
    methods: list[str] = answer.json()["methods_used"]
    return methods


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=120) as http:
        yield http


def test_a_commit_of_n_equal_rows_is_refused_and_others_stay_on_the_lowrank_path(
    client: httpx.Client,
) -> None:
    rng = np.random.default_rng(0)
    d, n = 128, 1024
    _create(client, "all-equal", rng, d, n)
    groups = rng.normal(size=(8, 4, d))
    assert _methods(client, "all-equal", groups) == ["lowrank"] * 8
    before = _version(client, "all-equal")
    refused = _commit(client, "all-equal", np.zeros((n, d)), "all-equal-1")
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    for words in ("numerically singular", "exact path", "pool is unchanged"):
        assert words in detail, detail
    assert _version(client, "all-equal") == before
    assert _methods(client, "all-equal", groups) == ["lowrank"] * 8


def test_small_commits_are_refused_at_the_one_that_would_make_the_pool_singular(
    client: httpx.Client,
) -> None:
    rng = np.random.default_rng(1)
    d, n, k = 128, 1024, 64
    _create(client, "drift", rng, d, n)
    before = _version(client, "drift")
    statuses = []
    for step in range(n // k):
        answer = _commit(client, "drift", np.zeros((k, d)), f"drift-{step}")
        statuses.append(answer.status_code)
        if answer.status_code != 200:
            assert answer.status_code == 409 and "numerically singular" in answer.text
            break
    # R pool rows left beside the zeros span R directions: regular while R >= d = 128, so 14
    # commits of 64 (R = 128) are taken and the 15th (R = 64) is refused.
    assert statuses == [200] * 14 + [409]
    assert _version(client, "drift") == before + 14
    # Rows that restore the spread are taken, and the pool serves on the low-rank path.
    assert _commit(client, "drift", rng.normal(size=(k, d)), "drift-fresh").status_code == 200
    assert _methods(client, "drift", rng.normal(size=(8, 4, d))) == ["lowrank"] * 8


def test_a_retried_commit_is_answered_as_stored_where_applying_it_again_would_be_refused(
    client: httpx.Client,
) -> None:
    """The 14th commit of 64 zero rows leaves R = 128 = d other rows (regular); applied twice it
    would leave 64 (singular). Its retry appends nothing and gets the first answer, not 409."""
    rng = np.random.default_rng(3)
    d, n, k = 128, 1024, 64
    _create(client, "retried", rng, d, n)
    before = _version(client, "retried")
    for step in range(14):
        answer = _commit(client, "retried", np.zeros((k, d)), f"retried-{step}")
        assert answer.status_code == 200, answer.text
    first = answer.json()
    again = _commit(client, "retried", np.zeros((k, d)), "retried-13")
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] and not first["replayed"]
    assert again.json()["version"] == first["version"] == before + 14
    assert _version(client, "retried") == before + 14
    # The same rows under a key of their own are a new commit, and that one is refused.
    refused = _commit(client, "retried", np.zeros((k, d)), "retried-14")
    assert refused.status_code == 409 and "numerically singular" in refused.text


def test_a_pool_singular_by_nature_takes_commits_and_is_priced_as_the_exact_path(
    client: httpx.Client,
) -> None:
    rng = np.random.default_rng(2)
    d, n = 256, 200  # N <= d: every group runs exact, legitimately
    _create(client, "narrow", rng, d, n)
    before = _version(client, "narrow")
    assert _commit(client, "narrow", np.zeros((n, d)), "narrow-1").status_code == 200
    assert _commit(client, "narrow", rng.normal(size=(n, d)), "narrow-2").status_code == 200
    base = "/v1/references/narrow"
    # 64 groups of 4: 0.25 GFLOP on the low-rank path, 1.5 on the exact path this pool takes
    # (0.023 a group: 42 fit); 64 samples: 0.04 and 1.45 (44 fit).
    for path, array, fitting in (
        (f"{base}/rewards", rng.normal(size=(64, 4, d)), "at most 42 groups per request"),
        (f"{base}/credits", rng.normal(size=(64, d)), "at most 44 samples per request"),
    ):
        over = _send(client, "POST", path, array, token=OTHER_TOKEN)
        assert over.status_code == 413, over.text
        detail = over.json()["detail"]
        for words in ("numerically singular", "DISTREWARD_MAX_REQUEST_GFLOP", fitting):
            assert words in detail, detail
        assert "use method=lowrank" not in detail, detail
        within = _send(client, "POST", path, array[:40], token=OTHER_TOKEN)
        assert within.status_code == 200, within.text
        assert within.json()["methods_used"] == ["exact"] * 40
    assert _version(client, "narrow") == before + 2


async def _call(
    slots: ComputeSlots,
    caller: str,
    log: list[str],
    gate: asyncio.Event | None = None,
    turns: float = 1.0,
) -> None:
    """One engine call of ``caller`` that took ``turns`` turns (its gate holds it running)."""
    _caller.set(caller)  # each task has its own context, as each request does
    async with slots.slot():
        log.append(caller)
        if gate is not None:
            await gate.wait()
        slots.charge(turns)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("turns", "order"),
    [(1.0, "a b a b a b b"), (4.0, "a b b b b a a")],  # round robin; a waits 3 turns more
)
async def test_a_call_counts_as_the_turns_it_took(turns: float, order: str) -> None:
    slots = ComputeSlots(1, 1)
    gate, log = asyncio.Event(), []
    first = asyncio.create_task(_call(slots, "a", log, gate, turns))
    await asyncio.sleep(0.01)
    queued = [asyncio.create_task(_call(slots, "a", log)) for _ in range(2)]
    queued += [asyncio.create_task(_call(slots, "b", log)) for _ in range(4)]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *queued)
    assert log == order.split()


@pytest.mark.asyncio
async def test_turns_owed_outlast_idleness_and_idleness_earns_none() -> None:
    slots = ComputeSlots(1, 1)
    log: list[str] = []
    await _call(slots, "a", log, turns=3.0)
    assert slots.owed("a") == 2.0
    gate = asyncio.Event()
    holder = asyncio.create_task(_call(slots, "c", log, gate))
    await asyncio.sleep(0.01)
    queued = [asyncio.create_task(_call(slots, caller, log)) for caller in "aabb"]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(holder, *queued)
    assert log == ["a", "c", "b", "b", "a", "a"]  # a idle in between, still 2 turns behind
    # b idle while a ran alone: back, it alternates with a instead of running a burst.
    log.clear()
    for _ in range(5):
        await _call(slots, "a", log)
    gate = asyncio.Event()
    holder = asyncio.create_task(_call(slots, "a", log, gate))
    await asyncio.sleep(0.01)
    queued = [asyncio.create_task(_call(slots, caller, log)) for caller in "bbaa"]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(holder, *queued)
    assert log[6:] == ["b", "a", "b", "a"]


@pytest.mark.asyncio
async def test_groups_that_fell_back_to_exact_are_charged_to_the_token_that_sent_them() -> None:
    """A pool of N = d + 10 rows: a group of 15 equal rows, replacing 15 pool rows, leaves
    fewer than d + 1 distinct rows, a singular update the quadrature cannot certify."""
    settings = make_settings(tokens=(TRAINER_TOKEN, OTHER_TOKEN))
    app = create_app(settings)
    rng = np.random.default_rng(3)
    d = 128
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:

            async def send(path: str, array: np.ndarray, token: str) -> httpx.Response:
                headers = {"Authorization": f"Bearer {token}", "Content-Type": NPY}
                params = {"accept_unknown_feature_space": "true"} if "target" in path else {}
                if path.endswith("rewards"):
                    # Rows drawn at random: on a pool this thin some draws leave a group of
                    # the ordinary request uncertified too, and its token would owe turns.
                    params["seed"] = "0"
                method = "PUT" if path.endswith(("target", "pool")) else "POST"
                return await http.request(
                    method, path, content=npy(array), headers=headers, params=params
                )

            base = "/v1/references/thin"
            target = await send(f"{base}/target", rng.normal(size=(4 * d, d)), ADMIN_TOKEN)
            pool = await send(f"{base}/pool", rng.normal(size=(d + 10, d)), ADMIN_TOKEN)
            assert target.status_code == pool.status_code == 200, pool.text
            groups = np.zeros((4, 15, d))
            groups[1] = rng.normal(size=(15, d))
            answer = await send(f"{base}/rewards", groups, TRAINER_TOKEN)
            assert answer.status_code == 200, answer.text
            methods = answer.json()["methods_used"]
            assert methods.count("exact") == 3, methods
            ordinary = await send(f"{base}/rewards", rng.normal(size=(4, 15, d)), OTHER_TOKEN)
            assert ordinary.json()["methods_used"] == ["lowrank"] * 4

        slots = app.state.service.admission.compute

        def owed(token: str) -> float:
            return float(slots.owed(hashlib.sha256(token.encode()).hexdigest()))

        expected = turns_taken(groups.shape, "lowrank", methods, True) - 1.0
        assert expected > 0.0
        assert owed(TRAINER_TOKEN) == pytest.approx(expected)
        assert owed(OTHER_TOKEN) == 0.0

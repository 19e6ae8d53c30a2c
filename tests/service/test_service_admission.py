"""The per-token shares of ``reward_service.admission``, driven directly: compute slots a
flooding caller cannot take from another, the memory budget's waits and refusals, and the
requests-in-flight share."""

from __future__ import annotations

import asyncio

import pytest
from service_support import make_settings

from reward_service.admission import Admission, ComputeSlots, MemoryBudget, _caller
from reward_service.errors import PayloadTooLarge, TooManyRequests

pytestmark = pytest.mark.asyncio


async def _hold(slots: ComputeSlots, caller: str, release: asyncio.Event, log: list[str]) -> None:
    _caller.set(caller)  # each task has its own context, as each request does
    async with slots.slot():
        log.append(caller)
        await release.wait()


async def test_a_flooding_caller_holds_its_share_and_the_other_slot_stays_free() -> None:
    slots = ComputeSlots(2, 1)
    release, log = asyncio.Event(), []
    flood = [asyncio.create_task(_hold(slots, "flood", release, log)) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert log == ["flood"]  # one slot; the other four wait for it
    other = asyncio.create_task(_hold(slots, "other", release, log))
    await asyncio.sleep(0.01)
    assert log == ["flood", "other"]  # at once, not behind the flood
    release.set()
    await asyncio.gather(*flood, other)
    assert log.count("flood") == 5


async def test_a_freed_slot_goes_to_the_waiting_caller_holding_fewest() -> None:
    slots = ComputeSlots(2, 2)
    release_first, release, log = asyncio.Event(), asyncio.Event(), []
    first = [asyncio.create_task(_hold(slots, "a", release_first, log)) for _ in range(2)]
    await asyncio.sleep(0.01)
    more_a = asyncio.create_task(_hold(slots, "a", release, log))
    await asyncio.sleep(0.01)
    b = asyncio.create_task(_hold(slots, "b", release, log))  # came later, holds none
    await asyncio.sleep(0.01)
    assert log == ["a", "a"]
    release_first.set()
    await asyncio.sleep(0.01)
    # Both slots freed: "b" (holding none) is served no later than the earlier third "a".
    assert sorted(log[2:]) == ["a", "b"]
    release.set()
    await asyncio.gather(*first, more_a, b)


async def test_with_one_slot_the_other_caller_goes_before_the_floods_queue() -> None:
    """Round robin among callers holding equally few: the flood's requests queued earlier do
    not go ahead of the other caller's, which waits for the call in progress only."""
    slots = ComputeSlots(1, 1)
    gates = [asyncio.Event() for _ in range(4)]
    log: list[str] = []
    flood = [asyncio.create_task(_hold(slots, "flood", gate, log)) for gate in gates[:3]]
    await asyncio.sleep(0.01)
    other = asyncio.create_task(_hold(slots, "other", gates[3], log))
    await asyncio.sleep(0.01)
    gates[0].set()  # the call in progress ends
    await asyncio.sleep(0.01)
    assert log == ["flood", "other"]
    for gate in gates:
        gate.set()
    await asyncio.gather(*flood, other)
    assert log == ["flood", "other", "flood", "flood"]


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    slots = ComputeSlots(1, 1)
    release, log = asyncio.Event(), []
    holder = asyncio.create_task(_hold(slots, "a", release, log))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(_hold(slots, "b", release, log))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    done = asyncio.Event()
    done.set()
    await asyncio.wait_for(_hold(slots, "c", done, log), 1)  # the slot is free again
    assert log == ["a", "c"]


async def test_the_memory_budget_refuses_what_never_fits_and_times_out_what_waits() -> None:
    budget = MemoryBudget(capacity=100, share=60, wait_seconds=0.05)
    with pytest.raises(PayloadTooLarge) as never:
        await budget.reserve("a", 61)
    assert never.value.reason == "decode_memory"
    await budget.reserve("a", 60)
    with pytest.raises(TooManyRequests) as busy:  # over the token's share
        await budget.reserve("a", 1)
    assert busy.value.reason == "decode_memory"
    await budget.reserve("b", 40)  # another token still has room
    with pytest.raises(TooManyRequests):  # the whole budget is taken
        await budget.reserve("c", 1)
    waiting = asyncio.create_task(budget.reserve("c", 30))
    await asyncio.sleep(0.01)
    await budget.release("a", 60)
    await asyncio.wait_for(waiting, 1)  # admitted as soon as the memory came back
    assert budget.used == 70


async def test_a_token_has_its_share_of_requests_in_flight() -> None:
    admission = Admission(make_settings(token_max_in_flight=2))
    async with admission.admit("a"), admission.admit("a"):
        with pytest.raises(TooManyRequests) as refused:
            async with admission.admit("a"):
                pass
        assert refused.value.reason == "token_in_flight"
        async with admission.admit("b") as ticket:  # another token is not affected
            await ticket.reserve(1000)
            assert admission.memory.used == 1000
    assert admission.memory.used == 0  # given back on exit
    async with admission.admit("a"):  # and the share is free again
        pass


async def test_without_tokens_only_the_memory_budget_applies() -> None:
    admission = Admission(
        make_settings(tokens=(), admin_tokens=(), env="development", token_max_in_flight=1)
    )
    async with admission.admit(""), admission.admit(""):
        assert admission.memory.share == admission.memory.capacity

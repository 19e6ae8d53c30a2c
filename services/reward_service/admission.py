"""Admission: what one caller may hold at once, so that no token sets another token's latency.

Three shares, each enforced where it is cheapest:

* **Requests in flight** (:class:`Admission`): a token may have at most
  ``token_max_in_flight`` array-body requests (rewards, credits, commit, fd, pool uploads)
  being read, decoded, queued or computed at once; one more is answered 429 with
  ``Retry-After`` at once, before its body is read.
* **Decoding memory** (:class:`MemoryBudget`): bodies in flight and the arrays decoded from them
  hold reservations from one budget (``decode_memory_bytes``), taken as the body's bytes arrive
  (never for bytes only announced) and before an array and the decoder's bounded temporaries
  are allocated; a token may hold at most half of it, so another token always finds room.
  Beyond it a request waits up to ``decode_wait_seconds``, then gets 429; one that could never
  fit gets 413. A body that stops arriving is answered 408 after
  ``body_idle_timeout_seconds``, and what it had reserved is given back.
* **Compute slots** (:class:`ComputeSlots`): ``max_concurrent_compute`` engine calls at once, of
  which one token may hold at most ``token_max_compute``; a freed slot goes to the waiting
  token that holds the fewest, and among those to the one whose share is least used, so a
  token's queued requests never go ahead of another token's waiting one. A call is one turn
  of its token's share, round robin, unless its groups fell back to the exact path beyond
  what the cost bound priced: then it counts as the work it ran (``cost.turns_taken``), and
  its token waits that many turns behind the others. With the defaults (one slot, one per
  token) another token waits at most for the call in progress and no two tokens'
  computations share the cores.

Callers are told apart by a digest of their token (never the token itself). Without tokens
(development) every caller is the same one and only the memory budget applies.

Knows no HTTP: refusals are :mod:`reward_service.errors` with a ``reason`` (the label of the
``distreward_rejections`` metric).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from .errors import PayloadTooLarge, TooManyRequests
from .settings import Settings

__all__ = ["Admission", "ComputeSlots", "MemoryBudget", "Ticket"]

# The caller of the request being served: set when it is admitted (one asyncio task per
# request, and worker threads copy it), read where the engine is called, so that the use cases
# in between need not carry it.
_caller: ContextVar[str] = ContextVar("distreward_caller", default="")


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


class MemoryBudget:
    """Bytes that decoding may hold at once; one caller at most ``share`` of them."""

    def __init__(self, capacity: int, share: int, wait_seconds: float) -> None:
        self.capacity = capacity
        self.share = share
        self._wait = wait_seconds
        self._used = 0
        self._held: dict[str, int] = {}
        self._changed = asyncio.Condition()

    @property
    def used(self) -> int:
        return self._used

    def _fits(self, caller: str, size: int) -> bool:
        return self._used + size <= self.capacity and self._held.get(caller, 0) + size <= self.share

    async def reserve(self, caller: str, size: int, holding: int = 0) -> None:
        """Take ``size`` bytes more for a request of ``caller`` that holds ``holding`` already:
        at once when they fit, else after waiting up to the configured time for other requests
        to give theirs back (429 after that); 413 when the request's total can never fit."""
        if holding + size > self.share:
            raise PayloadTooLarge(
                f"decoding this body needs {_mib(holding + size)} or more; the service decodes "
                f"at most {_mib(self.share)} per token at once (DISTREWARD_DECODE_MEMORY_BYTES); "
                "send fewer rows per request, or .npy instead of JSON",
                reason="decode_memory",
            )
        async with self._changed:
            if not self._fits(caller, size):
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._fits(caller, size)), self._wait
                    )
                except TimeoutError:
                    raise TooManyRequests(
                        f"the memory for decoding request bodies is in use ({_mib(self._used)} "
                        f"of {_mib(self.capacity)}, this token {_mib(self._held.get(caller, 0))}"
                        f" of {_mib(self.share)}); retry after the Retry-After delay",
                        reason="decode_memory",
                    ) from None
            self._used += size
            self._held[caller] = self._held.get(caller, 0) + size

    async def release(self, caller: str, size: int) -> None:
        if size <= 0:
            return
        async with self._changed:
            self._used -= size
            left = self._held[caller] - size
            if left:
                self._held[caller] = left
            else:
                del self._held[caller]
            self._changed.notify_all()


class ComputeSlots:
    """``slots`` engine calls at once, at most ``per_caller`` of them for one caller; a freed
    slot goes to the waiting caller holding the fewest, among equals to the one whose share is
    least used.

    Shares are counted in turns, by start-time fair queuing: a virtual clock, and per caller
    the clock time its turns so far run to. A grant starts at the later of the clock and the
    caller's own time, moves the clock there and adds the call's turn; a call that ran more
    than it was priced at adds more (:meth:`charge`), so its caller waits that many turns
    behind the others. With one turn a call this is round robin, a caller's own requests in
    arrival order. A caller back from idle starts at the clock: idle time earns no credit,
    and turns owed are kept while idle until the clock passes them."""

    def __init__(self, slots: int, per_caller: int) -> None:
        self._free = slots
        self._per_caller = per_caller
        self._held: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._clock = 0.0
        # The clock time each caller's turns so far run to, while active or owing turns.
        self._finish: dict[str, float] = {}
        # When each active caller was last given a slot (-1: not yet): ties go to the oldest.
        self._served: dict[str, int] = {}
        self._order = itertools.count()

    def owed(self, caller: str) -> float:
        """Turns ``caller`` has taken ahead of the clock (what it waits behind others for)."""
        return max(0.0, self._finish.get(caller, self._clock) - self._clock - 1.0)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the current request's caller while the block runs."""
        caller = _caller.get()
        await self._acquire(caller)
        try:
            yield
        finally:
            self._release(caller)

    def charge(self, turns: float) -> None:
        """Count the engine call of the current request as ``turns`` turns of its caller's
        share, the one its slot was given for included; called while the slot is held."""
        if turns > 1.0:
            caller = _caller.get()
            self._finish[caller] = self._start(caller) + turns - 1.0

    def _start(self, caller: str) -> float:
        return max(self._clock, self._finish.get(caller, self._clock))

    def _eligible(self, caller: str) -> bool:
        return self._held.get(caller, 0) < self._per_caller

    async def _acquire(self, caller: str) -> None:
        if self._free and self._eligible(caller) and not self._waiting.get(caller):
            self._take(caller)
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(caller, deque()).append(future)
        self._served.setdefault(caller, -1)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted as it was cancelled
                self._release(caller)
            else:
                self._drop(caller, future)
            raise

    def _take(self, caller: str) -> None:
        self._free -= 1
        self._held[caller] = self._held.get(caller, 0) + 1
        self._clock = self._start(caller)
        self._finish[caller] = self._clock + 1.0
        self._served[caller] = next(self._order)

    def _release(self, caller: str) -> None:
        self._free += 1
        left = self._held[caller] - 1
        if left:
            self._held[caller] = left
        else:
            del self._held[caller]
        self._forget_idle(caller)
        self._grant()

    def _grant(self) -> None:
        while self._free:
            ready = [c for c, queue in self._waiting.items() if queue and self._eligible(c)]
            if not ready:
                return
            caller = min(
                ready, key=lambda c: (self._held.get(c, 0), self._start(c), self._served[c])
            )
            future = self._waiting[caller].popleft()
            if not self._waiting[caller]:
                del self._waiting[caller]
            self._take(caller)
            future.set_result(None)

    def _drop(self, caller: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(caller)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self._waiting[caller]
        self._forget_idle(caller)

    def _forget_idle(self, caller: str) -> None:
        """A caller neither holding nor waiting is forgotten, but for the turns it owes (the
        maps stay as small as the callers active or owing at once)."""
        if caller not in self._held and caller not in self._waiting:
            self._served.pop(caller, None)
            if self._finish.get(caller, self._clock) <= self._clock + 1.0:
                self._finish.pop(caller, None)


class Ticket:
    """One admitted request's reservations from the memory budget."""

    def __init__(self, budget: MemoryBudget, caller: str) -> None:
        self._budget = budget
        self._caller = caller
        self.held = 0

    async def reserve(self, size: int) -> None:
        """Reserve ``size`` more bytes (see :meth:`MemoryBudget.reserve`)."""
        await self._budget.reserve(self._caller, size, self.held)
        self.held += size

    async def settle(self, size: int) -> None:
        """Keep ``size`` bytes reserved (what the request still holds, e.g. its decoded array
        once the body is dropped) and give back the rest."""
        if size < self.held:
            await self._budget.release(self._caller, self.held - size)
            self.held = size

    async def close(self) -> None:
        await self.settle(0)


class Admission:
    """The shares of one service process (from its settings)."""

    def __init__(self, settings: Settings) -> None:
        # Without tokens there is one caller: a share of its own would only halve the service.
        per_token = settings.auth_enabled
        capacity = settings.decode_memory_bytes
        self.memory = MemoryBudget(
            capacity, capacity // 2 if per_token else capacity, settings.decode_wait_seconds
        )
        self.compute = ComputeSlots(
            settings.max_concurrent_compute,
            settings.token_max_compute if per_token else settings.max_concurrent_compute,
        )
        self._max_in_flight = settings.token_max_in_flight if per_token else None
        self._in_flight: dict[str, int] = {}

    @asynccontextmanager
    async def admit(self, caller: str) -> AsyncIterator[Ticket]:
        """Admit a request of ``caller`` for the duration of the block (429 when the caller has
        its share in flight), with a ticket for its memory; everything is given back on exit."""
        current = self._in_flight.get(caller, 0)
        if self._max_in_flight is not None and current >= self._max_in_flight:
            raise TooManyRequests(
                f"this token has {current} requests in flight, its share "
                "(DISTREWARD_TOKEN_MAX_IN_FLIGHT); wait for their answers or retry after the "
                "Retry-After delay",
                reason="token_in_flight",
            )
        self._in_flight[caller] = current + 1
        _caller.set(caller)
        ticket = Ticket(self.memory, caller)
        try:
            yield ticket
        finally:
            await ticket.close()
            left = self._in_flight[caller] - 1
            if left:
                self._in_flight[caller] = left
            else:
                del self._in_flight[caller]

"""The threads engine work runs in, by how long a call takes and who waits for it.

Applying a commit entry to a held engine is short work (linear in the rows pending), and a
commit's answer waits for it; a batch of rewards is long work (``O(K d^2)`` a group at least,
``O(d^3)`` on the exact path). With more runnable threads than cores, equal priority stretches
every short call by the number of long ones running beside it, and the commits queue behind
each other until they fall short of the rate trainers send them. So rewards run in threads of
raised niceness: the scheduler serves the event loop, the catch-up and the rebuilds first, and
rewards with every cycle left over.

Rebuilds and loads are long too but keep normal priority: a rebuild that lags lets the
pending rows grow, and with them the cost of every commit (linear in them) and of every reward
(quadratic), and past the low-rank limit both wait for it. They run in threads apart from the
catch-up, so a rebuild never holds up a commit. Raising a thread's niceness needs no
privilege; where the platform does not allow it, the threads run at normal priority.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["WorkerThreads"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _lower_priority(niceness: int) -> None:
    """Thread initializer: raise this thread's niceness by ``niceness`` (Linux schedules
    threads on their own; elsewhere the call would lower the whole process, so it is not made).
    """
    if niceness <= 0 or sys.platform != "linux":
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
    except OSError as exc:  # a sandbox that forbids it: normal priority, still correct
        log.warning("compute threads keep normal priority: %s", exc)


class WorkerThreads:
    """Where engine calls run: :meth:`compute` for requests' engine work (as many threads as
    compute slots) at raised ``niceness``; at normal priority, :meth:`background` for
    rebuilds, loads and snapshots and :meth:`catch_up` for applying log entries (threads of
    their own, so that a rebuild never holds up a commit)."""

    def __init__(self, compute_threads: int, background_threads: int, niceness: int) -> None:
        self._compute = ThreadPoolExecutor(
            compute_threads,
            thread_name_prefix="compute",
            initializer=functools.partial(_lower_priority, niceness),
        )
        self._background = ThreadPoolExecutor(background_threads, thread_name_prefix="background")
        # Each replica applies its log in order under its own lock: a thread per reference
        # catching up at once, up to a few.
        self._catch_up = ThreadPoolExecutor(4, thread_name_prefix="catch-up")

    async def compute(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        return await self._submit(self._compute, functools.partial(fn, *args, **kwargs))

    async def background(self, fn: Callable[..., T], *args: object) -> T:
        return await self._submit(self._background, functools.partial(fn, *args))

    async def catch_up(self, fn: Callable[..., T], *args: object) -> T:
        return await self._submit(self._catch_up, functools.partial(fn, *args))

    @staticmethod
    async def _submit(executor: ThreadPoolExecutor, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def shutdown(self) -> None:
        """Stop taking work; calls already running finish in their threads."""
        for executor in (self._compute, self._background, self._catch_up):
            executor.shutdown(wait=False, cancel_futures=True)

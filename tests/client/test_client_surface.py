"""The exported surface is pinned: adding or removing a public name is a deliberate change."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import reward_client
from reward_client._async_client import _documented_by

# Grouped by kind, not one name a line: the pin is data, not a copy of ``__all__``.
EXPORTED = {
    "AsyncRewardClient", "RewardClient", "ClientConfig", "WireDType",
    "CommitResult", "FDResult", "Readiness", "ReferenceInfo", "RewardBatch", "Timing",
    "CreditBatch", "CreditForm", "CommittedShare", "PoolFreshness", "PoolLag",
    "Method", "Mode", "RewardFn", "MultiScoreFn", "distribution_reward_fn", "as_multi_score",
    "credit_reward_fn", "COMMIT_FRACTION",
    "RewardClientError", "TransportError", "ProtocolError", "APIError", "ClientRequestError",
    "ServerError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "RequestTimeout",
    "Conflict", "PayloadTooLarge", "UnsupportedMediaType", "UnprocessableEntity",
    "VersionMismatch", "ServiceUnavailable", "TooManyRequests",
}  # fmt: skip


def test_exported_members():
    assert set(reward_client.__all__) == EXPORTED
    assert len(reward_client.__all__) == len(EXPORTED)  # no duplicates
    for name in EXPORTED:
        assert hasattr(reward_client, name), name


def test_public_classes_say_they_are_public():
    for name in EXPORTED:
        obj = getattr(reward_client, name)
        if isinstance(obj, type):
            assert obj.__module__.startswith("reward_client"), name
            assert obj.__doc__, f"{name} has no docstring"


def test_import_pulls_in_neither_torch_nor_the_service():
    # "Any trainer" installs only the client: importing it must not need torch or the service.
    code = (
        "import sys, reward_client\n"
        "bad = sorted(m for m in ('torch', 'reward_service', 'fastapi') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_both_clients_offer_the_same_methods():
    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")}

    sync, async_ = public(reward_client.RewardClient), public(reward_client.AsyncRewardClient)
    assert sync - {"close"} == async_ - {"aclose"}


def test_the_async_methods_take_the_sync_docstrings_and_have_none_of_their_own():
    assert inspect.getdoc(reward_client.AsyncRewardClient.rewards) == inspect.getdoc(
        reward_client.RewardClient.rewards
    )

    class Blocking:
        def read(self) -> None:
            """Read."""

    class Awaited:
        async def read(self) -> None:
            """Read, differently."""

    with pytest.raises(TypeError, match="documented by Blocking"):
        _documented_by(Blocking)(Awaited)


def test_both_clients_document_and_sign_each_method_alike():
    # The methods are written out in both classes, their docstrings in RewardClient only:
    # nothing but this keeps the signatures the same, and sees that every docstring was taken.
    sync, async_ = reward_client.RewardClient, reward_client.AsyncRewardClient
    for name in {n for n in dir(sync) if not n.startswith("_")} - {"close"}:
        blocking, awaited = getattr(sync, name), getattr(async_, name)
        assert inspect.signature(blocking) == inspect.signature(awaited), name
        assert blocking.__doc__ and blocking.__doc__ == awaited.__doc__, name
        assert inspect.iscoroutinefunction(awaited), name
        assert not inspect.iscoroutinefunction(blocking), name

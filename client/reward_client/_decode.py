"""JSON answers of the service into the dataclasses of `_types`.

Every function takes the parsed JSON object and raises `ProtocolError` when a field the
contract (docs/API.md) promises is missing or has the wrong type, so a version skew between
client and service shows up as one clear error instead of a KeyError deep in a trainer.
Fields the client does not know are ignored: the service may add some.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from ._exceptions import ProtocolError
from ._types import (
    CommitResult,
    CommittedShare,
    CreditBatch,
    FDResult,
    PoolFreshness,
    PoolLag,
    Readiness,
    ReferenceInfo,
    RewardBatch,
    Timing,
)

__all__ = [
    "commit_result",
    "credit_batch",
    "fd_result",
    "readiness",
    "reference_info",
    "reference_list",
    "reward_batch",
]

P = ParamSpec("P")
T = TypeVar("T")
JSON = Mapping[str, Any]


def _checked(what: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Turn the KeyError / TypeError / ValueError of a malformed body into `ProtocolError`."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def decode(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return fn(*args, **kwargs)
            except (KeyError, TypeError, ValueError) as exc:
                raise ProtocolError(f"malformed {what} from the service: {exc!r}") from exc

        return decode

    return wrap


def _timestamp(value: str) -> datetime:
    # Python 3.10's fromisoformat does not read the "Z" suffix.
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def _frozen(values: Any, dtype: type) -> npt.NDArray[Any]:
    arr: npt.NDArray[Any] = np.asarray(values, dtype=dtype)
    arr.setflags(write=False)
    return arr


def _freshness(body: JSON) -> PoolFreshness:
    since = body["seconds_since_commit"]
    return PoolFreshness(
        share=float(body["share"]),
        rows=int(body["rows"]),
        window_versions=int(body["window_versions"]),
        window_seconds=float(body["window_seconds"]),
        seconds_since_commit=None if since is None else float(since),
        rows_per_call=_optional_float(body.get("rows_per_call")),
        turnover_calls=_optional_float(body.get("turnover_calls")),
    )


def _optional_float(value: Any) -> float | None:
    """A number the service may send as null (or, before it reported it, leave out)."""
    return None if value is None else float(value)


def _timing(body: JSON) -> Timing:
    return Timing(
        compute_seconds=float(body["compute_seconds"]),
        total_seconds=float(body["total_seconds"]),
    )


def _info(body: JSON) -> ReferenceInfo:
    base_fd = body["base_fd"]
    freshness = body.get("freshness")
    return ReferenceInfo(
        name=str(body["name"]),
        d=int(body["d"]),
        n=int(body["n"]),
        version=int(body["version"]),
        base_fd=None if base_fd is None else float(base_fd),
        created_at=_timestamp(body["created_at"]),
        updated_at=_timestamp(body["updated_at"]),
        stale=bool(body.get("stale", False)),
        freshness=None if freshness is None else _freshness(freshness),
        feature_space=str(body["feature_space"]),
        lag=_lag(body.get("lag")),
    )


def _lag(body: JSON | None) -> PoolLag | None:
    """A lag the service reports (None from services before it did)."""
    return None if body is None else PoolLag(int(body["versions"]), int(body["rows"]))


@_checked("ReferenceInfo")
def reference_info(body: JSON) -> ReferenceInfo:
    """``GET /v1/references/{name}`` and the answer of target / final pool uploads."""
    return _info(body)


@_checked("reference list")
def reference_list(body: JSON) -> list[ReferenceInfo]:
    """``GET /v1/references``."""
    return [_info(item) for item in body["references"]]


def _scored(body: JSON) -> dict[str, Any]:
    """The fields rewards and credits answers share."""
    return {
        "reference": str(body["reference"]),
        "version": int(body["version"]),
        "stale": bool(body.get("stale", False)),
        "base_fd": float(body["base_fd"]),
        "seed": None if body.get("seed") is None else int(body["seed"]),
        "method": str(body["method"]),
        "rewards": _frozen(body["rewards"], np.float64),
        "fds": _frozen(body["fds"], np.float64),
        "advantages": _frozen(body["advantages"], np.float64),
        "methods_used": tuple(str(m) for m in body["methods_used"]),
        "timing": _timing(body["timing"]),
    }


def _committed(body: JSON, idempotency_key: str | None) -> CommittedShare | None:
    """The commit a rewards or credits request made, under the key the client sent."""
    committed = body.get("committed")
    if committed is None:
        return None
    if idempotency_key is None:
        raise ValueError("a commit the client did not ask for")
    return CommittedShare(
        version=int(committed["version"]),
        base_fd=float(committed["base_fd"]),
        rows=int(committed["rows"]),
        replayed=bool(committed["replayed"]),
        idempotency_key=idempotency_key,
    )


@_checked("RewardsResponse")
def reward_batch(body: JSON, idempotency_key: str | None = None) -> RewardBatch:
    """``POST .../rewards``; checks that every per-group list has one entry per group.
    Services before freshness answer without ``freshness`` and ``committed``."""
    freshness = body.get("freshness")
    batch = RewardBatch(
        **_scored(body),
        mode=str(body["mode"]),
        indices=_frozen(body["indices"], np.int64),
        freshness=None if freshness is None else _freshness(freshness),
        committed=_committed(body, idempotency_key),
        lag=_lag(body.get("lag")),
    )
    rewards = batch.rewards
    groups = len(rewards)
    fields = (batch.fds, batch.advantages, batch.methods_used, batch.indices)
    if rewards.ndim != 1 or batch.indices.ndim != 2 or {len(f) for f in fields} != {groups}:
        raise ValueError(f"per-group fields disagree on the number of groups ({groups})")
    return batch


@_checked("CreditsResponse")
def credit_batch(body: JSON, idempotency_key: str | None) -> CreditBatch:
    """``POST .../credits``; checks that every per-sample list has one entry per sample."""
    errors = [np.nan if value is None else value for value in body["error_estimates"]]
    batch = CreditBatch(
        **_scored(body),
        form=str(body["form"]),
        row=None if body["row"] is None else int(body["row"]),
        error_estimates=_frozen(errors, np.float64),
        freshness=_freshness(body["freshness"]),
        committed=_committed(body, idempotency_key),
        lag=_lag(body.get("lag")),
    )
    rewards = batch.rewards
    samples = len(rewards)
    fields = (batch.fds, batch.advantages, batch.methods_used, batch.error_estimates)
    if rewards.ndim != 1 or {len(f) for f in fields} != {samples}:
        raise ValueError(f"per-sample fields disagree on the number of samples ({samples})")
    return batch


@_checked("CommitResponse")
def commit_result(body: JSON, idempotency_key: str) -> CommitResult:
    """``POST .../commit``; the key is the one the client sent, kept for the caller's logs."""
    return CommitResult(
        reference=str(body["reference"]),
        version=int(body["version"]),
        base_fd=float(body["base_fd"]),
        n=int(body["n"]),
        replayed=bool(body.get("replayed", False)),
        idempotency_key=idempotency_key,
    )


@_checked("FDResponse")
def fd_result(body: JSON) -> FDResult:
    """``POST .../fd``."""
    return FDResult(
        reference=str(body["reference"]),
        version=int(body["version"]),
        fd=float(body["fd"]),
        n=int(body["n"]),
    )


@_checked("readiness")
def readiness(ready: bool, body: JSON) -> Readiness:
    """``GET /readyz``; a 503 body may carry less than a 200 one, so every field is optional."""
    references = body.get("references")
    store = body.get("store")
    return Readiness(
        ready=ready,
        store=None if store is None else str(store),
        references=None if references is None else int(references),
    )

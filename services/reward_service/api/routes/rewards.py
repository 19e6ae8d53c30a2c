"""Trainer routes: group rewards, commits that roll the pool, and full FD for evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel

from ...errors import BadInput, Unprocessable
from ...limits import Limits
from ...schemas import (
    CommitRequest,
    CommitResponse,
    FDRequest,
    FDResponse,
    Method,
    Mode,
    RewardsRequest,
    RewardsResponse,
    Timing,
)
from ...service import RewardParams
from ..deps import RefName, ServiceDep, TrainerAuth
from ..openapi import ERROR_RESPONSES, array_body
from ..wire import ArrayBody, Decoded

__all__ = ["router"]

router = APIRouter(prefix="/v1/references", tags=["rewards"])
F = TypeVar("F", bound=Callable[..., Any])

RewardsBody = Annotated[Decoded[RewardsRequest], Depends(ArrayBody(None, RewardsRequest, "groups"))]
CommitBody = Annotated[
    Decoded[CommitRequest],
    Depends(ArrayBody(Limits.rows("commit rows"), CommitRequest, "features")),
]
FDBody = Annotated[
    Decoded[FDRequest], Depends(ArrayBody(Limits.rows("features"), FDRequest, "features"))
]


def _post(
    path: str, response: type[BaseModel], request: type[BaseModel], shape: str
) -> Callable[[F], F]:
    """``POST /v1/references/{name}/<path>``, an array body of ``shape`` or JSON ``request``."""
    return router.post(
        f"/{{name}}/{path}",
        response_model=response,
        responses=ERROR_RESPONSES,
        openapi_extra=array_body(request, shape),
    )


def _indices_from_query(text: str | None) -> np.ndarray | None:
    if text is None or not text.strip():
        return None
    try:
        rows = [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise BadInput("indices: send comma-separated integers, e.g. indices=0,5,9") from exc
    return _index_array(rows)


def _index_array(rows: list[int] | list[list[int]]) -> np.ndarray:
    """Row numbers as int64. Ragged lists and numbers beyond int64 (both found by fuzzing)
    are the caller's to fix, not a server error."""
    try:
        return np.asarray(rows, dtype=np.int64)
    except (ValueError, OverflowError) as exc:
        raise BadInput(
            "indices: send K row numbers in [0, N), or G lists of K of them (equal lengths)"
        ) from exc


@_post("rewards", RewardsResponse, RewardsRequest, "(G, K, d)")
async def rewards(
    name: RefName,
    _: TrainerAuth,  # before the body: a caller without a token gets nothing read
    body: RewardsBody,
    service: ServiceDep,
    mode: Annotated[Mode, Query()] = "shared",
    seed: Annotated[int | None, Query()] = None,
    method: Annotated[Method, Query()] = "lowrank",
    version: Annotated[int | None, Query(description="pin: 409 when it moved on")] = None,
    indices: Annotated[str | None, Query(description="comma-separated rows, mode=indices")] = None,
) -> RewardsResponse:
    """Per-group reward ``base_fd - fd`` of replacing pool rows by each group."""
    start = time.perf_counter()
    if body.json is None:
        params = RewardParams(mode, seed, _indices_from_query(indices), method, version)
    else:
        j = body.json
        rows = None if j.indices is None else _index_array(j.indices)
        params = RewardParams(j.mode, j.seed, rows, j.method, j.version)
    result, stale = await service.rewards(name, body.array, params)
    return RewardsResponse(
        reference=name,
        version=result.version,
        stale=stale,
        base_fd=result.base_fd,
        mode=result.mode,
        seed=result.seed,
        method=result.method,
        rewards=result.rewards.tolist(),
        fds=result.fds.tolist(),
        advantages=result.advantages.tolist(),
        methods_used=list(result.methods_used),
        indices=np.asarray(result.indices).tolist(),
        timing=Timing(
            compute_seconds=result.compute_seconds, total_seconds=time.perf_counter() - start
        ),
    )


@_post("commit", CommitResponse, CommitRequest, "(K, d); Idempotency-Key header required")
async def commit(
    name: RefName,
    _: TrainerAuth,
    body: CommitBody,
    service: ServiceDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> CommitResponse:
    """Accepted rows replace the oldest pool rows; a retried idempotency key applies once (the
    same key with other rows is a 409)."""
    key = idempotency_key if body.json is None else body.json.idempotency_key or idempotency_key
    if not key:
        raise Unprocessable(
            "an idempotency key is required: the Idempotency-Key header (1-128 chars) or, in "
            'JSON, "idempotency_key"; reuse it when retrying the same commit'
        )
    outcome = await service.commit(name, body.array, key)
    return CommitResponse(
        reference=name,
        version=outcome.version,
        base_fd=outcome.base_fd,
        n=outcome.n,
        replayed=outcome.replayed,
    )


@_post("fd", FDResponse, FDRequest, "(n, d), n >= 2")
async def fd(name: RefName, _: TrainerAuth, body: FDBody, service: ServiceDep) -> FDResponse:
    """Fréchet distance of the posted features' Gaussian to the target (float64)."""
    value, view = await service.fd(name, body.array)
    return FDResponse(reference=name, version=view.state.version, fd=value, n=len(body.array))

"""Trainer routes: group rewards, commits that roll the pool, and full FD for evaluation."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Header, Query, Request

from ...errors import BadInput, Unprocessable
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
from .. import wire
from ..deps import RefName, ServiceDep, SettingsDep, TrainerAuth
from ..openapi import ERROR_RESPONSES, array_body

__all__ = ["router"]

router = APIRouter(prefix="/v1/references", tags=["rewards"])

_ARRAYS = (wire.NPY, wire.JSON)


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


@router.post(
    "/{name}/rewards",
    response_model=RewardsResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=array_body(RewardsRequest, "(G, K, d)"),
)
async def rewards(
    name: RefName,
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    _: TrainerAuth,
    mode: Annotated[Mode, Query()] = "shared",
    seed: Annotated[int | None, Query()] = None,
    method: Annotated[Method, Query()] = "lowrank",
    version: Annotated[int | None, Query(description="pin: 409 when it moved on")] = None,
    indices: Annotated[str | None, Query(description="comma-separated rows, mode=indices")] = None,
) -> RewardsResponse:
    """Per-group reward ``base_fd - fd`` of replacing pool rows by each group."""
    start = time.perf_counter()
    limits = wire.shape_limits(
        3,
        "groups",
        maxima=(settings.max_groups, settings.max_group_size),
        width=service.held_width(name),
    )
    payload = await wire.read_payload(request, _ARRAYS, settings.max_body_bytes, limits)
    if payload.media_type == wire.NPY:
        groups = wire.decode_npy(payload.data, 3, "groups")
        params = RewardParams(mode, seed, _indices_from_query(indices), method, version)
    else:
        body = wire.parse_json(RewardsRequest, payload.data)
        groups = wire.array_from_json(body.groups, 3, "groups")
        rows = None if body.indices is None else _index_array(body.indices)
        params = RewardParams(body.mode, body.seed, rows, body.method, body.version)
    result, stale = await service.rewards(name, groups, params)
    return RewardsResponse(
        reference=name,
        version=result.version,
        stale=stale,
        base_fd=result.base_fd,
        mode=result.mode,  # type: ignore[arg-type]
        seed=result.seed,
        method=result.method,  # type: ignore[arg-type]
        rewards=result.rewards.tolist(),
        fds=result.fds.tolist(),
        advantages=result.advantages.tolist(),
        methods_used=list(result.methods_used),  # type: ignore[arg-type]
        indices=np.asarray(result.indices).tolist(),
        timing=Timing(
            compute_seconds=result.compute_seconds, total_seconds=time.perf_counter() - start
        ),
    )


@router.post(
    "/{name}/commit",
    response_model=CommitResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=array_body(CommitRequest, "(K, d); Idempotency-Key header required"),
)
async def commit(
    name: RefName,
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    _: TrainerAuth,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> CommitResponse:
    """Accepted rows replace the oldest pool rows; a retried idempotency key applies once."""
    limits = wire.shape_limits(2, "commit rows", width=service.held_width(name))
    payload = await wire.read_payload(request, _ARRAYS, settings.max_body_bytes, limits)
    if payload.media_type == wire.NPY:
        features = wire.decode_npy(payload.data, 2, "features")
        key = idempotency_key
    else:
        body = wire.parse_json(CommitRequest, payload.data)
        features = wire.array_from_json(body.features, 2, "features")
        key = body.idempotency_key or idempotency_key
    if not key:
        raise Unprocessable(
            "an idempotency key is required: the Idempotency-Key header (1-128 chars) or, in "
            'JSON, "idempotency_key"; reuse it when retrying the same commit'
        )
    outcome = await service.commit(name, features, key)
    return CommitResponse(
        reference=name,
        version=outcome.version,
        base_fd=outcome.base_fd,
        n=outcome.n,
        replayed=outcome.replayed,
    )


@router.post(
    "/{name}/fd",
    response_model=FDResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=array_body(FDRequest, "(n, d), n >= 2"),
)
async def fd(
    name: RefName, request: Request, service: ServiceDep, settings: SettingsDep, _: TrainerAuth
) -> FDResponse:
    """Fréchet distance of the posted features' Gaussian to the target (float64)."""
    limits = wire.shape_limits(2, "features", width=service.held_width(name))
    payload = await wire.read_payload(request, _ARRAYS, settings.max_body_bytes, limits)
    if payload.media_type == wire.NPY:
        features = wire.decode_npy(payload.data, 2, "features")
    else:
        features = wire.array_from_json(
            wire.parse_json(FDRequest, payload.data).features, 2, "features"
        )
    value, view = await service.fd(name, features)
    return FDResponse(reference=name, version=view.state.version, fd=value, n=len(features))

"""References: list, inspect, delete, and the admin uploads of target statistics and pools."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from ...errors import BadInput
from ...schemas import PoolRequest, ReferenceInfo, ReferenceList, StagedPool, TargetRequest
from ...service import View
from ...store.base import Target
from .. import wire
from ..deps import AdminAuth, RefName, ServiceDep, SettingsDep, TrainerAuth
from ..openapi import ERROR_RESPONSES, array_body

__all__ = ["router"]

router = APIRouter(prefix="/v1/references", tags=["references"])


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _info_of(view: View) -> ReferenceInfo:
    state = view.state
    return ReferenceInfo(
        name=state.meta.name,
        d=state.meta.d,
        n=state.meta.n,
        version=state.version,
        base_fd=None if state.engine is None else float(state.engine.base_fd),
        created_at=_time(state.meta.created_at),
        updated_at=_time(state.meta.updated_at),
        stale=view.stale,
    )


@router.get("", response_model=ReferenceList, responses=ERROR_RESPONSES)
async def list_references(service: ServiceDep, _: TrainerAuth) -> ReferenceList:
    return ReferenceList(references=[_info_of(view) for view in await service.list_views()])


@router.get("/{name}", response_model=ReferenceInfo, responses=ERROR_RESPONSES)
async def get_reference(name: RefName, service: ServiceDep, _: TrainerAuth) -> ReferenceInfo:
    return _info_of(await service.view(name))


@router.delete("/{name}", status_code=204, response_class=Response, responses=ERROR_RESPONSES)
async def delete_reference(name: RefName, service: ServiceDep, _: AdminAuth) -> Response:
    await service.delete(name)
    return Response(status_code=204)


@router.put(
    "/{name}/target",
    response_model=ReferenceInfo,
    responses=ERROR_RESPONSES,
    openapi_extra=array_body(
        TargetRequest, "(n, d) of features to fit", npz=".npz with mu (d,) and sigma (d, d)"
    ),
)
async def put_target(
    name: RefName, request: Request, service: ServiceDep, settings: SettingsDep, _: AdminAuth
) -> ReferenceInfo:
    """Target statistics: ``mu``/``sigma`` (npz or JSON) or features to fit them from."""
    payload = await wire.read_payload(
        request,
        (wire.NPZ, wire.NPY, wire.JSON),
        settings.max_body_bytes,
        wire.shape_limits(2, "features"),  # a new target may set d: no width check
    )
    if payload.media_type == wire.NPZ:
        arrays = wire.decode_npz(payload.data, {"mu": 1, "sigma": 2}, settings.max_body_bytes)
        view = await service.put_target(name, _target(arrays["mu"], arrays["sigma"]))
    elif payload.media_type == wire.NPY:
        view = await service.fit_target(name, wire.decode_npy(payload.data, 2, "features"))
    else:
        body = wire.parse_json(TargetRequest, payload.data)
        if body.features is not None and body.mu is None and body.sigma is None:
            features = wire.array_from_json(body.features, 2, "features")
            view = await service.fit_target(name, features)
        elif body.mu is not None and body.sigma is not None and body.features is None:
            mu = wire.array_from_json(body.mu, 1, "mu")
            view = await service.put_target(
                name, _target(mu, wire.array_from_json(body.sigma, 2, "sigma"))
            )
        else:
            raise BadInput('send either "mu" and "sigma", or "features" (not both)')
    return _info_of(view)


def _target(mu: np.ndarray, sigma: np.ndarray) -> Target:
    return Target(mu.astype(np.float64), sigma.astype(np.float64))


async def _pool(
    name: str, request: Request, service: ServiceDep, settings: SettingsDep, *, first: bool,
    final: bool,
) -> ReferenceInfo | StagedPool:
    limits = wire.shape_limits(2, "pool rows", width=service.held_width(name))
    payload = await wire.read_payload(
        request, (wire.NPY, wire.JSON), settings.max_body_bytes, limits
    )
    if payload.media_type == wire.NPY:
        rows = wire.decode_npy(payload.data, 2, "pool")
    else:
        body = wire.parse_json(PoolRequest, payload.data)
        rows, final = wire.array_from_json(body.features, 2, "pool"), body.final
    outcome = await service.upload_pool(name, rows, first=first, final=final)
    if isinstance(outcome, int):
        return StagedPool(staged_rows=outcome)
    return _info_of(outcome)


_POOL_DOC = array_body(PoolRequest, "(N, d)")
_FINAL = Query(True, description="binary bodies: publish after this chunk")


@router.put(
    "/{name}/pool",
    response_model=ReferenceInfo | StagedPool,
    responses=ERROR_RESPONSES,
    openapi_extra=_POOL_DOC,
)
async def put_pool(
    name: RefName,
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    _: AdminAuth,
    final: bool = _FINAL,
) -> ReferenceInfo | StagedPool:
    """The whole pool, or (``final=false``) the first chunk of a staged upload."""
    return await _pool(name, request, service, settings, first=True, final=final)


@router.post(
    "/{name}/pool",
    response_model=ReferenceInfo | StagedPool,
    responses=ERROR_RESPONSES,
    openapi_extra=_POOL_DOC,
)
async def post_pool(
    name: RefName,
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    _: AdminAuth,
    final: bool = _FINAL,
) -> ReferenceInfo | StagedPool:
    """A further chunk of a staged upload; ``final=true`` on the last publishes the pool."""
    return await _pool(name, request, service, settings, first=False, final=final)

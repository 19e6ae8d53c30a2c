"""References: list, inspect, delete, and the admin uploads of target statistics and pools."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from operator import attrgetter
from typing import Annotated

from fastapi import Depends, Query, Request, Response

from ...errors import BadInput
from ...feature_spaces import target_feature_space
from ...service import Lag, ReferenceService, View
from ..array_body import ArrayBody, Decoded, decode_json
from ..body_reader import JSON, NPY, NPZ, media_type, read_payload
from ..decoding import decode_npy
from ..deps import AdminAuth, CallerKey, RefName, ServiceDep, SettingsDep, TrainerAuth
from ..feature_space_header import DeclaredFeatureSpace, FeatureSpaceDep
from ..npz import read_target_npz
from ..openapi import array_doc, documented_body, errors, target_doc
from ..schemas import (
    FreshnessInfo,
    LagInfo,
    PoolRequest,
    ReferenceInfo,
    ReferenceList,
    StagedPool,
    TargetRequest,
)
from ..spool import spooled_body
from . import references_router

__all__ = ["router"]

router = references_router("references")


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _lag_info(lag: Lag) -> LagInfo:
    return LagInfo(versions=lag.versions, rows=lag.rows)


def _info_of(view: View, service: ReferenceService) -> ReferenceInfo:
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
        freshness=None
        if state.engine is None
        else FreshnessInfo.of(service.freshness(state.meta.name)),
        lag=None if state.engine is None else _lag_info(service.lag_of(view, state.version)),
        feature_space=state.meta.feature_space,
    )


@router.get("", response_model=ReferenceList, responses=errors(401, 503))
async def list_references(service: ServiceDep, _: TrainerAuth) -> ReferenceList:
    views = await service.list_views()
    return ReferenceList(references=[_info_of(view, service) for view in views])


@router.get("/{name}", response_model=ReferenceInfo, responses=errors(401, 404, 409, 422, 503))
async def get_reference(name: RefName, service: ServiceDep, _: TrainerAuth) -> ReferenceInfo:
    return _info_of(await service.view(name), service)


@router.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    responses=errors(401, 403, 404, 422, 503),
)
async def delete_reference(name: RefName, service: ServiceDep, _: AdminAuth) -> Response:
    await service.delete(name)
    return Response(status_code=204)


@router.put(
    "/{name}/target",
    response_model=ReferenceInfo,
    responses=errors(400, 401, 403, 408, 409, 413, 415, 422, 429, 503),
    openapi_extra=documented_body("target", target_doc),
)
async def put_target(
    name: RefName,
    _: AdminAuth,
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    caller: CallerKey,
    feature_space: DeclaredFeatureSpace = None,
    accept_unknown_feature_space: Annotated[
        bool,
        Query(
            description="accept statistics that name no feature space (no feature_space member, "
            "no Feature-Space header): the reference records 'unknown'"
        ),
    ] = False,
) -> ReferenceInfo:
    """Target statistics: ``mu``/``sigma`` (npz or JSON) or features to fit them from, in the
    feature space the ``.npz`` records or the ``Feature-Space`` header names. ``.npy`` and JSON
    bodies are admitted and decoded as array bodies are (``array_body.ArrayBody``): the token's
    share of requests in flight, memory reserved as the body arrives, JSON decoded without
    Python lists."""
    limits = service.limits
    features = limits.target_features

    def space(from_file: str | None = None) -> str:
        return target_feature_space(name, from_file, feature_space, accept_unknown_feature_space)

    if media_type(request) == NPZ:  # any size up to its own limit, spooled to disk
        async with spooled_body(request, settings) as file:  # read in a thread: megabytes
            stats = await asyncio.to_thread(read_target_npz, file, limits, settings.max_body_bytes)
        view = await service.put_target(
            name, stats.mu, stats.sigma, feature_space=space(stats.feature_space)
        )
        return _info_of(view, service)
    specs = {"features": features, "mu": limits.mu, "sigma": limits.sigma}

    def check_json(shapes: dict[str, tuple[int, ...]], _: TargetRequest) -> None:
        if set(shapes) not in ({"features"}, {"mu", "sigma"}):
            raise BadInput('send either "mu" and "sigma", or "features" (not both)')
        for field, shape in shapes.items():
            limits.check_shape(specs[field], shape)

    async with service.admission.admit(caller) as ticket:
        payload = await read_payload(
            request,
            (NPZ, NPY, JSON),  # .npz never reaches here; named in a 415's message
            settings,
            ticket,
            lambda shape: limits.check_shape(features, shape),  # a new target may set d
        )
        if payload.media_type == NPY:  # its header checked as it arrived
            fitted = await asyncio.to_thread(decode_npy, payload.data, features.what)
            arrays = {"features": fitted}
        else:
            arrays, _members = await decode_json(
                payload.data, TargetRequest, specs, settings, ticket, check_json
            )
        del payload  # the body goes; the arrays stay reserved until the answer
        await ticket.settle(sum(array.nbytes for array in arrays.values()))
        if "features" in arrays:
            view = await service.fit_target(name, arrays["features"], feature_space=space())
        else:
            view = await service.put_target(
                name, arrays["mu"], arrays["sigma"], feature_space=space()
            )
    return _info_of(view, service)


_POOL = ArrayBody(attrgetter("pool_rows"), PoolRequest, "features")
PoolBody = Annotated[Decoded[PoolRequest], Depends(_POOL)]
_POOL_DOC = documented_body("pool", array_doc(_POOL))
_FINAL = Query(True, description="binary bodies: publish after this chunk")


def _pool_route(*, first: bool, doc: str) -> Callable[..., Awaitable[ReferenceInfo | StagedPool]]:
    """The pool upload endpoint: ``first`` starts a new upload (PUT), else continues it (POST)."""

    async def upload(
        name: RefName,
        _: AdminAuth,
        space: FeatureSpaceDep,
        body: PoolBody,
        service: ServiceDep,
        final: bool = _FINAL,
    ) -> ReferenceInfo | StagedPool:
        if body.json is not None:
            final = body.json.final
        outcome = await service.upload_pool(
            name, body.array, first=first, final=final, posted=space
        )
        if isinstance(outcome, int):
            return StagedPool(staged_rows=outcome)
        return _info_of(outcome, service)

    upload.__doc__ = doc
    return upload


for _method, _first, _doc in (
    ("PUT", True, "The whole pool, or (``final=false``) the first chunk of a staged upload."),
    ("POST", False, "A further chunk of a staged upload; ``final=true`` on the last publishes."),
):
    router.add_api_route(
        "/{name}/pool",
        _pool_route(first=_first, doc=_doc),
        methods=[_method],
        name=f"{_method.lower()}_pool",
        response_model=ReferenceInfo | StagedPool,
        responses=errors(400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503),  # admitted
        openapi_extra=_POOL_DOC,
    )

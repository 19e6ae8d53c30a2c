"""Trainer routes: group rewards, per-sample credits, commits that roll the pool (also as a share
of what a rewards or credits request scored), and full FD for evaluation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import Depends, Header, Query
from pydantic import BaseModel

from ...engine import CreditForm, CreditResult
from ...engine.choices import SEED_LIMIT
from ...errors import BadInput
from ...service import CommitShare, CreditParams, Outcome, RewardParams
from ..array_body import ArrayBody, Decoded
from ..deps import CallerKey, RefName, ServiceDep, TrainerAuth
from ..feature_space_header import FeatureSpaceDep
from ..openapi import BodyDoc, array_doc, documented_body, errors
from ..schemas import (
    CommitRequest,
    CommitResponse,
    CommittedShare,
    CreditsRequest,
    CreditsResponse,
    FDRequest,
    FDResponse,
    FreshnessInfo,
    LagInfo,
    Method,
    Mode,
    RewardsRequest,
    RewardsResponse,
    Timing,
)
from . import references_router

__all__ = ["router"]

router = references_router("rewards")
F = TypeVar("F", bound=Callable[..., Any])

# Each body's spec, model and field, read by its route and described by the document.
_REWARDS = ArrayBody(attrgetter("groups"), RewardsRequest, "groups")
RewardsBody = Annotated[Decoded[RewardsRequest], Depends(_REWARDS)]
_CREDITS = ArrayBody(attrgetter("samples"), CreditsRequest, "samples")
CreditsBody = Annotated[Decoded[CreditsRequest], Depends(_CREDITS)]
_KEY = Header(
    alias="Idempotency-Key",
    min_length=1,
    max_length=128,
    description="names this commit: a retry with the same key applies it once",
)
IdempotencyKey = Annotated[str, _KEY]
OptionalIdempotencyKey = Annotated[str | None, _KEY]
Seed = Annotated[int | None, Query(ge=0, le=SEED_LIMIT - 1)]
CommitFraction = Annotated[
    float | None,
    Query(gt=0, le=1, description="commit this share of the rewarded rows; needs a key"),
]
Pin = Annotated[int | None, Query(ge=0, description="pin: 409 when it moved on")]
After = Annotated[
    int | None,
    Query(ge=0, description="your last commit's version: the answer's version holds it"),
]
Round = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:/-]+$",
        description="form add: one round (the ranks of a step) is answered at one version",
    ),
]
_COMMIT = ArrayBody(attrgetter("commit_rows"), CommitRequest, "features")
CommitBody = Annotated[Decoded[CommitRequest], Depends(_COMMIT)]
_FD = ArrayBody(attrgetter("fd_features"), FDRequest, "features")
FDBody = Annotated[Decoded[FDRequest], Depends(_FD)]
# Every route here: a body (400, 408, 413, 415, 422), a reference (404, 409), a trainer token (401),
# the token's share of the service (429, reward_service.admission), the store for writes or a
# reference not yet held (503).
_ERRORS = errors(400, 401, 404, 408, 409, 413, 415, 422, 429, 503)


def _post(path: str, response: type[BaseModel], body: BodyDoc) -> Callable[[F], F]:
    """``POST /v1/references/{name}/<path>`` with an array body documented by ``body``."""
    return router.post(
        f"/{{name}}/{path}",
        response_model=response,
        responses=_ERRORS,
        openapi_extra=documented_body(path, body),
    )


def _indices_from_query(
    indices: Annotated[str | None, Query(description="comma-separated rows, mode=indices")] = None,
) -> np.ndarray | None:
    """The query's ``indices``, read before the body (a route lists this before its body)."""
    if indices is None or not indices.strip():
        return None
    try:
        rows = [int(part) for part in indices.split(",")]
    except ValueError as exc:
        raise BadInput("indices: send comma-separated integers, e.g. indices=0,5,9") from exc
    return _index_array(rows)


QueryIndices = Annotated[np.ndarray | None, Depends(_indices_from_query)]


def _index_array(rows: list[int] | list[list[int]]) -> np.ndarray:
    """Row numbers as int64. Ragged lists and numbers beyond int64 (both found by fuzzing)
    are the caller's to fix, not a server error."""
    try:
        return np.asarray(rows, dtype=np.int64)
    except (ValueError, OverflowError) as exc:
        raise BadInput(
            "indices: send K row numbers in [0, N), or G lists of K of them (equal lengths)"
        ) from exc


def _share(fraction: float | None, key: str | None, caller: str) -> CommitShare | None:
    return None if fraction is None else CommitShare(fraction, key, caller)


def _json_key(member: str | None, header: str | None) -> str | None:
    """A JSON body's idempotency key: its member or the header, not two different keys."""
    if member is not None and header is not None and member != header:
        raise BadInput(
            'the JSON member "idempotency_key" and the Idempotency-Key header differ; send the '
            "key once"
        )
    return member or header


def _answered(name: str, outcome: Outcome, start: float) -> dict[str, Any]:
    """The fields rewards and credits answers share."""
    result, committed = outcome.result, outcome.committed
    return {
        "reference": name,
        "version": result.version,
        "stale": outcome.stale,
        "base_fd": result.base_fd,
        "seed": result.seed,
        "method": result.method,
        "rewards": result.rewards.tolist(),
        "fds": result.fds.tolist(),
        "advantages": result.advantages.tolist(),
        "methods_used": list(result.methods_used),
        "error_estimates": [
            None if math.isnan(value) else value for value in result.error_estimates.tolist()
        ],
        "freshness": FreshnessInfo.of(outcome.freshness),
        "lag": LagInfo(versions=outcome.lag.versions, rows=outcome.lag.rows),
        "committed": None
        if committed is None
        else CommittedShare(
            version=committed.version,
            base_fd=committed.base_fd,
            rows=committed.rows,
            replayed=committed.replayed,
        ),
        "timing": Timing(
            compute_seconds=result.compute_seconds, total_seconds=time.perf_counter() - start
        ),
    }


@_post("rewards", RewardsResponse, array_doc(_REWARDS))
async def rewards(
    name: RefName,
    _: TrainerAuth,  # before the body: a caller without a token gets nothing read
    space: FeatureSpaceDep,  # before the body too: features of another space are not read
    indices: QueryIndices,  # and parameters read before it
    body: RewardsBody,
    service: ServiceDep,
    caller: CallerKey,
    mode: Annotated[Mode, Query()] = "shared",
    seed: Seed = None,
    method: Annotated[Method, Query()] = "lowrank",
    version: Pin = None,
    after: After = None,
    commit_fraction: CommitFraction = None,
    idempotency_key: OptionalIdempotencyKey = None,
) -> RewardsResponse:
    """Per-group reward ``base_fd - fd`` of replacing pool rows by each group; with
    ``commit_fraction``, that share of the rows is committed in the same request."""
    start = time.perf_counter()
    if body.json is None:
        share = _share(commit_fraction, idempotency_key, caller)
        params = RewardParams(mode, seed, indices, method, version, share, after)
    else:
        j = body.json
        rows = None if j.indices is None else _index_array(j.indices)
        key = _json_key(j.idempotency_key, idempotency_key)
        share = _share(j.commit_fraction, key, caller)
        params = RewardParams(j.mode, j.seed, rows, j.method, j.version, share, j.after)
    outcome = await service.rewards(name, body.array, params, space)
    result = outcome.result
    assert not isinstance(result, CreditResult)
    return RewardsResponse(
        **_answered(name, outcome, start),
        mode=result.mode,
        indices=np.asarray(result.indices).tolist(),
    )


@_post("credits", CreditsResponse, array_doc(_CREDITS))
async def credits(
    name: RefName,
    _: TrainerAuth,
    space: FeatureSpaceDep,
    body: CreditsBody,
    service: ServiceDep,
    caller: CallerKey,
    form: Annotated[CreditForm, Query(description="add (no pool row) or replace")] = "add",
    seed: Annotated[
        Seed, Query(description="replace: draws the replaced row (not with row); seeds the commit")
    ] = None,
    row: Annotated[
        int | None,
        Query(ge=0, le=SEED_LIMIT - 1, description="replace: the row every sample replaces"),
    ] = None,
    method: Annotated[Method, Query()] = "lowrank",
    version: Pin = None,
    after: After = None,
    round: Round = None,
    commit_fraction: CommitFraction = None,
    idempotency_key: OptionalIdempotencyKey = None,
) -> CreditsResponse:
    """Per-sample credit ``base_fd - fd``: of adding each sample to the pool (``form=add``, the
    default: no pool row, so a sample has one credit at a version whoever asks), or of replacing
    one shared pool row by each sample (``form=replace``); B up to ``DISTREWARD_MAX_SAMPLES``;
    ``advantages`` are normalised over the request.
    With ``commit_fraction``, that share of the samples is committed in the same request."""
    start = time.perf_counter()
    if body.json is None:
        share = _share(commit_fraction, idempotency_key, caller)
        params = CreditParams(form, seed, row, method, version, share, after, round)
    else:
        j = body.json
        key = _json_key(j.idempotency_key, idempotency_key)
        share = _share(j.commit_fraction, key, caller)
        params = CreditParams(j.form, j.seed, j.row, j.method, j.version, share, j.after, j.round)
    outcome = await service.credits(name, body.array, params, space)
    result = outcome.result
    assert isinstance(result, CreditResult)
    return CreditsResponse(**_answered(name, outcome, start), form=result.form, row=result.row)


@_post("commit", CommitResponse, array_doc(_COMMIT))
async def commit(
    name: RefName,
    _: TrainerAuth,
    idempotency_key: IdempotencyKey,
    space: FeatureSpaceDep,
    body: CommitBody,
    service: ServiceDep,
    caller: CallerKey,  # keys are the token's own
) -> CommitResponse:
    """Accepted rows replace the oldest pool rows; a retried idempotency key applies once (the
    same key with other rows is a 409). Keys are the token's own: another token's same key is
    another key."""
    outcome = await service.commit(name, body.array, idempotency_key, space, caller=caller)
    return CommitResponse(
        reference=name,
        version=outcome.version,
        base_fd=outcome.base_fd,
        n=outcome.n,
        replayed=outcome.replayed,
    )


@_post("fd", FDResponse, array_doc(_FD))
async def fd(
    name: RefName, _: TrainerAuth, space: FeatureSpaceDep, body: FDBody, service: ServiceDep
) -> FDResponse:
    """Fréchet distance of the posted features' Gaussian to the target (float64)."""
    value, view = await service.fd(name, body.array, space)
    return FDResponse(reference=name, version=view.state.version, fd=value, n=len(body.array))

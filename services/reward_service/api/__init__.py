"""HTTP layer: turns requests into service calls and service answers into responses.

* ``routes/`` — one router per resource (``health``, ``references``, ``rewards``), assembled
  below. A new route goes into its resource's router (a new resource: a new module, included
  here); it takes its array body from ``array_body.ArrayBody`` and calls one
  ``ReferenceService`` method.
* ``deps`` — dependencies as ``Annotated`` aliases (``ServiceDep``, ``TrainerAuth``,
  ``AdminAuth``...), token checks included.
* Bodies to arrays, in three steps: ``body_reader`` reads a body as it streams in (size-capped,
  its memory reserved, a ``.npy`` header checked against ``reward_service.limits`` before the
  rest is read); ``decoding`` turns bytes into arrays, pure functions (``.npy``, the passes of
  a JSON body over ``json_array``); ``array_body`` is the dependency that wires them to
  admission, the cost bound and the reference held. ``npz`` / ``spool`` read target ``.npz``
  archives of any size.
* ``schemas`` — the JSON request bodies and typed responses (the API's own: the store keeps
  records of its own).
* ``feature_space_header`` — the ``Feature-Space`` header every route that posts features
  reads (the rules it applies: ``reward_service.feature_spaces``).
* ``errors`` — service errors to HTTP statuses; ``middleware`` — request metrics;
  ``openapi`` / ``docs`` — the documented bodies and the offline ``/docs``.

Limits themselves are not here (``reward_service.limits``), nor anything of the store.
"""

from __future__ import annotations

from fastapi import APIRouter

from .routes import health, references, rewards

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(references.router)
api_router.include_router(rewards.router)

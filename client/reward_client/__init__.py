"""Client of the distreward service: distribution-wise rewards for RL fine-tuning.

Depends on httpx and numpy only; torch tensors are accepted when torch is installed. Never
imports the service. A trainer step::

    from reward_client import RewardClient

    with RewardClient("http://reward:8000") as client:      # token from DISTREWARD_TOKEN
        batch = client.rewards("inception", features)       # (G, K, d) -> G rewards
        policy_update(batch.advantages)                     # group-normalised
        client.commit("inception", features[best])          # roll the pool, applied once

The HTTP contract is docs/API.md; errors form one tree rooted at `RewardClientError`.
"""

from ._client import AsyncRewardClient, RewardClient
from ._config import ClientConfig, WireDType
from ._exceptions import (
    APIError,
    BadRequest,
    ClientRequestError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    RequestTimeout,
    RewardClientError,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    UnprocessableEntity,
    UnsupportedMediaType,
    VersionMismatch,
)
from ._types import (
    CommitResult,
    FDResult,
    Method,
    Mode,
    Readiness,
    ReferenceInfo,
    RewardBatch,
    Timing,
)
from .reward_fn import MultiScoreFn, RewardFn, as_multi_score, distribution_reward_fn

__all__ = [
    "APIError",
    "AsyncRewardClient",
    "BadRequest",
    "ClientConfig",
    "ClientRequestError",
    "CommitResult",
    "Conflict",
    "FDResult",
    "Forbidden",
    "Method",
    "Mode",
    "MultiScoreFn",
    "NotFound",
    "PayloadTooLarge",
    "ProtocolError",
    "Readiness",
    "ReferenceInfo",
    "RequestTimeout",
    "RewardBatch",
    "RewardClient",
    "RewardClientError",
    "RewardFn",
    "ServerError",
    "ServiceUnavailable",
    "Timing",
    "TransportError",
    "Unauthorized",
    "UnprocessableEntity",
    "UnsupportedMediaType",
    "VersionMismatch",
    "WireDType",
    "as_multi_score",
    "distribution_reward_fn",
]

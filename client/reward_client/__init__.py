"""Client of the distreward service: distribution-wise rewards for RL fine-tuning.

Depends on httpx and numpy only; torch tensors are accepted when torch is installed. Never
imports the service. A trainer step::

    from reward_client import RewardClient

    with RewardClient("http://reward:8000") as client:      # token from DISTREWARD_TOKEN
        batch = client.rewards("inception", features)       # (G, K, d) -> G rewards
        policy_update(batch.advantages)                     # group-normalised
        client.commit("inception", features[best])          # roll the pool, applied once

The HTTP contract is docs/API.md; errors form one tree rooted at `RewardClientError`.

Where things live. The HTTP client is this package's private modules: `_sync_client` and
`_async_client` (`RewardClient` and `AsyncRewardClient`: the public methods, each driving one
operation with its own I/O), `_base` (the operations both share: build, send under the retry
policy, decode), `_requests` (the request of each operation, as data), `_retry` (what is
retried, when, and the loops that do it), `_protocol` (what operations and drivers exchange),
`_freshness` (the stalled-pool warning), `_encoding` / `_decode` (arrays out, dataclasses in),
`_config`, `_exceptions`, `_types`; and `reward_fn` (the DDPO / Flow-GRPO reward-function
adapter). Sub-packages need torch and are never imported from here: `reward_client.training`
(what every trainer shares: the run loop, reward sources, samplers, the PPO-clip step; start
there to add a trainer), `reward_client.grpo` (GRPO over the SDE sampler),
`reward_client.merging` (merge-coefficient RL) and `reward_client.features` (images to features
with provenance, reference statistics).
"""

from ._async_client import AsyncRewardClient
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
    TooManyRequests,
    TransportError,
    Unauthorized,
    UnprocessableEntity,
    UnsupportedMediaType,
    VersionMismatch,
)
from ._sync_client import RewardClient
from ._types import (
    CommitResult,
    CommittedShare,
    CreditBatch,
    CreditForm,
    FDResult,
    Method,
    Mode,
    PoolFreshness,
    PoolLag,
    Readiness,
    ReferenceInfo,
    RewardBatch,
    Timing,
)
from .reward_fn import (
    COMMIT_FRACTION,
    MultiScoreFn,
    RewardFn,
    as_multi_score,
    credit_reward_fn,
    distribution_reward_fn,
)

__all__ = [
    "COMMIT_FRACTION",
    "APIError",
    "AsyncRewardClient",
    "BadRequest",
    "ClientConfig",
    "ClientRequestError",
    "CommitResult",
    "CommittedShare",
    "Conflict",
    "CreditBatch",
    "CreditForm",
    "FDResult",
    "Forbidden",
    "Method",
    "Mode",
    "MultiScoreFn",
    "NotFound",
    "PayloadTooLarge",
    "PoolFreshness",
    "PoolLag",
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
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "UnprocessableEntity",
    "UnsupportedMediaType",
    "VersionMismatch",
    "WireDType",
    "as_multi_score",
    "credit_reward_fn",
    "distribution_reward_fn",
]

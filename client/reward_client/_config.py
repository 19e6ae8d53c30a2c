"""Client settings: where the service is, who we are, and how hard to try.

Kept apart from the client classes so that one frozen value can be shared by many clients
(several trainer workers, the sync and the async client) and logged without leaking the
token (it is left out of ``repr``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

__all__ = ["ClientConfig", "FeatureSpaceLike", "WireDType", "feature_space_id"]

#: Float formats the service accepts in ``.npy`` bodies. float32 is the default: the service
#: accumulates in float64 anyway, and float16 halves the bytes at a visible cost in precision.
WireDType = Literal["float32", "float16", "float64"]

_DEFAULT_URL = "http://127.0.0.1:8000"
# What the service takes in its Feature-Space header: printable ASCII without spaces.
_FEATURE_SPACE = re.compile(r"[!-~]{1,256}")


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


class _Extracting(Protocol):
    @property
    def feature_space(self) -> _Identified: ...


#: A feature space identifier, anything that has one as ``.id`` (`features.FeatureSpace`), or
#: an extractor (its ``.feature_space``).
FeatureSpaceLike = str | _Identified | _Extracting


def feature_space_id(space: FeatureSpaceLike | None) -> str | None:
    """The identifier the service compares: ``space`` itself, its ``.id``, or an extractor's
    ``.feature_space.id``; checked to be one the ``Feature-Space`` header can carry."""
    if space is None:
        return None
    if isinstance(space, str):
        text = space
    elif hasattr(space, "feature_space"):
        text = space.feature_space.id
    else:
        text = space.id
    if not _FEATURE_SPACE.fullmatch(text):
        raise ValueError(
            f"feature space {text!r}: 1 to 256 printable ASCII characters without spaces"
        )
    return text


@dataclass(frozen=True)
class ClientConfig:
    """Settings of a `RewardClient` / `AsyncRewardClient`.

    Attributes:
        base_url: Root of the service, e.g. ``http://reward:8000``.
        token: Bearer token (trainer or admin role). Not shown in ``repr``.
        timeout: Seconds to wait for each network operation (connect, write, read).
        retries: Further attempts after the first when the service is busy or unavailable
            (429, 502, 503, 504) or unreachable (connection errors, timeouts). Other 4xx and
            5xx answers are never retried.
        backoff: First retry delay in seconds; doubles with each retry (with jitter).
        max_backoff: Upper bound of any one wait, including one asked for by ``Retry-After``,
            so a misconfigured proxy cannot park a trainer for an hour.
        binary: Send arrays as ``.npy`` bodies (compact, exact) rather than JSON lists.
        wire_dtype: Float format of feature arrays on the wire.
        version: Pool version to pin reward requests to (409 `VersionMismatch` when the
            service holds another one); ``None`` takes whatever version the service has.
            A per-call ``version=`` overrides it.
        chunk_bytes: Target size of one pool-upload chunk; keeps each request well under the
            service's body limit.
        read_your_writes: Rewards and credits name the version of this client's last commit
            to each reference (``after``), so that they are answered at a version that holds
            it however far the service may let other trainers' rows lag.
        turnover_steps: A reward answer whose pool takes more trainer steps than this to renew
            at the recent commit volume (its ``turnover_calls`` / ``ranks``) counts as
            rewarding against a pool that lags the policy. Per-sample credits lost most of
            their gain beyond about 60 steps (DESIGN section 8).
        ranks: Processes that share the pool, each making one reward call a step; None reads
            ``WORLD_SIZE`` (as torchrun sets it), 1 without.
        stalled_calls: After this many such answers in a row for one reference, the client
            logs one warning for it (once per client and reference).
        feature_space: Identifier of the feature space of the features this client posts
            (``extractor.feature_space.id``), sent as the ``Feature-Space`` header with every
            request that carries features; a reference of another space answers 409
            (`Conflict`). ``None`` sends none, which only references of feature space
            ``"unknown"`` accept. A per-call ``feature_space=`` overrides it.
    """

    base_url: str = _DEFAULT_URL
    token: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    binary: bool = True
    wire_dtype: WireDType = "float32"
    version: int | None = None
    chunk_bytes: int = 16 * 2**20
    read_your_writes: bool = True
    turnover_steps: float = 60.0
    ranks: int | None = None
    stalled_calls: int = 8
    feature_space: str | None = None

    def __post_init__(self) -> None:
        feature_space_id(self.feature_space)  # refused here rather than by the service
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")
        if self.wire_dtype not in ("float32", "float16", "float64"):
            raise ValueError(
                f"wire_dtype must be float32, float16 or float64, got {self.wire_dtype!r}"
            )
        if self.chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        if not self.turnover_steps > 0 or self.stalled_calls < 1:
            raise ValueError("turnover_steps must be positive and stalled_calls be >= 1")
        if self.ranks is not None and self.ranks < 1:
            raise ValueError("ranks must be >= 1, or None to read WORLD_SIZE")

    @property
    def sharing_ranks(self) -> int:
        """``ranks``, or ``WORLD_SIZE`` (1 without)."""
        if self.ranks is not None:
            return self.ranks
        try:
            return max(1, int(os.environ.get("WORLD_SIZE", "1")))
        except ValueError:
            return 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Settings from ``DISTREWARD_URL``, ``DISTREWARD_TOKEN`` and
        ``DISTREWARD_FEATURE_SPACE``, then ``overrides``.

        Tokens belong in the environment (or a secret store), not in training scripts.
        """
        env = os.environ if env is None else env
        base = cls()
        if "DISTREWARD_URL" in env:
            base = replace(base, base_url=env["DISTREWARD_URL"])
        if "DISTREWARD_TOKEN" in env:
            base = replace(base, token=env["DISTREWARD_TOKEN"])
        if env.get("DISTREWARD_FEATURE_SPACE"):
            base = replace(base, feature_space=env["DISTREWARD_FEATURE_SPACE"])
        return replace(base, **overrides)

"""Service settings, read from the environment (prefix ``DISTREWARD_``).

Token rule: outside ``DISTREWARD_ENV=development`` the service refuses to start without at least
one token, and refuses tokens shorter than 16 characters or known placeholders ("changeme", ...).
In development with no token at all, authentication is off (every caller acts as admin) and the
service logs a warning; tokens that are set are always enforced.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .engine import MAX_FEATURE_MAGNITUDE
from .replication.freshness import FRESHNESS_SECONDS, FRESHNESS_VERSIONS

__all__ = ["MIN_TOKEN_LENGTH", "PLACEHOLDER_TOKENS", "Settings", "get_settings"]

MIN_TOKEN_LENGTH = 16
PLACEHOLDER_TOKENS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "token", "password", "admin", "trainer"}
)

TokenList = Annotated[tuple[str, ...], NoDecode]
AddressList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """Everything the service can be told from outside; one instance per app."""

    model_config = SettingsConfigDict(env_prefix="DISTREWARD_", frozen=True, extra="ignore")

    env: Literal["development", "production"] = "production"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    redis_url: str = Field(default="", description='Redis URL; "" keeps state in process memory')
    redis_sentinels: AddressList = Field(
        default=(),
        description='Redis Sentinel addresses "host:port", comma-separated, instead of '
        "redis_url: the sentinels name the primary, and the service follows its failovers",
    )
    redis_master_name: str = Field(
        default="distreward", min_length=1, description="the name the sentinels monitor it by"
    )
    redis_password: str = Field(
        default="", description="AUTH password of the Redis nodes the sentinels name"
    )
    redis_sentinel_password: str = Field(
        default="", description="AUTH password of the sentinels themselves"
    )
    redis_min_replicas: int | None = Field(
        default=None,
        ge=0,
        description="replicas that must hold a write before it is acknowledged (WAIT); unset: "
        "1 with sentinels, 0 with redis_url",
    )
    redis_replica_wait_seconds: float = Field(
        default=1.0,
        gt=0,
        description="how long a write waits for those replicas before it answers 503 (below "
        "redis_timeout_seconds, which bounds every Redis reply)",
    )
    redis_timeout_seconds: float = Field(default=5.0, gt=0)
    store_probe_seconds: float = Field(
        default=1.0, ge=0, description="after a store failure, reads skip the store this long"
    )

    tokens: TokenList = Field(default=(), description="trainer tokens, comma-separated")
    admin_tokens: TokenList = Field(default=(), description="admin tokens, comma-separated")

    device: str = Field(default="", description='engine torch device; "" picks CUDA if present')

    max_body_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    max_target_npz_bytes: int = Field(
        default=8 * 1024**3,
        ge=1024,
        description="a target .npz body, spooled to disk: only its mu and sigma are read (each "
        "within max_body_bytes), so reference batches with their images fit",
    )
    spool_dir: str = Field(
        default="", description='where target .npz bodies are spooled; "" = the system temp dir'
    )
    max_groups: int = Field(default=256, ge=1)
    max_group_size: int = Field(default=4096, ge=1)
    max_samples: int = Field(
        default=16384, ge=1, description="samples per per-sample credits request"
    )
    freshness_versions: int = Field(
        default=FRESHNESS_VERSIONS,
        ge=1,
        description="pool freshness counts rows committed within this many versions",
    )
    freshness_seconds: float = Field(
        default=FRESHNESS_SECONDS,
        gt=0,
        description="... and within this many seconds",
    )
    max_lag_share: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="rewards and credits may be answered from the version held while the "
        "store holds newer commits of at most this share of the pool's rows (one turnover): "
        "beyond it, or below the caller's own last commit (after), they wait for the catch-up",
    )
    share_builds: bool = Field(
        default=True,
        description="processes on one Redis build each version precompute once: one claims the "
        "build and shares it through Redis, the others adopt it (checked against their rows)",
    )
    build_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long a claim to build lasts: a builder that dies frees it after this",
    )
    round_ttl_seconds: int = Field(
        default=3600, ge=1, description="how long a round of credits keeps its version"
    )
    max_feature_abs: float = Field(
        default=1e6,
        gt=0,
        le=MAX_FEATURE_MAGNITUDE,  # beyond it the engine refuses the values itself
        description="largest |value| of a feature (target mu: this; target sigma: its square)",
    )
    sigma_psd_tolerance: float = Field(
        default=1e-9,
        ge=0,
        description="target sigma is PSD when min eigenvalue >= -tolerance * max eigenvalue",
    )
    max_concurrent_compute: int = Field(
        default=1,
        ge=1,
        description="engine calls running at once; one uses every core (and the GPU) itself, "
        "and a second beside it only shares them, letting one token's call slow another's",
    )
    compute_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="niceness added to the threads that compute rewards, so that the event "
        "loop, commits (short, their answers waiting) and rebuilds get the cores first",
    )
    rebuild_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="most of the time a replica spends rebuilding one reference: after a "
        "rebuild of t seconds the next waits t (1 / share - 1), unless the rows pending take "
        "half of what a reward's low-rank update may hold",
    )
    token_max_compute: int = Field(
        default=1, ge=1, description="of those, the engine calls one token may hold at once"
    )
    token_max_in_flight: int = Field(
        default=4, ge=1, description="array-body requests one token may have in flight (429 beyond)"
    )
    decode_memory_bytes: int = Field(
        default=2 * 1024**3,
        ge=1024 * 1024,
        description="request bodies in flight and the arrays decoded from them, per process; "
        "one token may hold half",
    )
    decode_wait_seconds: float = Field(
        default=5.0, ge=0, description="a request waits this long for decode memory, then 429"
    )
    body_idle_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="a request body that sends nothing for this long is answered 408 and gives "
        "back the memory it had reserved",
    )
    max_request_gflop: float = Field(
        default=500.0,
        gt=0,
        description="estimated engine work of one rewards or credits request (413 beyond)",
    )
    max_json_fields_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="a JSON array body's members beside the array (mode, seed, indices ...)",
    )
    retry_after_seconds: int = Field(default=2, ge=1, description="Retry-After of a 429 or 503")
    idempotency_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    snapshot_every: int = Field(
        default=1000, ge=1, description="commits between pool snapshots written to the store"
    )

    @field_validator("tokens", "admin_tokens", "redis_sentinels", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """Accept ``"a,b"`` from the environment as well as a sequence from code."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check_tokens(self) -> Settings:
        if self.env == "development":
            return self
        every = (*self.tokens, *self.admin_tokens)
        if not every:
            raise ValueError(
                "no tokens configured: set DISTREWARD_TOKENS and/or DISTREWARD_ADMIN_TOKENS "
                "(comma-separated), or DISTREWARD_ENV=development for an open local service"
            )
        for token in every:
            if len(token) < MIN_TOKEN_LENGTH or token.lower() in PLACEHOLDER_TOKENS:
                raise ValueError(
                    f"a configured token is a placeholder or shorter than {MIN_TOKEN_LENGTH} "
                    "characters; generate one with `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )
        return self

    @model_validator(mode="after")
    def _check_redis(self) -> Settings:
        if self.redis_url and self.redis_sentinels:
            raise ValueError(
                "set DISTREWARD_REDIS_URL or DISTREWARD_REDIS_SENTINELS, not both: with "
                "sentinels, the sentinels name the Redis primary"
            )
        for address in self.redis_sentinels:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(
                    f"DISTREWARD_REDIS_SENTINELS: {address!r} is not host:port "
                    "(e.g. 10.0.0.5:26379)"
                )
        if self.min_replicas and self.store_kind == "memory":
            raise ValueError(
                "DISTREWARD_REDIS_MIN_REPLICAS needs Redis replicas: set DISTREWARD_REDIS_URL "
                "or DISTREWARD_REDIS_SENTINELS"
            )
        if self.min_replicas and self.redis_replica_wait_seconds >= self.redis_timeout_seconds:
            raise ValueError(
                "DISTREWARD_REDIS_REPLICA_WAIT_SECONDS must be below "
                "DISTREWARD_REDIS_TIMEOUT_SECONDS: the wait for replicas is one Redis reply"
            )
        return self

    @property
    def min_replicas(self) -> int:
        """Replicas that must hold a write before it is acknowledged: 1 by default with
        sentinels (a failover then loses nothing acknowledged), 0 with a plain URL."""
        if self.redis_min_replicas is not None:
            return self.redis_min_replicas
        return 1 if self.redis_sentinels else 0

    @property
    def auth_enabled(self) -> bool:
        """False only in development with no token configured."""
        return bool(self.tokens or self.admin_tokens)

    @property
    def store_kind(self) -> str:
        return "redis" if self.redis_url or self.redis_sentinels else "memory"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings from the environment (cached; tests pass their own)."""
    return Settings()

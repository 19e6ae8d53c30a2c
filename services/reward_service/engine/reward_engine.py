"""Subset-replace rewards against a Fréchet target, exact and low-rank, in float64.

A pool of N generated features has sufficient statistics ``s = sum x`` and ``G = sum x x^T``. A
group ``Y`` (K x d) replacing rows ``I`` moves the pool's Fréchet distance to the target from
``FD_0`` to ``FD_I(Y)``; the group's reward is ``FD_0 - FD_I(Y)``. With rows centred at the
current pool mean ``mu`` (``x~ = x - mu``, ``y~ = y - mu``) and ``delta = mu' - mu =
(sum y~ - sum x~) / N``, the new covariance is

    S' = S + U C U^T,   U = [X~_I^T, Y~^T, delta],   C = diag(-1_K, +1_K, -N) / (N - 1)

(centring keeps large feature means from cancelling in ``G``). The mean and trace terms of the
FD change in closed form; ``tr sqrt(A S' A)``, ``A = S_r^{1/2}``, is the hard part:

* ``exact``: ``M' = A S A + (A U) C (A U)^T`` and one float64 ``eigvalsh`` per group, O(d^3).
* ``lowrank``: the change of ``tr sqrt`` by certified quadrature in ``M``'s eigenbasis
  (:mod:`.lowrank`), O(n d r^2) per group with ``r = 2K + 1``; groups it cannot certify are
  recomputed exactly, and ``methods_used`` says which.

Each pool version's precompute (``M = A S A = Q diag(lam) Q^T`` and ``B = Q^T A``, an O(d^3)
eigendecomposition) is immutable. A commit builds the next one while the current one keeps
serving, then swaps it in under a short lock, so a reward request sees one consistent version.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .choices import METHODS, Method, Mode
from .linalg import (
    as_float64,
    frechet_from_terms,
    gaussian_of,
    resolve_device,
    symmetric_sqrt,
    symmetrize,
    trace_sqrt_psd,
)
from .lowrank import LowRankUpdate, QuadratureSettings, trace_sqrt_change
from .selection import choose_rows
from .validation import check_features, check_groups

__all__ = ["ADVANTAGE_EPSILON", "RewardEngine", "RewardResult"]

ADVANTAGE_EPSILON = 1e-8
"""Added to the standard deviation in ``(r - mean) / (std + eps)``: equal rewards give zero
advantages instead of 0/0."""

_EXACT_BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class RewardResult:
    """Rewards of the G groups of one request, all from pool version ``version``.

    ``rewards = base_fd - fds``; ``advantages`` are the rewards normalised over the request
    (ddof 0, :data:`ADVANTAGE_EPSILON`); ``indices`` are the pool rows each group replaced;
    ``methods_used`` names, per group, the path that produced its numbers (``exact`` where the
    low-rank path fell back); ``error_estimates`` is the low-rank path's estimated absolute error
    of each reward (NaN for exact groups).
    """

    fds: np.ndarray
    rewards: np.ndarray
    advantages: np.ndarray
    indices: np.ndarray
    seed: int | None
    mode: Mode
    method: Method
    methods_used: tuple[Method, ...]
    error_estimates: np.ndarray
    version: int
    base_fd: float
    compute_seconds: float


@dataclass(frozen=True)
class _Version:
    """One pool version: statistics and the precompute the reward paths share."""

    version: int
    n: int
    total: torch.Tensor  # sum x, (d,)
    gram: torch.Tensor  # sum x x^T, (d, d)
    mean: torch.Tensor
    trace_cov: float
    spectrum_matrix: torch.Tensor  # M = A S A
    eigenvalues: torch.Tensor  # of M, ascending, unclipped
    projector: torch.Tensor  # B = Q^T A
    base_fd: float


class RewardEngine:
    """Holds a target, a pool and its statistics; computes subset-replace rewards and rolls the
    pool. Thread-safe: rewards run concurrently with each other and with one commit at a time.

    ``device``: ``None`` picks CUDA when available, else CPU. All reward arithmetic is float64.
    """

    def __init__(
        self,
        target_mu: Any,
        target_sigma: Any,
        pool_features: Any,
        device: str | torch.device | None = None,
        version: int = 0,
        quadrature: QuadratureSettings | None = None,
        *,
        cursor: int = 0,
        statistics: tuple[Any, Any] | None = None,
    ) -> None:
        self._device = resolve_device(device)
        mu = as_float64(target_mu, self._device, "target_mu")
        if mu.ndim != 1 or mu.shape[0] < 1:
            raise ValueError(f"target_mu must have shape (d,); got {tuple(mu.shape)}")
        d = mu.shape[0]
        sigma = as_float64(target_sigma, self._device, "target_sigma")
        if tuple(sigma.shape) != (d, d):
            raise ValueError(f"target_sigma must have shape ({d}, {d}); got {tuple(sigma.shape)}")
        for name, value in (("target_mu", mu), ("target_sigma", sigma)):
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or Inf")
        pool = as_float64(pool_features, self._device, "pool_features")
        check_features(pool, d, "pool_features", min_rows=2)
        if not 0 <= cursor < pool.shape[0]:
            raise ValueError(f"cursor must lie in [0, {pool.shape[0]}); got {cursor}")
        self._settings = quadrature or QuadratureSettings()
        self._target_mean = mu
        self._target_sigma = symmetrize(sigma)
        self._target_trace = float(self._target_sigma.trace())
        self._target_root = symmetric_sqrt(self._target_sigma)
        self._pool = pool.clone()
        self._cursor = cursor
        if statistics is None:
            total, gram = self._pool.sum(0), self._pool.T @ self._pool
        else:
            total = as_float64(statistics[0], self._device, "sum")
            gram = as_float64(statistics[1], self._device, "gram")
            if tuple(total.shape) != (d,) or tuple(gram.shape) != (d, d):
                raise ValueError("statistics must be (sum (d,), gram (d, d))")
        self._current = self._build_version(version, self._pool.shape[0], total, gram)
        # The swap lock guards the pool rows, the cursor and the current version together and is
        # held only for gathers and pointer swaps; the commit lock serialises commits, whose slow
        # precompute runs outside the swap lock.
        self._swap_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def d(self) -> int:
        return int(self._target_mean.shape[0])

    @property
    def n(self) -> int:
        return self._current.n

    @property
    def version(self) -> int:
        return self._current.version

    @property
    def base_fd(self) -> float:
        """FD of the current pool to the target."""
        return self._current.base_fd

    @property
    def cursor(self) -> int:
        """The next pool row a commit replaces (ring order: oldest first)."""
        return self._cursor

    # ----------------------------------------------------------------- precompute
    def _build_version(
        self, version: int, n: int, total: torch.Tensor, gram: torch.Tensor
    ) -> _Version:
        gram = symmetrize(gram)
        mean = total / n
        covariance = symmetrize((gram - n * torch.outer(mean, mean)) / (n - 1))
        root = self._target_root
        spectrum_matrix = symmetrize(root @ covariance @ root)
        eigenvalues, eigenvectors = torch.linalg.eigh(spectrum_matrix)
        trace_cov = float(covariance.trace())
        cross = eigenvalues.clamp_min(0.0).sqrt().sum()
        base_fd = float(
            frechet_from_terms(self._mean_term(mean), trace_cov, self._target_trace, cross)
        )
        return _Version(
            version=version,
            n=n,
            total=total,
            gram=gram,
            mean=mean,
            trace_cov=trace_cov,
            spectrum_matrix=spectrum_matrix,
            eigenvalues=eigenvalues,
            projector=eigenvectors.T @ root,
            base_fd=base_fd,
        )

    # ----------------------------------------------------------------- rewards
    def rewards(
        self,
        groups: Any,
        mode: Mode = "shared",
        seed: int | None = None,
        indices: Any = None,
        method: Method = "lowrank",
    ) -> RewardResult:
        """Subset-replace rewards of ``groups`` (G, K, d) against the current pool version.

        ``mode``: ``shared`` (one random row set for all groups), ``independent`` (one per
        group) or ``indices`` (the caller's rows, (K,) or (G, K)). ``seed`` makes the draw
        reproducible and is echoed (drawn when ``None``). ``method``: ``lowrank`` (certified
        fast path, exact fallback per group) or ``exact``.
        """
        started = time.perf_counter()
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        ys = as_float64(groups, self._device, "groups")
        check_groups(ys, self.d)
        count, size = ys.shape[0], ys.shape[1]
        with self._swap_lock:
            state = self._current
            rows, used_seed = choose_rows(mode, count, size, state.n, seed, indices)
            distinct = rows[:1] if mode == "shared" else rows
            xs = self._pool[torch.as_tensor(distinct, device=self._device)]
        terms = _GroupTerms.of(state, xs, ys, self._target_mean)
        errors = torch.full((count,), torch.nan, dtype=torch.float64, device=self._device)
        if method == "lowrank" and 2 * size + 1 <= self._settings.max_rank_fraction * self.d:
            rewards, errors = self._lowrank_rewards(state, terms)
            tolerance = torch.clamp(
                self._settings.reward_rtol * rewards.abs(),
                min=self._settings.reward_atol * max(1.0, abs(state.base_fd)),
            )
            certified = torch.isfinite(errors) & (errors <= tolerance)
        else:
            rewards = torch.zeros(count, dtype=torch.float64, device=self._device)
            certified = torch.zeros(count, dtype=torch.bool, device=self._device)
        fallback = torch.nonzero(~certified).flatten()
        if fallback.numel():
            rewards[fallback] = self._exact_rewards(state, terms.select(fallback))
            errors[fallback] = torch.nan
        rewards_np = rewards.cpu().numpy()
        centred = rewards_np - rewards_np.mean()
        advantages = centred / (rewards_np.std() + ADVANTAGE_EPSILON)
        used: tuple[Method, ...] = tuple(
            "lowrank" if flag else "exact" for flag in certified.cpu().tolist()
        )
        return RewardResult(
            fds=state.base_fd - rewards_np,
            rewards=rewards_np,
            advantages=advantages,
            indices=np.array(rows),
            seed=used_seed,
            mode=mode,
            method=method,
            methods_used=used,
            error_estimates=errors.cpu().numpy(),
            version=state.version,
            base_fd=state.base_fd,
            compute_seconds=time.perf_counter() - started,
        )

    def _lowrank_rewards(
        self, state: _Version, terms: _GroupTerms
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards by quadrature and their estimated absolute errors."""
        size = terms.ys.shape[1]
        projector_t = state.projector.T
        weight = 1.0 / (state.n - 1)
        unit = torch.ones(size, dtype=torch.float64, device=self._device)
        update = LowRankUpdate(
            shared=(terms.xs @ projector_t).transpose(1, 2),
            own=torch.cat(
                [terms.ys @ projector_t, (terms.delta @ projector_t).unsqueeze(1)], dim=1
            ).transpose(1, 2),
            shared_weights=-weight * unit,
            own_weights=torch.cat([weight * unit, -state.n * weight * unit[:1]]),
        )
        change = trace_sqrt_change(state.eigenvalues, update, self._settings)
        rewards = 2.0 * change.change - terms.mean_change - terms.trace_change
        return rewards, 2.0 * change.error_estimate

    def _exact_rewards(self, state: _Version, terms: _GroupTerms) -> torch.Tensor:
        """Rewards from the updated statistics and one ``eigvalsh`` of ``M'`` per group."""
        count = terms.ys.shape[0]
        root = self._target_root
        removed = terms.xs @ root  # (1 or G, K, d): rows of (A X~^T)^T
        added = terms.ys @ root
        shift = terms.delta @ root
        removed_gram = removed.transpose(1, 2) @ removed
        block = max(1, _EXACT_BLOCK_BYTES // (self.d * self.d * 8))
        cross = []
        for start in range(0, count, block):
            part = slice(start, start + block)
            update = (
                added[part].transpose(1, 2) @ added[part]
                - (removed_gram if removed_gram.shape[0] == 1 else removed_gram[part])
                - state.n * shift[part].unsqueeze(2) * shift[part].unsqueeze(1)
            ) / (state.n - 1)
            cross.append(trace_sqrt_psd(state.spectrum_matrix + update))
        mean_term = self._mean_term(state.mean) + terms.mean_change
        trace_term = state.trace_cov + terms.trace_change
        fds = frechet_from_terms(mean_term, trace_term, self._target_trace, torch.cat(cross))
        return state.base_fd - fds

    # ----------------------------------------------------------------- commits
    def commit(self, features: Any) -> int:
        """Roll the pool: ``features`` (K, d) replace the K oldest rows (ring order). Statistics
        are updated in O(K d^2); the new version's precompute is built while the current one
        keeps serving, then swapped in. Returns the new version."""
        ys = as_float64(features, self._device, "features")
        check_features(ys, self.d, min_rows=1)
        with self._commit_lock:
            state = self._current
            size = ys.shape[0]
            if size > state.n:
                raise ValueError(f"a commit of {size} rows exceeds the pool of N={state.n}")
            rows = (self._cursor + torch.arange(size, device=self._device)) % state.n
            old = self._pool[rows]
            total = state.total - old.sum(0) + ys.sum(0)
            gram = state.gram - old.T @ old + ys.T @ ys
            successor = self._build_version(state.version + 1, state.n, total, gram)
            with self._swap_lock:
                self._pool[rows] = ys
                self._cursor = (self._cursor + size) % state.n
                self._current = successor
            return successor.version

    # ----------------------------------------------------------------- evaluation
    def fd(self, features: Any) -> float:
        """Fréchet distance of the Gaussian fitted to ``features`` (n >= 2 rows) to the target."""
        xs = as_float64(features, self._device, "features")
        check_features(xs, self.d, min_rows=2)
        mean, covariance = gaussian_of(xs)
        root = self._target_root
        cross = trace_sqrt_psd(root @ covariance @ root)
        trace = covariance.trace()
        return float(frechet_from_terms(self._mean_term(mean), trace, self._target_trace, cross))

    def _mean_term(self, mean: torch.Tensor) -> torch.Tensor:
        """``|mu - mu_r|^2``, the FD's mean term."""
        return (mean - self._target_mean).square().sum()

    # ----------------------------------------------------------------- state
    def statistics(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Copies of ``(sum x, sum x x^T, N)`` of the current version, float64."""
        state = self._current
        return state.total.cpu().numpy().copy(), state.gram.cpu().numpy().copy(), state.n

    def pool(self) -> np.ndarray:
        """A float64 copy of the pool rows, in storage order."""
        with self._swap_lock:
            return self._pool.cpu().numpy().copy()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this engine: target, pool, ring cursor, version, and the
        sufficient statistics (which spare an O(N d^2) recompute on load)."""
        with self._swap_lock:
            state = self._current
            return {
                "target_mu": self._target_mean.cpu().numpy().copy(),
                "target_sigma": self._target_sigma.cpu().numpy().copy(),
                "pool": self._pool.cpu().numpy().copy(),
                "cursor": self._cursor,
                "version": state.version,
                "sum": state.total.cpu().numpy().copy(),
                "gram": state.gram.cpu().numpy().copy(),
            }

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, Any],
        device: str | torch.device | None = None,
        quadrature: QuadratureSettings | None = None,
    ) -> RewardEngine:
        """Rebuild an engine from :meth:`state_dict` output (``sum``/``gram`` optional)."""
        statistics = (state["sum"], state["gram"]) if "sum" in state and "gram" in state else None
        return cls(
            state["target_mu"],
            state["target_sigma"],
            state["pool"],
            device=device,
            version=int(state["version"]),
            quadrature=quadrature,
            cursor=int(state.get("cursor", 0)),
            statistics=statistics,
        )


@dataclass(frozen=True)
class _GroupTerms:
    """Per-group quantities both reward paths use: centred replaced and new rows, the mean shift
    and the closed-form changes of the FD's mean and trace terms."""

    xs: torch.Tensor  # (1 or G, K, d), centred at the pool mean
    ys: torch.Tensor  # (G, K, d), centred
    delta: torch.Tensor  # (G, d) = mu' - mu
    mean_change: torch.Tensor  # |mu' - mu_r|^2 - |mu - mu_r|^2
    trace_change: torch.Tensor  # tr S' - tr S

    @classmethod
    def of(
        cls, state: _Version, xs: torch.Tensor, ys: torch.Tensor, target_mean: torch.Tensor
    ) -> _GroupTerms:
        n = state.n
        xs = xs - state.mean
        ys = ys - state.mean
        delta = (ys.sum(1) - xs.sum(1)) / n
        mean_change = (delta * (2.0 * (state.mean - target_mean) + delta)).sum(-1)
        trace_change = (
            ys.square().sum((1, 2)) - xs.square().sum((1, 2)) - n * delta.square().sum(-1)
        ) / (n - 1)
        return cls(xs, ys, delta, mean_change, trace_change)

    def select(self, chosen: torch.Tensor) -> _GroupTerms:
        """The terms of the groups ``chosen`` (indices)."""
        xs = self.xs if self.xs.shape[0] == 1 else self.xs[chosen]
        return _GroupTerms(
            xs,
            self.ys[chosen],
            self.delta[chosen],
            self.mean_change[chosen],
            self.trace_change[chosen],
        )

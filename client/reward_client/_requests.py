"""The requests of the contract (docs/API.md), built from an operation's arguments.

One function per operation turns the arguments of the public method (and the settings that
shape a request: wire format and dtype, feature space, pinned version) into the `Call` it
sends: method, path, query parameters, headers and body. Nothing here sends, sleeps or
remembers: what the client remembers (the version its own commits made) and the idempotency
key it picked come in as arguments, so every request can be checked without HTTP. The options
rewards and credits share travel as one `ScoreOptions` and are put on the request in one place
(`_scored`). Arrays are validated here, before anything is sent: a malformed batch is a bug in
the caller.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from ._config import ClientConfig, FeatureSpaceLike, feature_space_id
from ._encoding import ArrayLike, as_numpy, npy_bytes, read_stats, stats_npz, wire_array
from ._protocol import Call
from ._types import CreditForm, Method, Mode

__all__ = [
    "FEATURE_SPACE",
    "IDEMPOTENCY_KEY",
    "NPY",
    "NPZ",
    "PoolChunk",
    "PoolUpload",
    "ScoreOptions",
    "commit",
    "credits",
    "delete",
    "fd",
    "fresh_key",
    "health",
    "info",
    "pool",
    "ready",
    "reference_path",
    "references",
    "rewards",
    "target",
]

NPY = "application/x-npy"
NPZ = "application/x-npz"
FEATURE_SPACE = "Feature-Space"
IDEMPOTENCY_KEY = "Idempotency-Key"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ScoreOptions:
    """The options of the public ``rewards`` and ``credits`` that both requests handle alike:
    the method, the pinned pool version (None: ``config.version``), the share to commit in
    the same request and its idempotency key, the features' space (None: the config's)."""

    method: Method | None = None
    version: int | None = None
    commit_fraction: float | None = None
    idempotency_key: str | None = None
    feature_space: FeatureSpaceLike | None = None

    def keyed(self) -> ScoreOptions:
        """These options, with the key of a request that commits (``commit_fraction`` set)
        fixed now by `fresh_key`, so that every retry sends the same one."""
        if self.commit_fraction is None:
            return self
        return replace(self, idempotency_key=fresh_key(self.idempotency_key))


class PoolChunk(NamedTuple):
    """One request of a pool upload, and the rows the service holds staged once it applied it
    (what it answers for every chunk but the ``final`` one)."""

    call: Call
    staged_rows: int
    final: bool


@dataclass(frozen=True, eq=False)
class PoolUpload:
    """A pool upload, checked and cut into chunks (views of one array; equality is identity,
    as arrays have no single truth value)."""

    config: ClientConfig
    path: str
    headers: Mapping[str, str]
    chunks: tuple[npt.NDArray[Any], ...]

    def requests(self) -> Iterator[PoolChunk]:
        """A ``PUT .../pool``, which starts a fresh staged upload, then a ``POST`` for each
        further chunk, the last with ``final=true``; each encoded only when it is due, so that
        one chunk's body at a time is held. Only the PUT is replay-safe: a resent POST could
        stage its rows twice."""
        staged = 0
        for i, chunk in enumerate(self.chunks):
            staged += len(chunk)
            final = i == len(self.chunks) - 1
            call = _array_call(
                self.config,
                "PUT" if i == 0 else "POST",
                self.path,
                chunk,
                field="features",
                params={"final": final},
                headers=self.headers,
                replay_safe=i == 0,
            )
            yield PoolChunk(call, staged, final)


# -- operations -----------------------------------------------------------------------------


def health() -> Call:
    """``GET /healthz``."""
    return Call("GET", "/healthz")


def ready() -> Call:
    """``GET /readyz``."""
    return Call("GET", "/readyz")


def info(name: str) -> Call:
    """``GET`` one reference."""
    return Call("GET", reference_path(name))


def references() -> Call:
    """``GET`` the list of references."""
    return Call("GET", "/v1/references")


def delete(name: str) -> Call:
    """``DELETE`` one reference."""
    return Call("DELETE", reference_path(name))


def target(
    config: ClientConfig,
    name: str,
    mu: ArrayLike | None,
    sigma: ArrayLike | None,
    features: ArrayLike | None,
    *,
    stats: str | os.PathLike[str] | None,
    feature_space: FeatureSpaceLike | None,
    accept_unknown_feature_space: bool,
) -> Call:
    """``PUT .../target`` of statistics (``mu`` and ``sigma``, or the file ``stats``: an
    ``.npz`` body in float64, or JSON) or of raw ``features`` (an array body).

    The ``Feature-Space`` header is the file's ``feature_space`` member when it records one
    (another declared space is a ValueError), else the call's or the config's.
    """
    headers = _space_header(config, feature_space)
    if stats is not None:
        if mu is not None or sigma is not None or features is not None:
            raise ValueError("pass stats alone, not with mu, sigma or features")
        mu, sigma, recorded = read_stats(stats)
        declared = headers.get(FEATURE_SPACE)
        if recorded is not None and declared is not None and recorded != declared:
            raise ValueError(
                f"{stats} records feature space {recorded!r}, but this call declares {declared!r}"
            )
        if recorded is not None:
            headers = {FEATURE_SPACE: recorded}
    path = reference_path(name) + "/target"
    query = {"accept_unknown_feature_space": "true"} if accept_unknown_feature_space else None
    if features is not None:
        if mu is not None or sigma is not None:
            raise ValueError("pass either mu and sigma, or features, not both")
        array = _features(config, features, 2, "features")
        return _array_call(
            config, "PUT", path, array, field="features", query=query, headers=headers
        )
    if mu is None or sigma is None:
        raise ValueError("pass mu and sigma together, or features")
    # Statistics travel in float64 whatever the wire dtype: sigma's small eigenvalues are
    # exactly what the Fréchet distance is sensitive to.
    mu64 = wire_array(as_numpy(mu, ndim=1, name="mu"), "float64", name="mu")
    sigma64 = wire_array(as_numpy(sigma, ndim=2, name="sigma"), "float64", name="sigma")
    if config.binary:
        content = stats_npz(mu64, sigma64)
        return Call(
            "PUT", path, params=query, content=content, headers={"Content-Type": NPZ, **headers}
        )
    body = {"mu": mu64.tolist(), "sigma": sigma64.tolist()}
    return Call("PUT", path, params=query, json=body, headers=headers)


def pool(
    config: ClientConfig,
    name: str,
    features: ArrayLike,
    chunk_rows: int | None,
    *,
    feature_space: FeatureSpaceLike | None,
) -> PoolUpload:
    """A pool upload of ``features`` (N, d) in chunks of ``chunk_rows`` rows (by default about
    ``config.chunk_bytes`` each), checked and cut here; see `PoolUpload` for its requests."""
    headers = _space_header(config, feature_space)
    array = _features(config, features, 2, "features")
    if chunk_rows is None:
        chunk_rows = max(1, config.chunk_bytes // max(1, array.shape[1] * array.itemsize))
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    chunks = [array[i : i + chunk_rows] for i in range(0, len(array), chunk_rows)] or [array]
    return PoolUpload(config, reference_path(name) + "/pool", headers, tuple(chunks))


def rewards(
    config: ClientConfig,
    name: str,
    groups: ArrayLike,
    *,
    mode: Mode | None,
    seed: int | None,
    indices: ArrayLike | None,
    options: ScoreOptions,
    after: int | None,
) -> Call:
    """``POST .../rewards`` of ``groups`` (G, K, d); ``options`` and ``after`` as for
    `_scored`. Row ``indices`` shared by all groups go in the query string; per-group rows
    need a JSON body.
    """
    array = _features(config, groups, 3, "groups")
    rows: npt.NDArray[np.int64] | None = None
    binary = config.binary
    if indices is not None:
        rows = as_numpy(indices, ndim=(1, 2), name="indices").astype(np.int64)
        mode = "indices" if mode is None else mode
        # The query string carries one row set shared by all groups: collapse identical
        # rows to it, and send truly per-group rows as JSON.
        if rows.ndim == 2 and (rows == rows[:1]).all():
            rows = rows[0]
        binary = binary and rows.ndim == 1
    params = {"mode": mode, "seed": seed, "indices": rows}
    return _scored(
        config,
        name,
        "rewards",
        array,
        field="groups",
        params=params,
        options=options,
        after=after,
        binary=binary,
    )


def credits(
    config: ClientConfig,
    name: str,
    samples: ArrayLike,
    *,
    form: CreditForm | None,
    seed: int | None,
    row: int | None,
    round: str | None,
    options: ScoreOptions,
    after: int | None,
) -> Call:
    """``POST .../credits`` of ``samples`` (B, d); ``options`` and ``after`` as for `_scored`."""
    array = _features(config, samples, 2, "samples")
    params = {"form": form, "seed": seed, "row": row, "round": round}
    return _scored(
        config,
        name,
        "credits",
        array,
        field="samples",
        params=params,
        options=options,
        after=after,
    )


def commit(
    config: ClientConfig,
    name: str,
    features: ArrayLike,
    idempotency_key: str,
    *,
    feature_space: FeatureSpaceLike | None,
) -> Call:
    """``POST .../commit`` of ``features`` (K, d) under ``idempotency_key``."""
    space = _space_header(config, feature_space)
    array = _features(config, features, 2, "features")
    path = reference_path(name) + "/commit"
    headers = _keyed(space, idempotency_key)
    return _array_call(config, "POST", path, array, field="features", headers=headers)


def fd(
    config: ClientConfig, name: str, features: ArrayLike, *, feature_space: FeatureSpaceLike | None
) -> Call:
    """``POST .../fd`` of ``features`` (n, d)."""
    path = reference_path(name) + "/fd"
    array = _features(config, features, 2, "features")
    headers = _space_header(config, feature_space)
    return _array_call(config, "POST", path, array, field="features", headers=headers)


def fresh_key(idempotency_key: str | None) -> str:
    """``idempotency_key``, else a fresh uuid4, for a request that commits: picked once per
    operation and reused on every retry, so that the service applies the commit once."""
    return uuid.uuid4().hex if idempotency_key is None else idempotency_key


# -- pieces ---------------------------------------------------------------------------------


def reference_path(name: str) -> str:
    """``/v1/references/<name>``; a name the service would refuse is a ValueError here."""
    if not _NAME.match(name):
        raise ValueError(
            f"reference name {name!r} must match {_NAME.pattern} (letters, digits, . _ -)"
        )
    return "/v1/references/" + quote(name, safe="")


def _features(config: ClientConfig, x: ArrayLike, ndim: int, name: str) -> npt.NDArray[Any]:
    return wire_array(as_numpy(x, ndim=ndim, name=name), config.wire_dtype, name=name)


def _space_header(config: ClientConfig, feature_space: FeatureSpaceLike | None) -> dict[str, str]:
    """The ``Feature-Space`` header of a request that posts features: the call's space, else
    the config's; none when neither is set."""
    space = feature_space_id(feature_space) or config.feature_space
    return {} if space is None else {FEATURE_SPACE: space}


def _keyed(headers: Mapping[str, str], key: str | None) -> dict[str, str]:
    """``headers`` with the idempotency key, if any: in the ``Idempotency-Key`` header whatever
    the body's format (the service's commit route reads it only there)."""
    if key is None:
        return dict(headers)
    if not 1 <= len(key) <= 128:
        raise ValueError("idempotency_key must have 1 to 128 characters")
    return {**headers, IDEMPOTENCY_KEY: key}


def _scored(
    config: ClientConfig,
    name: str,
    route: str,
    array: npt.NDArray[Any],
    *,
    field: str,
    params: Mapping[str, Any],
    options: ScoreOptions,
    after: int | None,
    binary: bool | None = None,
) -> Call:
    """``POST .../<route>`` of a rewards or credits request: ``array`` under ``field``, the
    operation's own ``params`` and ``options``. ``options.version`` (else ``config.version``)
    pins the pool version; without a pin, ``after`` (the version of this client's last
    commit) asks for a version that holds it."""
    version = config.version if options.version is None else options.version
    shared = {
        "method": options.method,
        "version": version,
        "after": None if version is not None else after,
        "commit_fraction": options.commit_fraction,
    }
    path = reference_path(name) + "/" + route
    space = _space_header(config, options.feature_space)
    headers = _keyed(space, options.idempotency_key)
    return _array_call(
        config,
        "POST",
        path,
        array,
        field=field,
        params={**params, **shared},
        headers=headers,
        binary=binary,
        version_pinned=version is not None,
    )


def _array_call(
    config: ClientConfig,
    method: str,
    path: str,
    array: npt.NDArray[Any],
    *,
    field: str,
    params: Mapping[str, Any] | None = None,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    binary: bool | None = None,
    replay_safe: bool = True,
    version_pinned: bool = False,
) -> Call:
    """A request whose body is one array: a ``.npy`` body with the parameters in the query
    string (``binary``, by default ``config.binary``), or a JSON object with the array under
    ``field`` beside the parameters.

    Parameters that are None are left out, so the service's defaults apply; ``query`` stays
    in the query string in both forms.
    """
    given = {k: v for k, v in (params or {}).items() if v is not None}
    if config.binary if binary is None else binary:
        return Call(
            method,
            path,
            params={**(query or {}), **{k: _query_value(v) for k, v in given.items()}},
            content=npy_bytes(array),
            headers={"Content-Type": NPY, **(headers or {})},
            replay_safe=replay_safe,
            version_pinned=version_pinned,
        )
    body = {field: array.tolist(), **{k: _json_value(v) for k, v in given.items()}}
    return Call(
        method,
        path,
        params=query or None,
        json=body,
        headers=headers,
        replay_safe=replay_safe,
        version_pinned=version_pinned,
    )


def _query_value(value: Any) -> str:
    """Query-string form: booleans as true/false, row sets as comma-separated ints."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, np.ndarray):
        return ",".join(str(int(v)) for v in value)
    return str(value)


def _json_value(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value

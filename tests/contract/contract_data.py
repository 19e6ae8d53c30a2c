"""What the contract test's generated requests meet, and how a positive case is given the facts
the OpenAPI document states in words because JSON Schema cannot express them.

JSON Schema describes one value at a time. The document says, and the service enforces, that
every row of an array has the width ``d`` of the reference named in the path, that a commit fits
in the reference's pool of ``N`` rows, that row numbers lie in ``[0, N)``, that ``indices`` go
with ``mode=indices`` and ``row`` goes with ``form=replace`` and excludes ``seed`` and
``round``, that ``commit_fraction`` needs an idempotency key (one: the JSON member and a
different header are a 400), that ``sigma`` is a covariance matrix, that features come from the
reference's feature space (``Feature-Space``), and that beside a JSON array body the query
string stays empty. :func:`conform` gives a generated *positive* case exactly these facts, from
its own generated values, and changes nothing else: what remains a refusal is a contract
failure. Negative cases are sent as generated, except that a valid ``Feature-Space`` becomes the
reference's, so that they are refused for what they break rather than for naming another space.

Imported by the test and by :mod:`contract_hooks` (the module ``schemathesis`` loads); this one
does not import schemathesis, so the pytest process registers no hooks.
"""

from __future__ import annotations

import io
import math
import os
import re
from typing import Any

import httpx
import numpy as np

REFERENCE = "contract"
"""The reference every request reaches, except those that would change its shape."""
SCRATCH = "contract-scratch"
"""Target and pool uploads and deletes go here, so that ``REFERENCE`` keeps its d and N."""
SPACE = "contract/test-features"
"""The feature space of both references: positive cases name it in ``Feature-Space``."""
D = 3
N = 64
LIMITS = {  # the service's DISTREWARD_* settings: small batches keep generation quick
    "MAX_GROUPS": "4",
    "MAX_GROUP_SIZE": "8",  # <= N: a group always fits in the pool
    "MAX_SAMPLES": "16",
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SPACE_VALUE = re.compile(r"[!-~]{1,256}")  # what the document allows in Feature-Space
KEY = "contract-key"


def reference_for(method: str, path: str, name: str) -> str:
    """The reference a request with a valid ``name`` goes to."""
    if not NAME.fullmatch(name):
        return name  # a name the document forbids: sent as is, to be refused
    writes = method == "DELETE" or path.endswith(("/target", "/pool"))
    return SCRATCH if writes else REFERENCE


def rows(values: list[Any], *, least: int = 1, most: int | None = None) -> list[list[float]]:
    """Generated rows (n, any width) as rows of width ``D``, each row's values repeated or cut,
    between ``least`` and ``most`` rows (rows repeated or cut)."""
    out = [(row * math.ceil(D / len(row)))[:D] for row in values]
    out = (out * math.ceil(least / len(out)))[: max(least, len(out))]
    return out if most is None else out[:most]


def covariance(values: list[list[float]]) -> list[list[float]]:
    """A ``D x D`` covariance from generated rows: ``A A^T / D`` of their first ``D`` rows of
    width ``D`` (symmetric, positive semi-definite, entries within the rows' squared bound)."""
    a = rows(values, least=D, most=D)
    return [[sum(a[i][k] * a[j][k] for k in range(D)) / D for j in range(D)] for i in range(D)]


def _operation(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def conform(
    method: str, path: str, body: Any, query: dict[str, Any], headers: dict[str, Any]
) -> Any:
    """The positive case's body, with ``query`` and ``headers`` adjusted in place."""
    kind = _operation(path)
    headers["Feature-Space"] = SPACE
    json_body = body if isinstance(body, dict) else None
    if json_body is not None and kind != "target":
        query.clear()  # beside a JSON array body every parameter is a member (else a 400)
    params = json_body if json_body is not None else query
    if kind == "rewards":
        groups = body["groups"] if json_body is not None else body
        groups = [rows(group) for group in groups]
        k = len(groups[0])
        groups = [(group * k)[:k] for group in groups]  # one K for every group
        indices = list(range(k))
        if params.get("mode") == "indices":
            params["indices"] = indices if json_body is not None else ",".join(map(str, indices))
        else:
            params.pop("indices", None)
        body = {**json_body, "groups": groups} if json_body is not None else groups
    elif kind == "credits":
        samples = rows(body["samples"] if json_body is not None else body)
        if params.get("row") is not None:
            params["row"] = int(params["row"]) % N
            params.pop("seed", None)
            params["form"] = "replace"  # a row is the replaced one, at the head: no round
            params.pop("round", None)
        body = {**json_body, "samples": samples} if json_body is not None else samples
    elif kind in ("commit", "fd"):
        features = body["features"] if json_body is not None else body
        least, most = (2, None) if kind == "fd" else (1, N)  # fd fits a covariance
        features = rows(features, least=least, most=most)
        body = {**json_body, "features": features} if json_body is not None else features
    elif kind == "pool":
        final = params.get("final", True) in (True, "true")
        features = body["features"] if json_body is not None else body
        features = rows(features, least=2 if final else 1)  # a published pool: 2 rows
        body = {**json_body, "features": features} if json_body is not None else features
    elif kind == "target":
        if isinstance(body, dict) and body.get("features") is not None:
            body = {**body, "features": rows(body["features"], least=2)}
        elif isinstance(body, dict):
            body = {**body, "mu": rows([body["mu"]])[0], "sigma": covariance(body["sigma"])}
            if "feature_space" in body:  # an .npz member, as reward_client writes it
                body["feature_space"] = SPACE
        else:
            body = rows(body, least=2)
    member_key = (json_body or {}).get("idempotency_key")
    if member_key:  # one key: the member's (any string; a header holds latin-1 only)
        for name in [name for name in headers if name.lower() == "idempotency-key"]:
            del headers[name]
    sends_key = member_key or _has_key(headers)
    if (
        kind in ("rewards", "credits")
        and params.get("commit_fraction") is not None
        and not sends_key
    ):
        headers["Idempotency-Key"] = KEY
    return body


def _has_key(headers: dict[str, Any]) -> bool:
    return any(name.lower() == "idempotency-key" and value for name, value in headers.items())


def _put(url: str, token: str, part: str, rows: np.ndarray, **params: str) -> None:
    buffer = io.BytesIO()
    np.save(buffer, rows)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-npy",
        "Feature-Space": SPACE,
    }
    answer = httpx.put(
        f"{url}/{part}", content=buffer.getvalue(), params=params, headers=headers, timeout=30
    )
    if answer.status_code != 200:
        raise RuntimeError(f"PUT {url}/{part}: {answer.status_code} {answer.text}")


def create(base_url: str, admin_token: str, name: str, rows: int = N) -> None:
    """``name`` with a target and a pool of ``rows`` rows (d = D), as an admin sends them."""
    rng = np.random.default_rng(3)
    url = f"{base_url}/v1/references/{name}"
    _put(url, admin_token, "target", rng.normal(size=(4 * rows, D)))
    _put(url, admin_token, "pool", rng.normal(size=(rows, D)))


class Scratch:
    """The scratch reference's state as this process's requests left it (one worker sends them
    all): deleted or not. Before a delete or pool upload of it, :meth:`prepare` gives it what
    the request acts on: a target, and for a further chunk (``POST .../pool``) a started upload."""

    def __init__(self) -> None:
        self.exists = False

    def prepare(self, method: str, path: str, name: str | None) -> None:
        if name != SCRATCH or not (method == "DELETE" or path.endswith("/pool")):
            return
        base_url, token = os.environ["CONTRACT_URL"], os.environ["CONTRACT_ADMIN_TOKEN"]
        url = f"{base_url}/v1/references/{SCRATCH}"
        if not self.exists:
            _put(url, token, "target", np.random.default_rng(3).normal(size=(4, D)))
            self.exists = True
        if method == "POST":
            _put(url, token, "pool", np.zeros((1, D)), final="false")

    def called(self, method: str, name: str | None, status: int) -> None:
        if name == SCRATCH and method == "DELETE" and status == 204:
            self.exists = False

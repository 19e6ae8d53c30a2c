"""Nothing secret in the logs: a full request cycle at DEBUG, errors included, logs neither a
token nor a feature value."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from service_support import ADMIN_TOKEN, TRAINER_TOKEN, Api, D, N

pytestmark = pytest.mark.asyncio

SENTINEL = 31415.92653  # a feature value that cannot appear in a log by accident
UNKNOWN_TOKEN = "unknown-token-never-configured-42"


def _marked(rng: np.random.Generator, *shape: int) -> np.ndarray:
    values = rng.normal(size=shape)
    values.flat[:: max(1, values.size // 7)] = SENTINEL / 1e4  # 3.141592653
    return values


async def test_no_token_or_payload_in_logs_at_debug(
    api: Api, rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    real = _marked(rng, 4 * N, D)
    pool = _marked(rng, N, D).astype(np.float32)
    groups = _marked(rng, 3, 4, D)
    ref = "/v1/references/ref"
    answers = [
        await api.send("PUT", f"{ref}/target", real),
        await api.send("PUT", f"{ref}/pool", pool),
        await api.rewards("ref", groups, seed=3),
        await api.rewards("ref", groups, binary=False, seed=3),
        await api.send("POST", f"{ref}/fd", real[:20], token=TRAINER_TOKEN),
        await api.commit("ref", groups[0], "log-key-1"),
        await api.commit("ref", groups[0], "log-key-1", binary=False),
    ]
    assert [answer.status_code for answer in answers] == [200] * len(answers)
    errors = [
        await api.send("PUT", f"{ref}/pool", pool, token=TRAINER_TOKEN),  # 403
        await api.send("GET", ref, token=UNKNOWN_TOKEN),  # 401
        await api.rewards("ref", np.full((1, 2, D), np.nan)),  # 400
        await api.rewards("ref", groups[:, :, :-1]),  # 400 (d)
        await api.send(
            "POST",
            f"{ref}/rewards",
            binary=False,
            json_fields={"groups": groups.tolist(), "extra": SENTINEL},
        ),  # 422
        await api.rewards("nope", groups),  # 404
    ]
    assert [answer.status_code for answer in errors] == [403, 401, 400, 400, 422, 404]
    assert caplog.records, "nothing was logged at DEBUG: the capture is not working"
    text = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
        for record in caplog.records
    )
    for secret in (ADMIN_TOKEN, TRAINER_TOKEN, UNKNOWN_TOKEN):
        assert secret not in text
    for value in ("3.14159", "31415", repr(float(real[0, 1]))[:10], repr(float(pool[0, 1]))[:8]):
        assert value not in text, value

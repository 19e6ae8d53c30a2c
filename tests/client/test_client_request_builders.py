"""The request of each operation (`reward_client._requests`), built without HTTP: method, path,
query parameters, headers and body, in both wire formats."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_fakes import config

from reward_client import _requests as build
from reward_client._protocol import Call

GROUPS = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
SAMPLES = np.arange(3 * 4, dtype=np.float64).reshape(3, 4)

# Every argument of rewards / credits, unset: what the public methods pass by default.
UNSET_REWARDS: dict[str, Any] = dict.fromkeys(("mode", "seed", "indices", "after")) | {
    "options": build.ScoreOptions()
}
UNSET_CREDITS: dict[str, Any] = dict.fromkeys(("form", "seed", "row", "round", "after")) | {
    "options": build.ScoreOptions()
}
OPTIONS = {field.name for field in dataclasses.fields(build.ScoreOptions)}


def arguments(unset: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``unset`` with the ``given`` arguments, those of `ScoreOptions` gathered into one."""
    options = build.ScoreOptions(**{k: v for k, v in given.items() if k in OPTIONS})
    return unset | {k: v for k, v in given.items() if k not in OPTIONS} | {"options": options}


def npy(call: Call) -> np.ndarray:
    assert call.content is not None and call.json is None
    return np.load(io.BytesIO(call.content), allow_pickle=False)


def rewards(binary: bool = True, *, cfg: dict[str, Any] | None = None, **given: Any) -> Call:
    settings = config(binary=binary, **(cfg or {}))
    return build.rewards(settings, "ref", GROUPS, **arguments(UNSET_REWARDS, given))


def credits(binary: bool = True, *, cfg: dict[str, Any] | None = None, **given: Any) -> Call:
    settings = config(binary=binary, **(cfg or {}))
    return build.credits(settings, "ref", SAMPLES, **arguments(UNSET_CREDITS, given))


# -- reads and probes -------------------------------------------------------------------------


def test_reads_and_probes_carry_no_body() -> None:
    calls = {
        "info": build.info("ref"),
        "references": build.references(),
        "delete": build.delete("ref"),
        "health": build.health(),
        "ready": build.ready(),
    }
    assert {k: (c.method, c.path) for k, c in calls.items()} == {
        "info": ("GET", "/v1/references/ref"),
        "references": ("GET", "/v1/references"),
        "delete": ("DELETE", "/v1/references/ref"),
        "health": ("GET", "/healthz"),
        "ready": ("GET", "/readyz"),
    }
    for call in calls.values():
        assert (call.params, call.content, call.json, call.headers) == (None, None, None, None)
        assert call.replay_safe and not call.version_pinned


@pytest.mark.parametrize("name", ["../admin", "", "a b", ".hidden", "x" * 65])
def test_names_the_service_would_refuse_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="reference name"):
        build.info(name)


def test_names_with_dots_dashes_and_underscores_are_kept() -> None:
    assert build.reference_path("inception-v3_2.base") == "/v1/references/inception-v3_2.base"


# -- rewards ----------------------------------------------------------------------------------


def test_rewards_binary_puts_the_groups_in_the_body_and_the_options_in_the_query() -> None:
    call = rewards(mode="shared", seed=11, method="exact", commit_fraction=0.25)
    assert (call.method, call.path) == ("POST", "/v1/references/ref/rewards")
    assert call.params == {
        "mode": "shared",
        "seed": "11",
        "method": "exact",
        "commit_fraction": "0.25",
    }
    assert call.headers == {"Content-Type": build.NPY}
    body = npy(call)
    assert body.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(body, GROUPS.astype(np.float32))
    assert call.replay_safe and not call.version_pinned


def test_rewards_json_puts_the_groups_beside_the_options() -> None:
    call = rewards(binary=False, seed=3, method="lowrank")
    assert call.params is None and call.content is None
    assert call.json == {"groups": GROUPS.tolist(), "seed": 3, "method": "lowrank"}
    assert call.headers == {}  # httpx sets the JSON content type


def test_rewards_unset_options_are_left_to_the_service() -> None:
    assert rewards().params == {}
    assert rewards(binary=False).json == {"groups": GROUPS.tolist()}


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_rewards_wire_dtype(dtype: str) -> None:
    assert npy(rewards(cfg={"wire_dtype": dtype})).dtype == np.dtype(dtype).newbyteorder("<")


def test_rewards_refuse_malformed_groups_before_sending() -> None:
    settings = config()
    with pytest.raises(ValueError, match="groups must have 3 dimensions"):
        build.rewards(settings, "ref", SAMPLES, **UNSET_REWARDS)
    with pytest.raises(ValueError, match="NaN or Inf"):
        build.rewards(settings, "ref", GROUPS * np.nan, **UNSET_REWARDS)


def test_rewards_shared_indices_go_in_the_query_string_and_imply_the_mode() -> None:
    call = rewards(indices=[[4, 9, 2], [4, 9, 2]])  # identical rows collapse to one set
    assert call.params == {"mode": "indices", "indices": "4,9,2"}
    assert call.content is not None
    assert rewards(indices=[4, 9, 2], mode="shared").params == {
        "mode": "shared",
        "indices": "4,9,2",
    }


def test_rewards_per_group_indices_need_a_json_body() -> None:
    call = rewards(indices=np.array([[1, 2, 3], [4, 5, 6]]))
    assert call.content is None and call.params is None
    assert call.json["indices"] == [[1, 2, 3], [4, 5, 6]]
    assert call.json["mode"] == "indices"


def test_rewards_pin_the_call_version_over_the_config_version() -> None:
    assert rewards(cfg={"version": 4}).params == {"version": "4"}
    call = rewards(cfg={"version": 4}, version=5)
    assert call.params == {"version": "5"} and call.version_pinned


def test_rewards_ask_for_the_clients_own_commit_only_without_a_pin() -> None:
    assert rewards(after=7).params == {"after": "7"}
    assert rewards(after=7).version_pinned is False
    assert rewards(after=7, version=3).params == {"version": "3"}  # a pin says it all
    assert rewards(after=7, cfg={"version": 3}).params == {"version": "3"}
    assert rewards(binary=False, after=7).json == {"groups": GROUPS.tolist(), "after": 7}


def test_rewards_carry_the_idempotency_key_in_its_header_in_both_formats() -> None:
    for binary in (True, False):
        call = rewards(binary, idempotency_key="k1", commit_fraction=0.5)
        assert call.headers is not None and call.headers[build.IDEMPOTENCY_KEY] == "k1"
    assert build.IDEMPOTENCY_KEY not in (rewards().headers or {})


@pytest.mark.parametrize("key", ["", "k" * 129])
def test_idempotency_keys_of_the_wrong_length_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="1 to 128"):
        rewards(idempotency_key=key)
    with pytest.raises(ValueError, match="1 to 128"):
        build.commit(config(), "ref", SAMPLES, key, feature_space=None)


def test_feature_space_header_from_the_call_else_the_config() -> None:
    assert rewards(cfg={"feature_space": "cfg-space"}).headers == {
        "Content-Type": build.NPY,
        build.FEATURE_SPACE: "cfg-space",
    }
    call = rewards(cfg={"feature_space": "cfg-space"}, feature_space="call-space")
    assert call.headers is not None and call.headers[build.FEATURE_SPACE] == "call-space"
    with pytest.raises(ValueError, match="printable ASCII"):
        rewards(feature_space="has space")


# -- credits ----------------------------------------------------------------------------------


def test_credits_binary() -> None:
    call = credits(form="replace", seed=2, row=5, method="exact", commit_fraction=0.25)
    assert (call.method, call.path) == ("POST", "/v1/references/ref/credits")
    assert call.params == {
        "form": "replace",
        "seed": "2",
        "row": "5",
        "method": "exact",
        "commit_fraction": "0.25",
    }
    np.testing.assert_array_equal(npy(call), SAMPLES.astype(np.float32))


def test_credits_json() -> None:
    call = credits(binary=False, form="add", round="run-7:3", idempotency_key="k")
    assert call.json == {"samples": SAMPLES.tolist(), "form": "add", "round": "run-7:3"}
    assert call.headers == {build.IDEMPOTENCY_KEY: "k"}


def test_credits_round_after_and_pin() -> None:
    assert credits(round="run-7:3", after=9).params == {"round": "run-7:3", "after": "9"}
    pinned = credits(round="run-7:3", after=9, version=8)
    assert pinned.params == {"round": "run-7:3", "version": "8"} and pinned.version_pinned


def test_credits_refuse_samples_of_the_wrong_rank() -> None:
    with pytest.raises(ValueError, match="samples must have 2 dimensions"):
        build.credits(config(), "ref", GROUPS, **UNSET_CREDITS)


# -- commit and fd ----------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False])
def test_commit(binary: bool) -> None:
    call = build.commit(config(binary=binary), "ref", SAMPLES, "key-1", feature_space="space")
    assert (call.method, call.path) == ("POST", "/v1/references/ref/commit")
    assert call.headers is not None
    assert call.headers[build.IDEMPOTENCY_KEY] == "key-1"
    assert call.headers[build.FEATURE_SPACE] == "space"
    if binary:
        assert call.params == {}
        np.testing.assert_array_equal(npy(call), SAMPLES.astype(np.float32))
    else:
        assert call.json == {"features": SAMPLES.tolist()}
    assert call.replay_safe and not call.version_pinned


def test_fresh_key_keeps_a_given_key_and_makes_a_new_one_each_time() -> None:
    assert build.fresh_key("mine") == "mine"
    first, second = build.fresh_key(None), build.fresh_key(None)
    assert first != second and len(first) == 32


def test_score_options_fix_the_key_only_of_a_request_that_commits() -> None:
    reading = build.ScoreOptions(idempotency_key=None)
    assert reading.keyed() is reading
    assert build.ScoreOptions(commit_fraction=0.5, idempotency_key="mine").keyed() == (
        build.ScoreOptions(commit_fraction=0.5, idempotency_key="mine")
    )
    fresh = build.ScoreOptions(commit_fraction=0.5).keyed().idempotency_key
    assert fresh is not None and len(fresh) == 32


@pytest.mark.parametrize("binary", [True, False])
def test_fd(binary: bool) -> None:
    call = build.fd(config(binary=binary), "ref", SAMPLES, feature_space=None)
    assert (call.method, call.path, call.headers) == (
        "POST",
        "/v1/references/ref/fd",
        {"Content-Type": build.NPY} if binary else {},
    )
    if binary:
        assert call.params == {}
        assert npy(call).shape == SAMPLES.shape
    else:
        assert call.json == {"features": SAMPLES.tolist()}


# -- target -----------------------------------------------------------------------------------


def target(binary: bool = True, **given: Any) -> Call:
    arguments: dict[str, Any] = {"mu": None, "sigma": None, "features": None} | given
    options = {"stats": None, "feature_space": None, "accept_unknown_feature_space": False}
    options |= {k: arguments.pop(k) for k in list(arguments) if k in options}
    return build.target(config(binary=binary), "ref", **arguments, **options)


def test_target_statistics_as_float64_npz() -> None:
    mu, sigma = np.ones(4, dtype=np.float32), np.eye(4, dtype=np.float32)
    call = target(mu=mu, sigma=sigma, feature_space="space")
    assert (call.method, call.path, call.params) == ("PUT", "/v1/references/ref/target", None)
    assert call.headers == {"Content-Type": build.NPZ, build.FEATURE_SPACE: "space"}
    assert call.content is not None
    with np.load(io.BytesIO(call.content), allow_pickle=False) as archive:
        assert archive["mu"].dtype == archive["sigma"].dtype == np.float64
        np.testing.assert_array_equal(archive["sigma"], sigma)


def test_target_statistics_as_json_and_the_unknown_space_flag() -> None:
    call = target(False, mu=np.zeros(2), sigma=np.eye(2), accept_unknown_feature_space=True)
    assert call.json == {"mu": [0.0, 0.0], "sigma": [[1.0, 0.0], [0.0, 1.0]]}
    assert call.params == {"accept_unknown_feature_space": "true"}


def test_target_features_as_an_array_body() -> None:
    call = target(features=np.ones((5, 4)), accept_unknown_feature_space=True)
    assert call.params == {"accept_unknown_feature_space": "true"}
    assert npy(call).shape == (5, 4)
    assert target(False, features=np.ones((5, 4))).json == {"features": np.ones((5, 4)).tolist()}


def test_target_from_a_statistics_file_takes_its_feature_space(tmp_path: Path) -> None:
    path = tmp_path / "stats.npz"
    np.savez(path, mu=np.zeros(2), sigma=np.eye(2), feature_space="file-space")
    call = target(stats=path)
    assert call.headers == {"Content-Type": build.NPZ, build.FEATURE_SPACE: "file-space"}
    assert target(stats=path, feature_space="file-space").headers == call.headers
    with pytest.raises(ValueError, match="records feature space 'file-space'"):
        target(stats=path, feature_space="other")
    with pytest.raises(ValueError, match="stats alone"):
        target(stats=path, mu=np.zeros(2))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"mu": np.zeros(2)}, "mu and sigma together"),
        ({"mu": np.zeros(2), "sigma": np.eye(2), "features": np.ones((3, 2))}, "not both"),
    ],
)
def test_target_needs_statistics_or_features(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        target(**given)


# -- pool -------------------------------------------------------------------------------------


def test_pool_upload_is_a_put_then_posts_the_last_final() -> None:
    upload = build.pool(config(), "ref", np.ones((10, 4)), 4, feature_space="space")
    chunks = list(upload.requests())
    assert [(c.call.method, c.call.path) for c in chunks] == [
        ("PUT", "/v1/references/ref/pool"),
        ("POST", "/v1/references/ref/pool"),
        ("POST", "/v1/references/ref/pool"),
    ]
    assert [c.call.params for c in chunks] == [{"final": "false"}] * 2 + [{"final": "true"}]
    assert [(c.staged_rows, c.final) for c in chunks] == [(4, False), (8, False), (10, True)]
    assert [npy(c.call).shape[0] for c in chunks] == [4, 4, 2]
    assert [c.call.replay_safe for c in chunks] == [True, False, False]  # a POST stages rows
    assert all(
        c.call.headers == {"Content-Type": build.NPY, "Feature-Space": "space"} for c in chunks
    )


def test_pool_json_chunks_carry_final_in_the_body() -> None:
    upload = build.pool(config(binary=False), "ref", np.ones((3, 2)), 2, feature_space=None)
    assert [c.call.json for c in upload.requests()] == [
        {"features": [[1.0, 1.0], [1.0, 1.0]], "final": False},
        {"features": [[1.0, 1.0]], "final": True},
    ]


def test_pool_chunks_follow_chunk_bytes_by_default() -> None:
    upload = build.pool(
        config(chunk_bytes=4 * 4 * 3), "ref", np.ones((7, 4)), None, feature_space=None
    )
    assert [len(chunk) for chunk in upload.chunks] == [3, 3, 1]  # 3 float32 rows of d = 4
    assert len(build.pool(config(), "ref", np.ones((7, 4)), None, feature_space=None).chunks) == 1


def test_pool_requests_can_be_made_again_for_a_restart() -> None:
    upload = build.pool(config(), "ref", np.ones((5, 2)), 2, feature_space=None)
    assert [c.call for c in upload.requests()] == [c.call for c in upload.requests()]


def test_pool_refuses_bad_chunk_sizes() -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        build.pool(config(), "ref", np.ones((5, 2)), 0, feature_space=None)

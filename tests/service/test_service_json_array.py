"""The JSON array decoder against ``json`` itself: every regular array comes back bit for bit,
every irregular or malformed one is a 400 that says so, and nothing the size of the array is
allocated before its shape is known."""

from __future__ import annotations

import json
import re
import tracemalloc

import numpy as np
import pytest

from reward_service.api import json_array
from reward_service.errors import BadInput, PayloadTooLarge
from reward_service.schemas import RewardsRequest


def decode(text: str | bytes, field: str = "groups", ndim: int = 3) -> tuple[np.ndarray, bytes]:
    data = text.encode() if isinstance(text, str) else text
    found = json_array.split_json(data, field, 1 << 20)
    assert found is not None
    out = np.empty(json_array.array_shape(found, ndim, field))
    json_array.fill_array(found, out, field)
    return out, found.rest()


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 4), (5, 1, 7), (3, 4, 1), (1, 6, 2)])
@pytest.mark.parametrize("indent", [None, 2])
def test_regular_arrays_decode_exactly(shape, indent, rng) -> None:
    values = rng.standard_normal(shape) * 10.0 ** rng.integers(-300, 300, shape)
    values.flat[0] = 3  # an integer literal
    text = json.dumps({"mode": "shared", "groups": values.tolist(), "seed": 3}, indent=indent)
    decoded, rest = decode(text)
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded, values)
    assert json.loads(rest) == {"mode": "shared", "groups": None, "seed": 3}


def test_rows_and_vectors_decode(rng) -> None:
    rows = rng.standard_normal((7, 3))
    np.testing.assert_array_equal(
        decode(json.dumps({"features": rows.tolist()}), "features", 2)[0], rows
    )
    np.testing.assert_array_equal(
        decode('{"mu": [1, -2.5e-3, 3E2]}', "mu", 1)[0], [1, -2.5e-3, 300]
    )


def test_arrays_larger_than_a_chunk_decode_and_are_checked_in_every_chunk(rng) -> None:
    values = rng.standard_normal((40, 32, 256))  # about 7 chunks of text
    text = json.dumps({"groups": values.tolist()}).encode()
    np.testing.assert_array_equal(decode(text)[0], values)
    late = text.index(b"], [", len(text) * 3 // 4)  # two rows of a late group run together
    with pytest.raises(BadInput, match="ragged"):
        decode(text[:late] + b",   " + text[late + 4 :])
    comma = text.index(b",", len(text) * 3 // 4)  # two numbers of a late row run together
    with pytest.raises(BadInput, match=r"ragged|whitespace"):
        decode(text[:comma] + b" " + text[comma + 1 :])


@pytest.mark.parametrize(
    "array",
    [
        "[[[1,2],[3]]]",
        "[[[1,2],[3,4,5]]]",
        "[[[1,2]],[[3,4],[5,6]]]",
        "[[[1,2],[3,4]],[[5,6,7]]]",
        "[[[1,2],[3,4]],[[5,6],[7,8],[9,0]]]",
        "[[[1,,2]]]",
        "[[[1,2,]]]",
        "[[[,1,2]]]",
        "[[[1 2]]]",
        "[[[1,2][3,4]]]",
        "[[[1,2]],[3,4]]",
        "[[[1],[2]],[3,[4]]]",
        "[[[1,2]]]]",
        "[[[1,2]]",
        "[[1,2]]",
        "[[[[1]]]]",
        "[[[1e,2]]]",
        "[[[1-2,3]]]",
        "[[[-]]]",
        "[[[.]]]",
        "[[[]]]",
        "[[[1,2]]], [[[3,4]]]",
    ],
)
def test_irregular_or_malformed_arrays_are_refused(array: str) -> None:
    with pytest.raises(BadInput):
        decode(f'{{"groups": {array}}}')


NUMBERS_JSON_ALLOWS = ["0", "-0", "10", "1.5", "-0.5e-3", "1E+2", "1e05", "0e5", "-1.25E-300"]
NUMBERS_JSON_REFUSES = [
    "+1",
    ".5",
    "-.5",
    "1.",
    "01",
    "-01",
    "00",
    "1e",
    "1e+",
    "1.e5",
    "--1",
    "1-",
    "e5",
    "1e5.5",
    "1.2.3",
    "1ee5",
    "1e+-5",
    "1e1e1",
    "0.5.",
]


@pytest.mark.parametrize("number", NUMBERS_JSON_ALLOWS)
def test_every_json_number_spelling_decodes_as_json_reads_it(number: str) -> None:
    decoded, _ = decode(f'{{"groups": [[[{number}, {number}]]]}}')
    assert decoded[0, 0, 0] == decoded[0, 0, 1] == json.loads(number)


@pytest.mark.parametrize("position", [0, 1])
@pytest.mark.parametrize("number", NUMBERS_JSON_REFUSES)
def test_numbers_json_does_not_allow_are_refused_as_json_refuses_them(
    number: str, position: int
) -> None:
    # strtod reads most of these; JSON (and so the members beside the array) does not.
    with pytest.raises(json.JSONDecodeError):
        json.loads(f"[{number}]")
    row = ["1", "2"]
    row[position] = number
    with pytest.raises(BadInput, match=f"{re.escape(repr(number))} is not a JSON number"):
        decode(f'{{"groups": [[[{", ".join(row)}]]]}}')


def test_nan_and_infinity_are_read_to_be_refused_as_values() -> None:
    decoded, _ = decode('{"groups": [[[NaN, Infinity, -Infinity]]]}')
    assert np.isnan(decoded[0, 0, 0]) and decoded[0, 0, 1] == np.inf and decoded[0, 0, 2] == -np.inf


def test_the_members_beside_the_array_have_a_limit_of_their_own() -> None:
    body = json.dumps({"groups": [[[1.0]]], "idempotency_key": "k" * 2000}).encode()
    with pytest.raises(PayloadTooLarge) as refused:
        json_array.split_json(body, "groups", 1000)
    assert refused.value.reason == "json_fields"
    assert json_array.split_json(b'{"mode": "shared"}', "groups", 1000) is None


def test_the_members_are_validated_by_the_model_without_the_array() -> None:
    fields = json_array.without_array(RewardsRequest, "groups")
    body = fields.model_validate_json(b'{"groups": null, "method": "exact", "seed": 4}')
    assert isinstance(body, RewardsRequest)
    assert (body.method, body.seed) == ("exact", 4)


def test_the_shape_is_known_before_anything_its_size_is_allocated() -> None:
    """150 groups of 32 at d = 2048 (the size of a 73 MB body) announce their shape from counts
    over the text alone: the shape step allocates nothing like the 78 MB array."""
    row = "[" + ",".join(["0.5"] * 2048) + "]"
    group = "[" + ",".join([row] * 32) + "]"
    body = ('{"groups": [' + ",".join([group] * 150) + "]}").encode()
    tracemalloc.start()
    try:
        found = json_array.split_json(body, "groups", 1 << 20)
        assert found is not None
        shape = json_array.array_shape(found, 3, "groups")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shape == (150, 32, 2048)
    assert peak < 1 << 20

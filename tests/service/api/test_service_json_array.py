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
from reward_service.api.schemas import RewardsRequest
from reward_service.errors import BadInput, PayloadTooLarge


def decode(text: str | bytes, field: str = "groups", ndim: int = 3) -> tuple[np.ndarray, bytes]:
    data = text.encode() if isinstance(text, str) else text
    body = json_array.split_json(data, (field,), 1 << 20)
    found = body.arrays[field]
    out = np.empty(json_array.array_shape(found, ndim, field))
    json_array.fill_array(found, out, field)
    return out, body.rest


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
        json_array.split_json(body, ("groups",), 1000)
    assert refused.value.reason == "json_fields"
    assert json_array.split_json(b'{"mode": "shared"}', ("groups",), 1000).arrays == {}


def test_the_members_are_validated_by_the_model_without_the_array() -> None:
    fields = json_array.without_arrays(RewardsRequest, ("groups",))
    body = fields.model_validate_json(b'{"groups": null, "method": "exact", "seed": 4}')
    assert isinstance(body, RewardsRequest)
    assert (body.method, body.seed) == ("exact", 4)


def test_the_shape_is_known_before_anything_its_size_is_allocated() -> None:
    """150 groups of 32 at d = 2048 (the size of a 73 MB body) announce their shape from counts
    over the text alone: the shape step allocates nothing like the 78 MB array, only a block's
    temporaries."""
    row = "[" + ",".join(["0.5"] * 2048) + "]"
    group = "[" + ",".join([row] * 32) + "]"
    body = ('{"groups": [' + ",".join([group] * 150) + "]}").encode()
    tracemalloc.start()
    try:
        found = json_array.split_json(body, ("groups",), 1 << 20).arrays["groups"]
        shape = json_array.array_shape(found, 3, "groups")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shape == (150, 32, 2048)
    assert peak < json_array.DECODE_TEMPORARY_BYTES


@pytest.mark.parametrize("block", [1, 3, 7, 64])
def test_every_block_boundary_decodes_as_json_reads_it(block, rng, monkeypatch) -> None:
    """Blocks of a few bytes put a block's end inside every number, separator and run of
    whitespace, and inside the member's name."""
    monkeypatch.setattr(json_array, "_BLOCK_BYTES", block)
    values = rng.standard_normal((3, 4, 5)) * 10.0 ** rng.integers(-30, 30, (3, 4, 5))
    for indent in (None, 3):
        text = json.dumps({"mode": "shared", "groups": values.tolist()}, indent=indent)
        decoded, rest = decode(text)
        np.testing.assert_array_equal(decoded, values)
        assert json.loads(rest) == {"mode": "shared", "groups": None}
    with pytest.raises(BadInput, match="ragged"):
        decode('{"groups": [[[1, 2], [3, 4]], [[5, 6], [7, 8, 9]]]}')
    with pytest.raises(BadInput, match="whitespace"):
        decode('{"groups": [[[1, 2], [3 4]]]}')


def test_whitespace_of_any_length_anywhere_decodes(rng) -> None:
    """Runs of whitespace longer than a block, between every kind of token."""
    values = rng.standard_normal((4, 3, 6))
    text = json.dumps({"groups": values.tolist()})
    pieces = re.split(r"(?<=[\[\],])", text)  # after each bracket and comma
    spaced = "".join(
        piece + " \n\t\r"[i % 4] * int(rng.integers(0, 3 * 2**16)) for i, piece in enumerate(pieces)
    )
    np.testing.assert_array_equal(decode(spaced)[0], values)


def test_numbers_split_by_a_long_run_of_whitespace_are_refused() -> None:
    with pytest.raises(BadInput, match="whitespace"):
        decode('{"groups": [[[12' + " " * 200_000 + "34, 5]]]}")


def test_a_number_longer_than_any_float64_needs_is_refused_in_bounded_memory() -> None:
    """The longest float64 written without an exponent takes 327 characters and is read
    exactly; a longer number is a 400 naming its length, found within a block of its start,
    however long it goes on (the decoder's temporaries stay within their bound)."""
    longest = np.format_float_positional(-5e-324)
    assert len(longest) == 327 <= json_array.MAX_NUMBER_CHARS
    decoded, _ = decode(f'{{"groups": [[[{longest}, 1]]]}}')
    assert decoded[0, 0, 0] == json.loads(longest) == -5e-324
    over = "0." + "0" * json_array.MAX_NUMBER_CHARS
    with pytest.raises(BadInput, match=f"{len(over)} characters"):
        decode(f'{{"groups": [[[{over}, 1]]]}}')
    huge = b'{"groups": [[[0.' + b"0" * (16 << 20) + b", 1]]]}"
    found = json_array.split_json(huge, ("groups",), 1 << 20).arrays["groups"]
    out = np.empty((1, 1, 2))
    tracemalloc.start()
    try:
        with pytest.raises(BadInput, match="characters; JSON numbers may take at most"):
            json_array.fill_array(found, out, "groups")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < json_array.DECODE_TEMPORARY_BYTES


@pytest.mark.parametrize(
    ("text", "ndim"),
    [
        (b"[" + b",".join([b"1"] * 1_000_000) + b"]", 1),  # one-digit numbers: the worst case
        (b"[" + b",".join([b"[1,2,3,4,5,6,7,8]"] * 120_000) + b"]", 2),
        (b"[" + b",".join([b"[[1],[2]]"] * 200_000) + b"]", 3),  # brackets on every number
        (b"[" + b",".join([b"[-0.5e-1,-1E+2]"] * 150_000) + b"]", 2),  # signs and exponents
        (b"[" + b" " * (8 << 20) + b"[1, 2]]", 2),  # whitespace
    ],
)
def test_the_decoders_temporaries_stay_within_their_bound(text: bytes, ndim: int) -> None:
    """What a body costs besides itself and its arrays is at most DECODE_TEMPORARY_BYTES, which
    the service reserves for it (tracemalloc counts numpy's buffers)."""
    found = json_array.split_json(b'{"f": ' + text + b"}", ("f",), 1 << 20).arrays["f"]
    tracemalloc.start()
    try:
        shape = json_array.array_shape(found, ndim, "f")
        out = np.empty(shape)
        tracemalloc.reset_peak()
        held, _ = tracemalloc.get_traced_memory()  # the output array
        json_array.fill_array(found, out, "f")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - held < json_array.DECODE_TEMPORARY_BYTES
    np.testing.assert_array_equal(out, np.array(json.loads(text)))


def test_several_arrays_split_from_one_body() -> None:
    body = json_array.split_json(
        b'{"mu": [1, 2], "sigma": [[1, 0], [0, 1]], "feature_space": "x"}',
        ("features", "mu", "sigma"),
        1000,
    )
    assert set(body.arrays) == {"mu", "sigma"}
    assert json.loads(body.rest) == {"mu": None, "sigma": None, "feature_space": "x"}


@pytest.mark.parametrize(
    "text",
    [
        b'{"groups": [[[1]]], "groups": [[[2]]]}',
        b'{"groups": "x", "groups": [[[2]]]}',
        b'{"groups": [[[1]]], "seed": 1, "groups": null}',
    ],
)
def test_an_array_member_sent_twice_is_refused_whatever_the_other_copy(text: bytes) -> None:
    """Refused before the rest is measured: a second copy too large for the rest's limit is
    still named for what it is."""
    with pytest.raises(BadInput, match="'groups' appears more than once"):
        json_array.split_json(text, ("groups",), 10)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b'{"seed": 1, "seed": 2}', '"seed" appears more than once'),
        (b'{"a": {"b": 1, "b": 2}}', '"b" appears more than once'),
        (b'{"feature\\u0073": [[1]]}', "written with escapes"),
        (b'{"mode": "x", "mod\\u0065": "y"}', "written with escapes"),
        (b'{"a\\"b": 1}', "written with escapes"),
    ],
)
def test_member_names_json_parsers_read_differently_are_refused(text: bytes, words: str) -> None:
    with pytest.raises(BadInput, match=re.escape(words)):
        json_array.check_member_names(text)


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": {"b": 1}, "b": 2}',  # one name in two objects
        b'{"a": [{"b": 1}, {"b": 2}]}',
        b'{"key": "a \\"b\\": c", "other": ":"}',  # escapes and colons inside values
        b'{"a": ["x", ": y", "\\\\"], "b": 1}',
        b'{"a": "\\u0073"}',
    ],
)
def test_member_names_as_written_once_per_object_pass(text: bytes) -> None:
    json.loads(text)
    json_array.check_member_names(text)

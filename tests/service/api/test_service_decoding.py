"""The pure decoder, called directly (no app, no request): ``.npy`` bytes come back bit for bit
in every accepted dtype and order, a header is read as soon as its bytes are in and refused by
what it says before the data is touched, and a JSON body's passes give its members, its arrays'
shapes and then the arrays themselves."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from reward_service.api import decoding
from reward_service.api.schemas import RewardsRequest
from reward_service.errors import BadInput, Unprocessable
from reward_service.limits import ArraySpec


def npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    if version is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def _with_header(header: str, data: bytes = b"") -> bytes:
    """A version 1.0 ``.npy`` file of the header dict ``header`` (padded as numpy pads it)."""
    text = header.encode("latin1")
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_float_arrays_decode_exactly_into_a_writable_copy(dtype, order, rng) -> None:
    values = np.asarray(rng.standard_normal((3, 4, 5)), dtype=dtype, order=order)
    data = bytearray(npy(values))
    decoded = decoding.decode_npy(data, "groups")
    assert decoded.dtype == np.dtype(dtype) and decoded.shape == values.shape
    np.testing.assert_array_equal(decoded, values)
    assert decoded.flags.writeable and not np.shares_memory(decoded, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_header_version_is_read(version, rng) -> None:
    values = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(decoding.decode_npy(npy(values, version), "x"), values)


def test_a_header_is_read_as_soon_as_its_bytes_are_in(rng) -> None:
    data = npy(rng.standard_normal((6, 7)).astype(np.float32))
    complete = next(
        size for size in range(len(data) + 1) if decoding.npy_header(data[:size]) is not None
    )
    header = decoding.npy_header(data[:complete])
    assert header is not None
    assert (header.shape, header.dtype, header.fortran) == ((6, 7), np.dtype("<f4"), False)
    assert header.offset == complete and header.data_bytes == 6 * 7 * 4
    assert len(data) == header.offset + header.data_bytes


def test_an_announced_size_is_counted_without_overflow() -> None:
    huge = 2**40
    header = decoding.npy_header(
        _with_header(f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({huge}, {huge}), }}")
    )
    assert header is not None and header.data_bytes == huge * huge * 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04 not numpy", "is not a .npy file"),
        (npy(np.zeros(3, np.int64)), "dtype '<i8' is not accepted"),
        (npy(np.zeros(3, ">f8")), "dtype '>f8' is not accepted"),
        (npy(np.zeros(3, np.complex128)), "is not accepted"),
        (npy(np.array([{"a": 1}], dtype=object)), "is not accepted"),
        (b"\x93NUMPY\x02\x00" + (20_000).to_bytes(4, "little"), "numpy.save writes short ones"),
        (_with_header("{'descr': '<f8', 'shape': (3,)}"), "unreadable .npy header"),
    ],
    ids=["magic", "int", "big-endian", "complex", "pickled-object", "long-header", "malformed"],
)
def test_headers_are_refused_by_what_they_say(data, message) -> None:
    with pytest.raises(BadInput, match=message):
        decoding.decode_npy(data, "groups")


def test_incomplete_or_mismatched_data_is_refused(rng) -> None:
    data = npy(rng.standard_normal((4, 3)))
    with pytest.raises(BadInput, match="header is truncated"):
        decoding.decode_npy(data[:20], "samples")
    with pytest.raises(BadInput, match=r"samples: .*announces shape \(4, 3\) \(96 bytes\) but 88"):
        decoding.decode_npy(data[:-8], "samples")
    with pytest.raises(BadInput, match="but 104 bytes follow"):
        decoding.decode_npy(data + bytes(8), "samples")


def test_the_shape_check_runs_on_the_announced_shape_before_the_data() -> None:
    """A header announcing a terabyte over a few bytes is refused by the shape check (the
    limits), not by the byte count and not by an allocation."""
    lying = _with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (262144, 4, 131072), }")
    seen: list[tuple[int, ...]] = []

    def refuse(shape: tuple[int, ...]) -> None:
        seen.append(shape)
        raise BadInput("over the limits")

    with pytest.raises(BadInput, match="over the limits"):
        decoding.decode_npy(lying + bytes(64), "groups", refuse)
    assert seen == [(262144, 4, 131072)]
    accepted: list[tuple[int, ...]] = []
    array = decoding.decode_npy(npy(np.ones((2, 2))), "groups", accepted.append)
    assert accepted == [(2, 2)] and array.sum() == 4


SPECS = {"groups": ArraySpec("groups", 3)}


def test_a_json_body_decodes_in_its_passes(rng) -> None:
    groups = rng.standard_normal((2, 3, 4))
    text = json.dumps({"mode": "independent", "groups": groups.tolist(), "seed": 7}).encode()
    body = decoding.split_json(text, ("groups",), 1024)
    members, shapes = decoding.members_and_shapes(body, RewardsRequest, SPECS)
    assert (members.mode, members.seed, members.groups) == ("independent", 7, None)
    assert shapes == {"groups": (2, 3, 4)}
    arrays = decoding.decode_arrays(body, SPECS, shapes)
    assert arrays["groups"].dtype == np.float64
    np.testing.assert_array_equal(arrays["groups"], groups)


def test_a_json_body_without_its_array_has_no_shape_for_it() -> None:
    body = decoding.split_json(b'{"mode": "shared"}', ("groups",), 1024)
    members, shapes = decoding.members_and_shapes(body, RewardsRequest, SPECS)
    assert members.mode == "shared" and shapes == {}


def test_json_members_are_validated_by_the_model() -> None:
    body = decoding.split_json(b'{"groups": [[[1.0]]], "seed": -1}', ("groups",), 1024)
    with pytest.raises(Unprocessable, match=r"documented schema at 'seed'.*\(1 error\(s\)\)"):
        decoding.members_and_shapes(body, RewardsRequest, SPECS)
    with pytest.raises(Unprocessable, match="at 'mode'"):
        decoding.parse_json(RewardsRequest, b'{"groups": [[[1.0]]], "mode": "sideways"}')
    with pytest.raises(Unprocessable, match="at 'body'"):
        decoding.parse_json(RewardsRequest, b"[1, 2]")


def test_json_member_names_are_read_as_written() -> None:
    with pytest.raises(BadInput, match="appears more than once"):
        decoding.split_json(b'{"seed": 1, "seed": 2, "groups": [[[1]]]}', ("groups",), 1024)
    with pytest.raises(BadInput, match="written with escapes"):
        decoding.split_json(b'{"se\\u0065d": 1, "groups": [[[1]]]}', ("groups",), 1024)

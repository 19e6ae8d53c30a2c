"""Arrays in: numpy, nested lists and (when installed) torch tensors; refused before sending
when malformed."""

from __future__ import annotations

import numpy as np
import pytest
from client_fakes import FakeService, npy_body, ok, rewards_json

from reward_client._encoding import as_numpy, wire_array


@pytest.fixture
def torch():
    """Torch is optional for the client: its tests skip where it is not installed."""
    return pytest.importorskip("torch")


def test_lists_and_arrays_are_accepted(client_for):
    fake = FakeService(ok(rewards_json([1.0, 2.0], k=1)))
    client_for(fake).rewards("ref", [[[1, 2]], [[3, 4]]])
    np.testing.assert_array_equal(npy_body(fake.requests[0]), [[[1, 2]], [[3, 4]]])


def test_wrong_dimensions_are_refused_before_sending(client_for):
    fake = FakeService(ok(rewards_json([1.0])))
    with pytest.raises(ValueError, match=r"groups must have 3 dimensions, got shape \(4, 2\)"):
        client_for(fake).rewards("ref", np.ones((4, 2)))
    assert fake.count == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_before_sending(client_for, bad):
    fake = FakeService(ok(rewards_json([1.0])))
    features = np.ones((3, 2))
    features[1, 1] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        client_for(fake).commit("ref", features)
    assert fake.count == 0


def test_float16_overflow_is_refused():
    with pytest.raises(ValueError, match="float16 range"):
        wire_array(np.array([[1e6, 0.0]]), "float16", name="features")


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match="numeric"):
        as_numpy(np.array([["a", "b"]]), ndim=2, name="features")


def test_wire_array_is_little_endian_and_contiguous():
    big_endian = np.arange(6, dtype=">f8").reshape(2, 3).T
    out = wire_array(big_endian, "float32", name="x")
    assert out.dtype == np.dtype("<f4") and out.flags.c_contiguous
    np.testing.assert_array_equal(out, big_endian)


def test_tensor_with_grad(client_for, torch):
    tensor = torch.ones(2, 3, 4, requires_grad=True) * 2
    fake = FakeService(ok(rewards_json([1.0, 2.0], k=3)))
    client_for(fake).rewards("ref", tensor)
    np.testing.assert_array_equal(npy_body(fake.requests[0]), np.full((2, 3, 4), 2.0))


def test_bfloat16_tensor(torch):
    tensor = torch.tensor([[1.5, 2.0]], dtype=torch.bfloat16)  # numpy has no bfloat16
    np.testing.assert_array_equal(as_numpy(tensor, ndim=2, name="x"), [[1.5, 2.0]])


def test_tensor_dimensions_checked(torch):
    with pytest.raises(ValueError, match="dimensions"):
        as_numpy(torch.ones(3), ndim=2, name="x")

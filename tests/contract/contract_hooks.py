"""Schemathesis hooks of the contract test (loaded by ``schemathesis run`` through its config):

* the binary bodies are generated from the array the document says they hold (the
  ``contentSchema`` of ``.npy`` / ``.npz`` content) and written with numpy, as a trainer sends
  them;
* every request with a valid reference name reaches the test's reference, and each positive case
  gets the facts that JSON Schema cannot state (:func:`contract_data.conform`); a negative case
  names the reference's feature space too where it sends a valid one, so that it is refused for
  what it breaks and not for naming another space;
* a delete or pool upload meets the state it acts on (:class:`contract_data.Scratch`): the
  scratch reference exists, and a ``POST .../pool`` continues a started upload.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import schemathesis
from contract_data import SPACE, SPACE_VALUE, Scratch, conform, reference_for
from schemathesis.core import NOT_SET

_BINARY = ("application/x-npy", "application/x-npz")


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    for operations in raw_schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            for media_type, entry in content.items():
                if media_type in _BINARY and "contentSchema" in entry.get("schema", {}):
                    entry["schema"] = entry["schema"]["contentSchema"]


def _raw(value: Any) -> bytes:
    """What cannot be an array (negative data) goes as its JSON text: not a .npy file."""
    return json.dumps(value).encode()


@schemathesis.serializer("application/x-npy")
def npy(context: Any, value: Any) -> bytes:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        return _raw(value)
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _member(value: Any) -> np.ndarray:
    """Numbers as float64 arrays; strings (and anything else numpy can hold) as they are."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return np.asarray(value)


@schemathesis.serializer("application/x-npz")
def npz(context: Any, value: Any) -> bytes:
    if not isinstance(value, dict):
        return _raw(value)
    try:
        arrays = {name: _member(member) for name, member in value.items()}
    except ValueError:  # ragged nesting: no array at all
        return _raw(value)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    name = case.path_parameters.get("name") if case.path_parameters else None
    if isinstance(name, str):
        case.path_parameters["name"] = reference_for(case.method, case.path, name)
    meta = case.meta
    if meta is None:
        return case
    if case.headers is None:
        case.headers = {}
    if meta.generation.mode.is_positive and case.body is not NOT_SET:
        if case.query is None:
            case.query = {}
        case.body = conform(case.method, case.path, case.body, case.query, case.headers)
    elif SPACE_VALUE.fullmatch(str(case.headers.get("Feature-Space", ""))):
        case.headers["Feature-Space"] = SPACE  # a valid value for a valid one: still negative
    return case


SCRATCH_STATE = Scratch()


def _name(case: Any) -> str | None:
    return case.path_parameters.get("name") if case.path_parameters else None


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    SCRATCH_STATE.prepare(case.method, case.path, _name(case))


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    SCRATCH_STATE.called(case.method, _name(case), response.status_code)

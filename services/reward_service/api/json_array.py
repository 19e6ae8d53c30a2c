"""A JSON body's numeric array decoded straight into one float64 numpy array.

Parsing a JSON array of numbers into Python lists costs about 32 bytes per number (a float
object and a list slot), some 6.5x the text: four concurrent 73 MB bodies grew the process by
4 GiB that way. Here the body is split in two: the array member (``"groups"`` ...), which never
becomes Python objects, and the other members (``mode``, ``seed`` ...), small by their own limit
(``DISTREWARD_MAX_JSON_FIELDS_BYTES``) and validated by pydantic against the route's model with
the array member set to ``null`` (:func:`without_array`).

The array is decoded in three steps:

1. :func:`array_shape`: its shape from counts over the text (``[`` and ``,`` counted in C,
   nothing allocated), which the caller checks (G, K, d, the cost bound, the memory budget)
   before anything is allocated;
2. the caller allocates one float64 array of that shape;
3. :func:`fill_array` walks the text in chunks of about ``_CHUNK_BYTES``; each chunk's
   structure is checked vectorised, and its numbers are parsed by numpy into their slice.

The structure check: between numbers ``t`` and ``t + 1`` (0-based, row-major) the text must be
``"]" * j + "," + "[" * j``, where ``j`` counts the axes that roll over at ``t + 1`` (j = 1
where ``t + 1`` is a multiple of d, 2 where also of K d ...), with ``"[" * ndim`` before the
first number and ``"]" * ndim`` after the last. That is exactly a regular array of the announced
shape. Per chunk it is checked with counts per separator (one comma, j of each bracket) and the
pairs of adjacent brackets and commas allowed (``]]``, ``],``, ``,[``, ``[[``), which fix their
order.

Memory: the body, the float64 array and one chunk's temporaries (a few times the chunk).
Numbers are read by numpy's ``strtod`` (correctly rounded, like Python's ``float``) once each
has been checked against JSON's grammar, ``-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]?
[0-9]+)?``, character by character with its neighbours: ``strtod`` also reads ``+1``, ``.5``,
``1.`` and ``01``, which the JSON members beside the array (and any other JSON parser) refuse,
so the array does too. ``NaN`` and ``Infinity`` (which Python's ``json`` writes) are read as
what they are and, like an overflowing exponent, refused with 400 by the value check that
follows decoding.
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Any

import numpy as np
from pydantic import BaseModel, create_model

from ..errors import BadInput, PayloadTooLarge

__all__ = ["JsonArray", "array_shape", "fill_array", "split_json", "without_array"]

_CHUNK_BYTES = 2**20  # a chunk's temporaries take a few times this
_WHITESPACE = b" \t\n\r"  # JSON's whitespace, nothing else
# What an array of numbers is written with (NaN and Infinity included, to be refused by the
# value check with a message that says so), and \s so that the span takes in the whitespace
# after it (whitespace JSON does not allow is refused when the chunks are checked).
_ARRAY_RUN = re.compile(rb"[\[\]0-9.eE+\-,\sNaInfity]*")
_OPEN, _CLOSE, _COMMA = ord("["), ord("]"), ord(",")
# Character classes: 0 not allowed, then part of a number, structure, whitespace.
_NUMBER, _STRUCTURE, _SPACE = 1, 2, 3
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[np.frombuffer(b"0123456789.eE+-NaInfity", dtype=np.uint8)] = _NUMBER
_CLASS[[_OPEN, _CLOSE, _COMMA]] = _STRUCTURE
_CLASS[np.frombuffer(_WHITESPACE, dtype=np.uint8)] = _SPACE
# Adjacent structure characters that may follow each other; any other pair ("[,", ",,", ",]",
# "[]", "][") leaves a number out or puts brackets in the wrong order.
_PAIR_ALLOWED = np.zeros(256 * 256, dtype=bool)
_PAIR_ALLOWED[
    [_CLOSE * 256 + _CLOSE, _CLOSE * 256 + _COMMA, _COMMA * 256 + _OPEN, _OPEN * 256 + _OPEN]
] = True
_TO_SPACE = bytes.maketrans(b"[],", b"   ")
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[np.frombuffer(b"0123456789", dtype=np.uint8)] = True
_LETTER = np.zeros(256, dtype=bool)  # of NaN and Infinity: left to the value check
_LETTER[np.frombuffer(b"NaInfity", dtype=np.uint8)] = True
_EXPONENT = np.zeros(256, dtype=bool)
_EXPONENT[np.frombuffer(b"eE", dtype=np.uint8)] = True
_SIGN = np.zeros(256, dtype=bool)
_SIGN[np.frombuffer(b"+-", dtype=np.uint8)] = True
_PLUS, _MINUS, _DOT, _ZERO = ord("+"), ord("-"), ord("."), ord("0")


class JsonArray:
    """Where a JSON body's array member lies: ``data[start:end]`` is its text."""

    __slots__ = ("data", "end", "start")

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.start, self.end = data, start, end

    def rest(self) -> bytes:
        """The body with the array member's value replaced by ``null``."""
        return self.data[: self.start] + b"null" + self.data[self.end :]


def split_json(data: bytes, field: str, rest_limit: int) -> JsonArray | None:
    """The span of the member ``field`` when its value is an array; None when the body has no
    such member. The other members may take at most ``rest_limit`` bytes (413 beyond).

    A key inside a string value cannot match: its closing quote would be escaped. A nested
    object with the same key can, and is then refused by the model (no model has objects)."""
    key = re.compile(rb'"' + re.escape(field.encode()) + rb'"\s*:\s*(?=\[)')
    found = key.search(data)
    if found is None:
        return None
    start = found.end()
    run = _ARRAY_RUN.match(data, start)
    end = start if run is None else run.end()
    while end > start and data[end - 1] in b" \t\n\r,":
        end -= 1
    rest = len(data) - (end - start)
    if rest > rest_limit:
        raise PayloadTooLarge(
            f"the JSON members other than {field!r} take {rest} bytes; at most {rest_limit} "
            "(DISTREWARD_MAX_JSON_FIELDS_BYTES)",
            reason="json_fields",
        )
    return JsonArray(data, start, end)


@cache
def without_array(model: type[BaseModel], field: str) -> type[BaseModel]:
    """``model`` with ``field`` accepting ``null``: the body without its array is validated by
    everything else ``model`` says (types, defaults, no extra members)."""
    fields: dict[str, Any] = {field: (Any, None)}
    return create_model(f"{model.__name__}Members", __base__=model, **fields)


def array_shape(found: JsonArray, ndim: int, what: str) -> tuple[int, ...]:
    """The shape the text announces (ndim 1 to 3), from counts: the width of the first
    innermost row, the rows of the first group, the number of ``[`` and of commas. A text that
    is no regular array of this shape fails :func:`fill_array`; a count that cannot belong to
    one fails here."""
    data, start, end = found.data, found.start, found.end
    depth, at = 0, start
    while at < end and data[at] in b"[ \t\n\r":
        depth += data[at] == _OPEN
        at += 1
    if at < end and data[at] == _CLOSE:  # "[]" first: empty, whatever the nesting
        return (0,) * ndim
    if depth != ndim:
        raise BadInput(f"{what}: expected {ndim} nested levels of arrays, got {depth}")
    first_close = data.find(b"]", start, end)
    row = data[data.rfind(b"[", start, first_close) + 1 : first_close]
    width = row.count(b",") + 1 if row.strip(_WHITESPACE) else 0
    opens = data.count(b"[", start, end)
    if ndim == 1:
        shape: tuple[int, ...] = (width,)
    elif ndim == 2:
        shape = (opens - 1, width)
    else:
        group_end = re.compile(rb"\]\s*\]").search(data, start, end)
        if group_end is None:
            raise BadInput(f"{what}: unterminated array")
        rows = data.count(b"[", start, group_end.start()) - 2  # less the outer and the group's
        groups, extra = divmod(opens - 1, rows + 1)
        if extra:
            raise BadInput(f"{what}: ragged nesting; every group must have the same size")
        shape = (groups, rows, width)
    if 0 not in shape and data.count(b",", start, end) != math.prod(shape) - 1:
        raise BadInput(f"{what}: ragged nesting; every row must have the same length")
    return shape


def fill_array(found: JsonArray, out: np.ndarray, what: str) -> None:
    """Parse the array's numbers into ``out`` (of the announced shape, C order), checking that
    the text nests exactly that shape; 400 naming the problem otherwise."""
    data, end = found.data, found.end
    flat = out.reshape(-1)
    shape = out.shape
    strides = [math.prod(shape[k:]) for k in range(1, len(shape))]
    done, at = 0, found.start
    while at < end:
        cut = end if end - at <= _CHUNK_BYTES else _cut(data, at + _CHUNK_BYTES, end)
        done = _fill_chunk(
            data[at:cut], flat, done, strides, first=at == found.start, last=cut == end, what=what
        )
        at = cut


def _cut(data: bytes, near: int, end: int) -> int:
    """A chunk boundary after ``near``: the first number after a comma, so that every chunk
    ends with a whole separator and the next one begins with a number."""
    comma = data.find(b",", near, end)
    if comma < 0:
        return end
    at = comma + 1
    while at < end and data[at] in b"[ \t\n\r":
        at += 1
    return at


def _ragged(what: str) -> BadInput:
    return BadInput(f"{what}: ragged or malformed nesting; send a regular array of numbers")


def _fill_chunk(
    chunk: bytes,
    flat: np.ndarray,
    done: int,
    strides: list[int],
    *,
    first: bool,
    last: bool,
    what: str,
) -> int:
    """Check one chunk and parse its numbers into ``flat[done:]``; returns ``done`` plus the
    numbers it held."""
    raw = np.frombuffer(chunk, dtype=np.uint8)
    kinds = _CLASS[raw]
    if not kinds.all():
        bad = int(np.argmin(kinds))
        raise BadInput(
            f"{what}: unexpected character {chunk[bad : bad + 1]!r}; send an array of numbers"
        )
    kept = np.flatnonzero(kinds != _SPACE)
    codes, number = raw[kept], kinds[kept] == _NUMBER
    if ((np.diff(kept) > 1) & number[:-1] & number[1:]).any():
        raise BadInput(f"{what}: numbers separated by whitespace; separate them with commas")
    ndim = len(strides) + 1
    starts = np.flatnonzero(number[1:] & ~number[:-1]) + 1
    if number[0]:
        starts = np.concatenate(([0], starts))
    ends = np.flatnonzero(number[:-1] & ~number[1:]) + 1
    if number[-1]:
        ends = np.append(ends, len(codes))
    count = len(starts)
    if count == 0 or done + count > len(flat):
        raise _ragged(what)
    both = ~number[:-1] & ~number[1:]
    if not _PAIR_ALLOWED[codes[:-1][both].astype(np.int64) * 256 + codes[1:][both]].all():
        raise _ragged(what)
    # The separator after each number but the chunk's last one's when it closes the array:
    # given the allowed pairs, "]" * a + "," + "[" * b with one comma; a = b = j expected.
    separators = count - 1 if last else count
    commas = np.flatnonzero(codes == _COMMA)
    if len(commas) != separators:
        raise _ragged(what)
    following = np.append(starts[1:], len(codes))[:separators]
    index = np.arange(done + 1, done + separators + 1, dtype=np.int64)
    expected = np.zeros(separators, dtype=np.int64)
    for stride in strides:
        expected += index % stride == 0
    before = commas - ends[:separators]  # "]" before the comma (negative: comma misplaced)
    after = following - commas - 1  # "[" after it
    if not ((before == expected).all() and (after == expected).all()):
        raise _ragged(what)
    if codes[: int(starts[0])].tobytes() != (b"[" * ndim if first else b""):
        raise _ragged(what)
    if last and (done + count != len(flat) or codes[int(ends[-1]) :].tobytes() != b"]" * ndim):
        raise _ragged(what)
    _check_numbers(codes, number, starts, ends, what)
    text = codes[int(starts[0]) : int(ends[-1])].tobytes().translate(_TO_SPACE)
    try:
        values = np.fromstring(text, dtype=np.float64, sep=" ")
    except (ValueError, DeprecationWarning) as exc:  # numpy could not read a token: raised
        raise BadInput(f"{what}: a value is not a number; send JSON numbers") from exc
    if len(values) != count:  # ... or, where its warning is not an error, read short
        raise BadInput(f"{what}: a value is not a number; send JSON numbers")
    flat[done : done + count] = values
    return done + count


def _check_numbers(
    codes: np.ndarray, number: np.ndarray, starts: np.ndarray, ends: np.ndarray, what: str
) -> None:
    """Refuse a number that JSON's grammar does not allow (see the module), judging each
    character that is not a digit by its neighbours in the same number, and each number's
    first and last characters; words (NaN, Infinity) are left to the value check. Digits,
    nearly all of the body, are looked at once."""
    count = len(starts)
    special = np.flatnonzero(number & ~_DIGIT[codes])  # signs, points, exponents, letters
    token = np.searchsorted(starts, special, side="right") - 1
    marks = codes[special]
    words = np.zeros(count, dtype=bool)
    words[token[_LETTER[marks]]] = True
    plain = ~words[token]
    special, token, marks = special[plain], token[plain], marks[plain]
    at_start, at_end = special == starts[token], special == ends[token] - 1
    # Neighbours inside the same number (a code no rule accepts outside it).
    previous = np.where(at_start, 0, codes[np.maximum(special - 1, 0)])
    following = np.where(at_end, 0, codes[np.minimum(special + 1, len(codes) - 1)])
    exponent, dot = _EXPONENT[marks], marks == _DOT
    sign = (marks == _PLUS) | (marks == _MINUS)
    bad = (
        (sign & ~(_EXPONENT[previous] | (at_start & (marks == _MINUS))))
        | (dot & ~(_DIGIT[previous] & _DIGIT[following]))
        | (exponent & ~(_DIGIT[previous] & (_DIGIT[following] | _SIGN[following])))
        | at_end
    )
    # Each plain number starts with a digit or "-", a "0" leading its digits stands alone.
    plain_numbers = np.flatnonzero(~words)
    head = starts[plain_numbers]
    first = codes[head]
    lead = head + (first == _MINUS)  # the first digit's place (a lone "-" is bad above)
    inside = lead + 1 < ends[plain_numbers]
    lead_zero = (codes[np.minimum(lead, len(codes) - 1)] == _ZERO) & inside
    next_digit = _DIGIT[codes[np.minimum(lead + 1, len(codes) - 1)]]
    bad_numbers = plain_numbers[((first != _MINUS) & ~_DIGIT[first]) | (lead_zero & next_digit)]
    # At most one point and one exponent per number, the point before the exponent.
    dots = np.bincount(token[dot], minlength=count)
    exponents = np.bincount(token[exponent], minlength=count)
    dot_at = np.full(count, -1)
    dot_at[token[dot]] = special[dot]
    exponent_at = np.full(count, len(codes))
    exponent_at[token[exponent]] = special[exponent]
    misplaced = np.flatnonzero((dots > 1) | (exponents > 1) | (dot_at > exponent_at))
    culprits = np.concatenate([token[bad], bad_numbers, misplaced])
    if len(culprits):
        which = int(culprits.min())
        spelled = codes[int(starts[which]) : int(ends[which])].tobytes().decode()
        raise BadInput(f"{what}: {spelled!r} is not a JSON number")

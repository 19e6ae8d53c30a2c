"""A JSON body's numeric arrays decoded straight into float64 numpy arrays, in bounded memory.

Parsing a JSON array of numbers into Python lists costs about 32 bytes per number (a float
object and a list slot), some 6.5x the text: four concurrent 73 MB bodies grew the process by
4 GiB that way. Here the body is split (:func:`split_json`): the array members (``"groups"``,
``"mu"`` and ``"sigma"`` ...), which never become Python objects, and the other members
(``mode``, ``seed`` ...), small by their own limit (``DISTREWARD_MAX_JSON_FIELDS_BYTES``) and
validated by pydantic against the route's model with the arrays set to ``null``
(:func:`without_arrays`).

Member names are read as written: a member named twice in one object, or a name written with
escapes (``"feature\\u0073"``), is refused with a 400 (:func:`check_member_names`). Parsers
disagree on both (``json`` and pydantic keep the last copy, a scan for the name finds the
first, and only a decoder sees through escapes), so neither is guessed.

Each array is decoded in three steps:

1. :func:`array_shape`: its shape from counts over the text (``[`` and ``,``), which the caller
   checks (G, K, d, the cost bound, the memory budget) before anything is allocated;
2. the caller allocates one float64 array of that shape;
3. :func:`fill_array` checks the text's structure, vectorised, and has numpy parse its numbers
   into their slice.

Both passes read the text in blocks of ``_BLOCK_BYTES``, whatever it holds: whitespace is
dropped block by block (:func:`_compact`), and the numbers are cut into chunks after a comma
within at most ``MAX_NUMBER_CHARS`` and a few brackets of a block's end. So the temporaries
of decoding stay below :data:`DECODE_TEMPORARY_BYTES` for any text (a 64 MiB number, 128 MiB
of spaces), and no call holds the interpreter for more than a block: the passes run in a
worker thread and the event loop keeps answering. The other scans over a whole body (for a
member's name, for the end of an array) go block by block too.

The structure check: between numbers ``t`` and ``t + 1`` (0-based, row-major) the text must be
``"]" * j + "," + "[" * j``, where ``j`` counts the axes that roll over at ``t + 1`` (j = 1
where ``t + 1`` is a multiple of d, 2 where also of K d ...), with ``"[" * ndim`` before the
first number and ``"]" * ndim`` after the last. That is exactly a regular array of the announced
shape. Per chunk it is checked with counts per separator (one comma, j of each bracket) and the
pairs of adjacent brackets and commas allowed (``]]``, ``],``, ``,[``, ``[[``), which fix their
order.

Numbers are read by numpy's ``strtod`` (correctly rounded, like Python's ``float``) once each
has been checked against JSON's grammar, ``-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]?
[0-9]+)?``, character by character with its neighbours: ``strtod`` also reads ``+1``, ``.5``,
``1.`` and ``01``, which the JSON members beside the array (and any other JSON parser) refuse,
so the array does too. A number may take at most ``MAX_NUMBER_CHARS`` characters: every float64
takes at most 327 in its shortest spelling without an exponent (``-0.000…5e-324``'s 323 zeros),
far fewer with one. ``NaN`` and ``Infinity`` (which Python's ``json`` writes) are read as what
they are and, like an overflowing exponent, refused with 400 by the value check that follows
decoding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from pydantic import BaseModel, create_model

from ..errors import BadInput, PayloadTooLarge, Unprocessable

__all__ = [
    "DECODE_TEMPORARY_BYTES",
    "MAX_NUMBER_CHARS",
    "JsonArray",
    "JsonBody",
    "array_shape",
    "check_member_names",
    "fill_array",
    "split_json",
    "without_arrays",
]

MAX_NUMBER_CHARS = 400  # characters of one JSON number; a float64 needs at most 327
_BLOCK_BYTES = 2**16  # text read at once by every pass over an array or a whole body
# What one decoding pass holds at most besides the body and the arrays: a block's character
# classes and masks, and a chunk's positions (int64) and values (float64), some 75 bytes per
# character of a chunk of one-digit numbers, the worst case (tests/service/api/
# test_service_json_array.py measures it).
DECODE_TEMPORARY_BYTES = 96 * _BLOCK_BYTES

_WHITESPACE = b" \t\n\r"  # JSON's whitespace, nothing else
_SPACES = re.compile(rb"[ \t\n\r]*")
# What an array of numbers is written with (NaN and Infinity included, to be refused by the
# value check with a message that says so), and whitespace: the span of an array member.
_ARRAY_TEXT = re.compile(rb"[\[\]0-9.eE+\-, \t\n\rNaInfity]*")
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
# A brace, or a string (group 1: its first backslash) and, when it names a member, the colon
# after it (group 2). Possessive throughout: a string that never closes runs to the end of the
# text once, so the scan is linear in any text, JSON or not.
_TOKEN = re.compile(rb'[{}]|"[^"\\]*+(?:(\\).?(?:[^"\\]++|\\.?)*+)?+"?+([ \t\n\r]*+:)?+', re.DOTALL)
_OPEN_BRACE, _CLOSE_BRACE = ord("{"), ord("}")


class JsonArray:
    """Where a JSON body's array member lies: ``data[start:end]`` is its text."""

    __slots__ = ("data", "end", "start")

    def __init__(self, data: bytes | bytearray, start: int, end: int) -> None:
        self.data, self.start, self.end = data, start, end


@dataclass(frozen=True)
class JsonBody:
    """A JSON body split: its array members by name, and ``rest``, the body with each of
    their values replaced by ``null``."""

    arrays: dict[str, JsonArray]
    rest: bytes


def split_json(data: bytes | bytearray, fields: tuple[str, ...], rest_limit: int) -> JsonBody:
    """The array members among ``fields`` (a member whose value is no array stays in the rest,
    for the model to refuse), and the rest, which may take at most ``rest_limit`` bytes (413
    beyond). A member named twice is a 400.

    A name inside a string value cannot match: its closing quote would be escaped. A nested
    object with the same name can, and is then refused by the model (no model has objects)."""
    arrays = {}
    for field in fields:
        found = _array_member(data, field)
        if found is not None:
            arrays[field] = found
    rest = len(data) - sum(found.end - found.start for found in arrays.values())
    if rest > rest_limit:
        if not arrays:
            raise Unprocessable(
                f"the JSON body has no array member {' or '.join(map(repr, fields))}; send it "
                "as nested lists of numbers"
            )
        raise PayloadTooLarge(
            f"the JSON members other than {', '.join(map(repr, arrays))} take {rest} bytes; at "
            f"most {rest_limit} (DISTREWARD_MAX_JSON_FIELDS_BYTES)",
            reason="json_fields",
        )
    parts, at = [], 0
    for found in sorted(arrays.values(), key=lambda found: found.start):
        parts += [data[at : found.start], b"null"]
        at = found.end
    parts.append(data[at:])
    return JsonBody(arrays, b"".join(parts))


def _array_member(data: bytes | bytearray, field: str) -> JsonArray | None:
    """The member ``field`` when its value is an array; None when it is absent or not one. A
    second member of that name, anywhere, is refused here, before the rest is measured (where
    a second large array would only be "too large")."""
    first = _member(data, field, 0)
    if first is None:
        return None
    start = first[1]
    if data[start : start + 1] != b"[":
        if _member(data, field, start) is not None:
            raise _named_twice(field)
        return None
    run = _run(data, _ARRAY_TEXT, start, len(data))
    close = data.rfind(b"]", start, run)  # the array's own text ends at its last bracket
    end = run if close < 0 else close + 1
    if _member(data, field, end) is not None:
        raise _named_twice(field)
    return JsonArray(data, start, end)


def _named_twice(field: str) -> BadInput:
    return BadInput(
        f"the JSON member {field!r} appears more than once; send it once, at the top level "
        "(JSON parsers disagree on which copy counts)"
    )


@cache
def _name_pattern(field: str) -> re.Pattern[bytes]:
    # The name and its colon, or the name where a block ends (its colon may be further on).
    return re.compile(rb'"' + re.escape(field.encode()) + rb'"[ \t\n\r]*(?::|\Z)')


def _member(data: bytes | bytearray, field: str, at: int) -> tuple[int, int] | None:
    """The first ``"field":`` from ``at``: where its name starts and where its value starts
    (after whitespace); None when there is none. Searched a block at a time."""
    pattern = _name_pattern(field)
    reach = len(field.encode()) + 2  # a name is searched whole in the block it starts in
    end = len(data)
    while at < end:
        hit = pattern.search(data, at, min(at + _BLOCK_BYTES + reach, end))
        if hit is None:
            at += _BLOCK_BYTES
            continue
        colon = hit.end() - 1
        if data[colon] != ord(":"):  # cut by the block: look beyond it
            colon = _run(data, _SPACES, hit.end(), end)
        if data[colon : colon + 1] == b":":
            return hit.start(), _run(data, _SPACES, colon + 1, end)
        at = hit.start() + 1
    return None


def _run(data: bytes | bytearray, pattern: re.Pattern[bytes], at: int, end: int) -> int:
    """Where the run of ``pattern``'s characters from ``at`` stops (at most ``end``), matched a
    block at a time."""
    while at < end:
        stop = min(at + _BLOCK_BYTES, end)
        matched = pattern.match(data, at, stop)
        reached = at if matched is None else matched.end()
        if reached < stop:
            return reached
        at = stop
    return at


def check_member_names(text: bytes) -> None:
    """Refuse a member named twice in one object, or a member name written with escapes: JSON
    parsers read them differently (see the module). Linear in any text; ``text`` is a body's
    rest, bounded by its limit."""
    names: list[set[bytes]] = []
    for token in _TOKEN.finditer(text):
        first = text[token.start()]
        if first == _OPEN_BRACE:
            names.append(set())
        elif first == _CLOSE_BRACE:
            if names:
                names.pop()
        elif token.group(2) is not None:  # a member's name
            name = text[token.start() + 1 : token.start(2) - 1]
            if token.group(1) is not None:
                raise BadInput(
                    f"the JSON member name {_shown(name)} is written with escapes; write "
                    "member names as plain text, as every JSON encoder does"
                )
            if names and name in names[-1]:
                raise BadInput(
                    f"the JSON member {_shown(name)} appears more than once; send each member "
                    "once (JSON parsers disagree on which copy counts)"
                )
            if names:
                names[-1].add(name)


def _shown(name: bytes) -> str:
    """A member name for a message: quoted, at most 64 characters of it."""
    text = name[:64].decode(errors="replace")
    return f'"{text}…"' if len(name) > 64 else f'"{text}"'


@cache
def without_arrays(model: type[BaseModel], fields: tuple[str, ...]) -> type[BaseModel]:
    """``model`` with each of ``fields`` also accepting ``null``, which replaces the arrays in a
    body's rest: the rest is validated by everything else ``model`` says (types, defaults, no
    extra members), and a member of these names that is no array gets the model's message."""
    nullable: dict[str, Any] = {}
    for field in fields:
        annotation: Any = model.model_fields[field].annotation
        nullable[field] = (annotation | None, None)
    return create_model(f"{model.__name__}Members", __base__=model, **nullable)


def _compact(found: JsonArray, what: str) -> Iterator[np.ndarray]:
    """The array's text without its whitespace, one block of text at a time. Every character
    is checked to be one an array of numbers is written with, and no two numbers may be
    separated by whitespace alone (a comma left out)."""
    text = memoryview(found.data)[found.start : found.end]
    number_last = False  # the last character kept was part of a number
    space_last = False  # whitespace followed it
    for at in range(0, len(text), _BLOCK_BYTES):
        raw = np.frombuffer(text[at : at + _BLOCK_BYTES], dtype=np.uint8)
        kinds = _CLASS[raw]
        if not kinds.all():
            bad = int(np.argmin(kinds))
            raise BadInput(
                f"{what}: unexpected character {bytes(raw[bad : bad + 1])!r}; send an array of "
                "numbers"
            )
        space = kinds == _SPACE
        kept = ~space
        codes = raw[kept]
        if len(codes):
            number = kinds[kept] == _NUMBER
            after_space = np.empty_like(space)
            after_space[0], after_space[1:] = space_last, space[:-1]
            after_number = np.empty_like(number)
            after_number[0], after_number[1:] = number_last, number[:-1]
            if (number & after_number & after_space[kept]).any():
                raise BadInput(
                    f"{what}: numbers separated by whitespace; separate them with commas"
                )
            number_last = bool(number[-1])
            yield codes
        space_last = bool(space[-1])


class _Counts:
    """What :func:`array_shape` counts over the text without whitespace, fed block by block:
    the ``[`` before anything else, the first innermost row (from its ``[`` to the first
    ``]``), the ``[`` before the first ``]]`` (the end of the first group), every ``[`` and
    every comma."""

    def __init__(self) -> None:
        self.leading = 0
        self.first: int | None = None  # the first character that is no "[" (None: none yet)
        self.row: tuple[int, int] | None = None  # commas and characters of the first row
        self._row_commas = self._row_chars = 0  # since the last "[", until the first "]"
        self.group_opens: int | None = None
        self.opens = self.commas = 0
        self._last = 0  # the previous block's last character

    def feed(self, codes: np.ndarray) -> None:
        opens, closes, commas = codes == _OPEN, codes == _CLOSE, codes == _COMMA
        if self.first is None:
            if opens.all():
                self.leading += len(codes)
            else:
                first = int(np.argmin(opens))
                self.leading += first
                self.first = int(codes[first])
        if self.row is None:
            end = int(np.argmax(closes)) if closes.any() else len(codes)
            before = opens[:end]
            if before.any():
                last_open = end - 1 - int(np.argmax(before[::-1]))
                self._row_commas = int(np.count_nonzero(commas[last_open + 1 : end]))
                self._row_chars = end - last_open - 1
            else:
                self._row_commas += int(np.count_nonzero(commas[:end]))
                self._row_chars += end
            if end < len(codes):
                self.row = (self._row_commas, self._row_chars)
        if self.group_opens is None:
            if self._last == _CLOSE and closes[0]:  # "]" ends the last block, "]" starts this
                self.group_opens = self.opens
            else:
                pairs = closes[:-1] & closes[1:]
                if pairs.any():
                    self.group_opens = self.opens + int(
                        np.count_nonzero(opens[: int(np.argmax(pairs))])
                    )
        self.opens += int(np.count_nonzero(opens))
        self.commas += int(np.count_nonzero(commas))
        self._last = int(codes[-1])


def array_shape(found: JsonArray, ndim: int, what: str) -> tuple[int, ...]:
    """The shape the text announces (ndim 1 to 3), from counts: the width of the first
    innermost row, the rows of the first group, the number of ``[`` and of commas. A text that
    is no regular array of this shape fails :func:`fill_array`; a count that cannot belong to
    one fails here."""
    counts = _Counts()
    for codes in _compact(found, what):
        counts.feed(codes)
    if counts.first == _CLOSE:  # "[]" first: empty, whatever the nesting
        return (0,) * ndim
    if counts.leading != ndim:
        raise BadInput(f"{what}: expected {ndim} nested levels of arrays, got {counts.leading}")
    if counts.row is None:
        raise BadInput(f"{what}: unterminated array")
    row_commas, row_chars = counts.row
    width = row_commas + 1 if row_chars else 0
    if ndim == 1:
        shape: tuple[int, ...] = (width,)
    elif ndim == 2:
        shape = (counts.opens - 1, width)
    else:
        if counts.group_opens is None:
            raise BadInput(f"{what}: unterminated array")
        rows = counts.group_opens - 2  # less the outer "[" and the group's
        groups, extra = divmod(counts.opens - 1, rows + 1)
        if extra:
            raise BadInput(f"{what}: ragged nesting; every group must have the same size")
        shape = (groups, rows, width)
    if 0 not in shape and counts.commas != math.prod(shape) - 1:
        raise BadInput(f"{what}: ragged nesting; every row must have the same length")
    return shape


def fill_array(found: JsonArray, out: np.ndarray, what: str) -> None:
    """Parse the array's numbers into ``out`` (of the announced shape, C order), checking that
    the text nests exactly that shape; 400 naming the problem otherwise.

    The text without whitespace is cut after the last comma of each block: a chunk ends with a
    whole separator's comma, and the ``[`` of that separator open the next chunk. What follows
    the last comma is carried over; between two commas there can only be one number and its
    brackets, so a longer carry is a number too long (or brackets too many)."""
    flat = out.reshape(-1)
    strides = [math.prod(out.shape[k:]) for k in range(1, out.ndim)]
    longest_carry = MAX_NUMBER_CHARS + 2 * out.ndim
    done, opening = 0, out.ndim
    carry = np.empty(0, dtype=np.uint8)
    for codes in _compact(found, what):
        piece = np.concatenate((carry, codes)) if len(carry) else codes
        commas = piece == _COMMA
        if commas.any():
            cut = len(piece) - int(np.argmax(commas[::-1]))  # after the last comma
            done, opening = _fill_chunk(
                piece[:cut], flat, done, strides, opening, last=False, what=what
            )
            carry = piece[cut:].copy()
        else:
            carry = piece
        if len(carry) > longest_carry:
            raise _overlong(carry, what)
    _fill_chunk(carry, flat, done, strides, opening, last=True, what=what)


def _ragged(what: str) -> BadInput:
    return BadInput(f"{what}: ragged or malformed nesting; send a regular array of numbers")


def _too_long(what: str, length: int) -> BadInput:
    return BadInput(
        f"{what}: a number of {length} characters; JSON numbers may take at most "
        f"{MAX_NUMBER_CHARS} (every float64 fits in 327 without an exponent, 24 with one)"
    )


def _overlong(carry: np.ndarray, what: str) -> BadInput:
    """What a carry longer than a number and its brackets holds: a number too long, or
    brackets that belong to no regular array."""
    digits = int(np.count_nonzero(_CLASS[carry] == _NUMBER))
    return _too_long(what, digits) if digits > MAX_NUMBER_CHARS else _ragged(what)


def _fill_chunk(
    codes: np.ndarray,
    flat: np.ndarray,
    done: int,
    strides: list[int],
    opening: int,
    *,
    last: bool,
    what: str,
) -> tuple[int, int]:
    """Check one chunk (text without whitespace: ``"[" * opening``, then numbers and their
    separators up to a comma, or to the array's end when ``last``) and parse its numbers into
    ``flat[done:]``; returns ``done`` plus the numbers it held, and the ``[`` the next chunk
    opens with."""
    ndim = len(strides) + 1
    if not len(codes):
        raise _ragged(what)
    number = _CLASS[codes] == _NUMBER
    starts = np.flatnonzero(number[1:] & ~number[:-1]) + 1
    if number[0]:
        starts = np.concatenate(([0], starts))
    ends = np.flatnonzero(number[:-1] & ~number[1:]) + 1
    if number[-1]:
        ends = np.append(ends, len(codes))
    count = len(starts)
    if count == 0 or done + count > len(flat):
        raise _ragged(what)
    longest = int((ends - starts).max())
    if longest > MAX_NUMBER_CHARS:
        raise _too_long(what, longest)
    both = ~number[:-1] & ~number[1:]
    if not _PAIR_ALLOWED[codes[:-1][both].astype(np.int64) * 256 + codes[1:][both]].all():
        raise _ragged(what)
    # The separator after each number but the array's last: given the allowed pairs,
    # "]" * a + "," + "[" * b with one comma; a = b = j expected. The "[" after a chunk's last
    # comma open the next chunk, and are checked there.
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
    checked = separators if last else separators - 1
    if not ((before == expected).all() and (after[:checked] == expected[:checked]).all()):
        raise _ragged(what)
    if codes[: int(starts[0])].tobytes() != b"[" * opening:
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
    return done + count, 0 if last else int(expected[-1])


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

"""One JSON policy for everything the node reads and writes: what it accepts, it can store,
read back and deliver.

Why: orjson (fast, the common path) silently turns integers beyond 64 bits into floats, reads
documents four times deeper than it can write (1,024 vs 254 levels), and the stdlib parser
lets lone surrogates through, which no UTF-8 encoder can write. A document that parses but
cannot be written fails later — a 500 after admission, a job that cannot save its result, a
listing that answers 500 for good. So every document entering the node (request bodies,
container answers, stored rows) goes through :func:`loads` and every one leaving it through
:func:`dumps`:

- integers are kept exact at any size up to :data:`MAX_INT_DIGITS` digits (as the reference
  node and Python services, which use the stdlib parser, do); longer ones are refused;
- strings must be Unicode text: a lone surrogate (``"\\udfff"`` or the bytes ``ED A0 80``) is
  refused, as are invalid UTF-8, ``NaN`` and ``Infinity``;
- a document nested deeper than :data:`MAX_DEPTH` arrays/objects is refused, which leaves
  the envelopes the node wraps around data (request, stored result, listing) far inside the
  serialiser's limit.

Pure: no I/O; refusals are :class:`~node_agent.errors.InvalidJson` with ``params`` that name
the problem and the limit.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from node_agent.errors import InvalidJson

MAX_DEPTH = 128
MAX_INT_DIGITS = 4300  # Python's own default limit for int <-> str conversion

# One translated copy of the body answers both cheap questions: is there a run of 19 digits
# (the shortest literal orjson may turn into a float: below -2**63 or from 2**64 up), and how
# many arrays/objects could there be (an upper bound: brackets in strings count too)?
_SCAN = bytes(
    ord("0") if 0x30 <= i <= 0x39 else ord("[") if i in b"[{" else ord(" ") for i in range(256)
)
_LONG_NUMBER = b"0" * 19
_INT64_MIN, _UINT64_END = -(2**63), 2**64


def loads(raw: bytes | str) -> Any:
    """Parse ``raw`` under the policy; raises :class:`InvalidJson` naming what is wrong."""
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as exc:
            raise _not_utf8(exc.start) from None
    scan = raw.translate(_SCAN)
    if _LONG_NUMBER in scan:
        return _loads_exact(raw)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own, at 1,024
            raise _too_deep_error() from None
        raise InvalidJson("Invalid JSON body", {"problem": str(exc)}) from None
    if scan.count(b"[") > MAX_DEPTH and _too_deep(value):
        raise _too_deep_error()
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, like ``orjson.dumps``, with integers beyond 64 bits kept exact."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # orjson refuses such integers; written as raw JSON fragments they are exact. Anything
        # else it refuses it refuses again here, with its own error.
        return orjson.dumps(_big_ints_as_fragments(value))


# --- the exact path: only for documents with a 19-digit run --------------------------------


def _int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise InvalidJson(
            "Invalid JSON body",
            {
                "problem": f"integer with more than {MAX_INT_DIGITS} digits",
                "max_int_digits": MAX_INT_DIGITS,
            },
        )
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise InvalidJson(
            "Invalid JSON body", {"problem": f"number out of range of a 64-bit float: {text}"}
        )
    return value


def _constant(name: str) -> Any:
    raise InvalidJson("Invalid JSON body", {"problem": f"{name} is not JSON"})


_EXACT = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)


def _loads_exact(raw: bytes) -> Any:
    """The stdlib parser (integers of any size), then the checks orjson would have made."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc.start) from None
    try:
        value = _EXACT.decode(text)
    except RecursionError:
        raise _too_deep_error() from None
    except ValueError as exc:
        raise InvalidJson("Invalid JSON body", {"problem": str(exc)}) from None
    _check(value, 1)
    return value


def _check(node: Any, depth: int) -> None:
    """Depth and text of a stdlib-parsed document (recursion bounded by MAX_DEPTH)."""
    if isinstance(node, str):
        _check_text(node)
    elif isinstance(node, dict | list):
        if depth > MAX_DEPTH:
            raise _too_deep_error()
        if isinstance(node, dict):
            for key, item in node.items():
                _check_text(key)
                _check(item, depth + 1)
        else:
            for item in node:
                _check(item, depth + 1)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise InvalidJson(
                "Invalid JSON body",
                {
                    "problem": "string with a lone surrogate "
                    f"(\\u{ord(text[exc.start]):04x}): not Unicode text"
                },
            ) from None


# --- depth of an orjson-parsed document ----------------------------------------------------


def _serialiser_depth() -> int | None:
    """How deep orjson writes (254 in orjson 3.x); None when it writes anything we tried."""
    value: Any = []
    for depth in range(1, 2049):
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return depth - 1
        value = [value]
    return None


_WRITABLE_DEPTH = _serialiser_depth()


def _too_deep(value: Any) -> bool:
    """Deeper than MAX_DEPTH? orjson's writer counts depth in C: wrapped in enough arrays to
    leave exactly MAX_DEPTH levels, the value is writable only if it is not deeper (~10× the
    speed of a walk in Python, which is the fallback should orjson ever drop its limit)."""
    if _WRITABLE_DEPTH is None or _WRITABLE_DEPTH < MAX_DEPTH:
        try:
            _check(value, 1)
        except InvalidJson:
            return True
        return False
    for _ in range(_WRITABLE_DEPTH - MAX_DEPTH):
        value = [value]
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return True
    return False


def _big_ints_as_fragments(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _big_ints_as_fragments(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_as_fragments(v) for v in value]
    if type(value) is int and not _INT64_MIN <= value < _UINT64_END:
        return orjson.Fragment(str(value).encode())
    return value


def _not_utf8(position: int) -> InvalidJson:
    return InvalidJson(
        "Invalid JSON body",
        {"problem": f"not valid UTF-8 (a lone surrogate or a bad byte) at byte {position}"},
    )


def _too_deep_error() -> InvalidJson:
    return InvalidJson(
        "Invalid JSON body",
        {"problem": f"nested deeper than {MAX_DEPTH} arrays/objects", "max_depth": MAX_DEPTH},
    )

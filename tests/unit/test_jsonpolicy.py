"""node_agent.jsonpolicy: what is accepted can be written back, exactly."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from eth_abi.abi import decode

from node_agent import jsonpolicy
from node_agent.chain.outputs import encode_output
from node_agent.errors import InvalidJson
from node_agent.jsonpolicy import MAX_DEPTH, dumps, loads


def nested_text(depth: int, leaf: bytes = b"1") -> bytes:
    opens = [b'{"k":' if level % 2 else b"[" for level in range(depth)]
    closes = [b"}" if level % 2 else b"]" for level in range(depth)]
    return b"".join(reversed(opens)) + leaf + b"".join(closes)


@pytest.mark.parametrize(
    "value",
    [
        2**64 - 1,
        2**64,
        -(2**63),
        -(2**63) - 1,
        2**256 - 1,
        -(10**100),
        {"a": [1, 2**200, {"b": -(2**70)}], "s": "1234567890123456789012"},
        ["\U0001f600", 0.1, 1e300, -0.0, True, None],
        int("9" * jsonpolicy.MAX_INT_DIGITS),
    ],
)
def test_round_trip_is_exact(value: Any) -> None:
    text = json.dumps(value).encode()
    assert loads(text) == value
    assert loads(dumps(loads(text))) == value
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert dumps(loads(text)) == compact


def test_dumps_keeps_orjson_fragments_beside_big_integers() -> None:
    """A listing mixes cached results (raw JSON fragments) with live ones."""
    body = [{"result": orjson.Fragment(b'{"x":1}')}, {"result": {"n": 2**80}}]
    assert json.loads(dumps(body)) == [{"result": {"x": 1}}, {"result": {"n": 2**80}}]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'["\\udfff"]', "surrogate"),
        (b'{"\\ud800":1}', "surrogate"),
        (b'["\xed\xa0\x80"]', "UTF-8"),
        (b'["\\udfff", 12345678901234567890123]', "surrogate"),
        (b'{"\\udc00": 12345678901234567890123}', "surrogate"),
        (b'["\xed\xa0\x80", 12345678901234567890123]', "UTF-8"),
        (b"[NaN, 12345678901234567890123]", "NaN"),
        (b"[Infinity]", ""),
        (b"[1e400]", "infinity"),
        (b"[1" + b"0" * 30 + b"e400]", "64-bit float"),
        (b"[1" + b"0" * jsonpolicy.MAX_INT_DIGITS + b"]", "digits"),
        (b"{nope", ""),
    ],
)
def test_refused(raw: bytes, words: str) -> None:
    with pytest.raises(InvalidJson) as caught:
        loads(raw)
    assert caught.value.status == 400 and caught.value.error == "Invalid JSON body"
    assert caught.value.params is not None
    assert words in caught.value.params["problem"]


def test_a_str_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidJson):
        loads('["\udfff"]')


@pytest.mark.parametrize("leaf", [b"1", b"123456789012345678901234"], ids=["fast", "exact"])
@pytest.mark.parametrize("depth", [1, MAX_DEPTH - 1, MAX_DEPTH])
def test_depth_up_to_the_limit_is_accepted(depth: int, leaf: bytes) -> None:
    loads(nested_text(depth, leaf))


@pytest.mark.parametrize("leaf", [b"1", b"123456789012345678901234"], ids=["fast", "exact"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 251, 253, 254, 255, 1024, 1025, 20_000])
def test_depth_over_the_limit_is_refused_with_the_limit(depth: int, leaf: bytes) -> None:
    with pytest.raises(InvalidJson) as caught:
        loads(nested_text(depth, leaf))
    assert caught.value.params == {
        "problem": f"nested deeper than {MAX_DEPTH} arrays/objects",
        "max_depth": MAX_DEPTH,
    }


def test_brackets_in_strings_do_not_count() -> None:
    """The cheap count is only a trigger: strings full of brackets are not depth."""
    value = {"s": "[" * 5000, "t": "{" * 5000, "l": [[1]] * 300}
    assert loads(json.dumps(value).encode()) == value


def test_the_limit_leaves_room_for_the_node_envelopes() -> None:
    """A listing wraps data in [{"result": {"output": …}}], a stored result in
    [{"output": …}], a container request in {"data": …}: a few levels, far from orjson's."""
    assert jsonpolicy._WRITABLE_DEPTH is not None
    assert MAX_DEPTH + 8 <= jsonpolicy._WRITABLE_DEPTH


def test_depth_probe_agrees_with_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without orjson's writer limit the policy walks the document: same answers."""
    deep = orjson.loads(nested_text(MAX_DEPTH + 1))
    fine = orjson.loads(nested_text(MAX_DEPTH))
    assert jsonpolicy._too_deep(deep) and not jsonpolicy._too_deep(fine)
    monkeypatch.setattr(jsonpolicy, "_WRITABLE_DEPTH", None)
    assert jsonpolicy._too_deep(deep) and not jsonpolicy._too_deep(fine)


def test_on_chain_output_encodes_the_exact_integer() -> None:
    """A container's answer parsed under the policy is delivered on-chain digit for digit."""
    output = loads(b'{"price": 115792089237316195423570985008687907853269984665640564039457}')
    (text,) = decode(["string"], encode_output(output).output)
    assert text == '{"price":115792089237316195423570985008687907853269984665640564039457}'

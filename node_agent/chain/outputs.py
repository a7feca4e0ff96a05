"""Encoding a container chain's final output into deliverCompute's (input, output, proof).

Five-key form (``raw_input``, ``processed_input``, ``raw_output``, ``processed_output``,
``proof``, values un-prefixed hex or null): ``input = abi.encode(bytes, bytes)`` of the inputs,
``output = abi.encode(bytes, bytes)`` of the outputs, ``proof`` = its bytes. Anything else:
``output = abi.encode(string)`` of the output as compact JSON (Infernet uses Python's repr;
JSON is what a consumer can parse), empty input and proof.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from node_agent.chain.abi import encode_args

FIVE_KEYS = ("raw_input", "processed_input", "raw_output", "processed_output", "proof")


class OutputError(ValueError):
    """The output cannot be delivered (error code, bad hex)."""


@dataclass(frozen=True)
class Delivery:
    input: bytes
    output: bytes
    proof: bytes


def check_code(output: Any) -> None:
    """A ``code`` key other than 200 (int or string) marks the output as an error."""
    if isinstance(output, dict) and "code" in output and str(output["code"]).strip() != "200":
        raise OutputError(f"container returned code {output['code']!r}")


def _hex(value: Any, key: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise OutputError(f"{key} must be a hex string or null")
    text = value[2:] if value[:2].lower() == "0x" else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise OutputError(f"{key} is not valid hex") from None


def encode_output(output: Any) -> Delivery:
    """The bytes to deliver for a container chain's final output."""
    check_code(output)
    if isinstance(output, dict) and all(key in output for key in FIVE_KEYS):
        raw_in, proc_in, raw_out, proc_out, proof = (_hex(output[k], k) for k in FIVE_KEYS)
        return Delivery(
            input=encode_args(("bytes", "bytes"), (raw_in, proc_in)),
            output=encode_args(("bytes", "bytes"), (raw_out, proc_out)),
            proof=proof,
        )
    text = json.dumps(output, separators=(",", ":"), sort_keys=False, ensure_ascii=False)
    return Delivery(input=b"", output=encode_args(("string",), (text,)), proof=b"")

"""The flat-signature fast path of ``abi.encode_args`` and the direct RLP of signing agree with
eth-abi and eth-account byte for byte, and leave anything else (and every error) to them."""

from __future__ import annotations

import pytest
from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError, EncodingError
from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from node_agent.chain import abi
from node_agent.chain.wallet import NodeKey

KEY = "0x" + "42" * 32


def _flat_value(kind: str) -> st.SearchStrategy[tuple[str, object]]:
    if kind == "uint":
        return st.sampled_from([8, 16, 32, 64, 128, 256]).flatmap(
            lambda bits: st.tuples(
                st.just(f"uint{bits}"), st.integers(min_value=0, max_value=2**bits - 1)
            )
        )
    if kind == "int":
        return st.sampled_from([8, 32, 256]).flatmap(
            lambda bits: st.tuples(
                st.just(f"int{bits}"),
                st.integers(min_value=-(2 ** (bits - 1)), max_value=2 ** (bits - 1) - 1),
            )
        )
    if kind == "address":
        return st.tuples(
            st.just("address"),
            st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b)),
        )
    if kind == "bool":
        return st.tuples(st.just("bool"), st.booleans())
    if kind == "fixed":
        return st.integers(min_value=1, max_value=32).flatmap(
            lambda size: st.tuples(st.just(f"bytes{size}"), st.binary(max_size=size))
        )
    if kind == "bytes":
        return st.tuples(st.just("bytes"), st.binary(max_size=200))
    return st.tuples(st.just("string"), st.text(max_size=80))


FLAT = st.lists(
    st.sampled_from(["uint", "int", "address", "bool", "fixed", "bytes", "string"]).flatmap(
        _flat_value
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(FLAT)
def test_flat_signatures_encode_as_eth_abi_does(pairs: list[tuple[str, object]]) -> None:
    types = tuple(t for t, _ in pairs)
    values = [v for _, v in pairs]
    assert abi.encode_args(types, values) == encode(list(types), values)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_a_lone_bytes_result_decodes_as_eth_abi_does(value: bytes) -> None:
    data = encode(["bytes"], [value])
    assert abi.GET_CONTAINER_INPUTS.decode_result(data) == (value,)
    assert abi.GET_CONTAINER_INPUTS.decode_result(data + b"\x00" * 32) == tuple(
        decode(["bytes"], data + b"\x00" * 32)
    )


def test_a_malformed_bytes_result_is_left_to_eth_abi() -> None:
    with pytest.raises(DecodingError):
        abi.GET_CONTAINER_INPUTS.decode_result(b"\x00" * 31)
    # valid, but not as an encoder writes it (a gap before the data): eth-abi reads it
    odd_offset = (64).to_bytes(32, "big") + b"\x00" * 32 + (1).to_bytes(32, "big")
    odd_offset += b"\x07" + b"\x00" * 31
    assert abi.GET_CONTAINER_INPUTS.decode_result(odd_offset) == tuple(
        decode(["bytes"], odd_offset)
    )


@pytest.mark.parametrize(
    ("types", "values"),
    [
        (("uint32",), [2**32]),  # out of range
        (("uint8",), [-1]),
        (("bool",), [1]),  # not a bool
        (("address",), ["0x" + "ab" * 19]),  # too short
        (("bytes",), ["0x00"]),  # a string where bytes go
        (("bytes4",), [b"12345"]),  # too long
    ],
)
def test_values_the_fast_path_refuses_get_eth_abis_own_errors(
    types: tuple[str, ...], values: list[object]
) -> None:
    with pytest.raises(EncodingError) as fast:
        abi.encode_args(types, values)
    with pytest.raises(EncodingError) as reference:
        encode(list(types), values)
    assert type(fast.value) is type(reference.value)


def test_signatures_that_are_not_flat_go_to_eth_abi() -> None:
    owner, wallet, verifier, token = ("0x" + c * 20 for c in ("11", "22", "33", "44"))
    sub = (owner, 1, 2, 3, 4, b"\x05" * 32, True, token, 6, wallet, verifier)
    args = (sub, [1, 2], b"x")
    types = (abi.SUBSCRIPTION_TUPLE, "uint32[]", "bytes")
    assert abi.encode_args(types, args) == encode(list(types), list(args))


@settings(max_examples=60, deadline=None)
@given(
    chain_id=st.integers(min_value=1, max_value=2**64),
    nonce=st.integers(min_value=0, max_value=2**64 - 1),
    data=st.sampled_from([0, 1, 55, 56, 300, 70_000]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)
    ),
    value=st.integers(min_value=0, max_value=2**128),
    gas=st.integers(min_value=21_000, max_value=2**32),
    fees=st.tuples(st.integers(0, 2**64), st.integers(0, 2**64)),
)
def test_direct_rlp_signature_is_eth_accounts_for_any_field_sizes(
    chain_id: int, nonce: int, data: bytes, value: int, gas: int, fees: tuple[int, int]
) -> None:
    account = Account.from_key(KEY)
    tx = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "data": data,
        "value": value,
        "gas": gas,
        "maxFeePerGas": max(fees),
        "maxPriorityFeePerGas": min(fees),
    }
    signed = account.sign_transaction(tx)
    raw, tx_hash = NodeKey(account).sign(tx)
    assert raw == bytes(signed.raw_transaction)
    assert tx_hash == "0x" + bytes(signed.hash).hex()

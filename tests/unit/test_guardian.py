from __future__ import annotations

import ipaddress

import pytest

from node_agent.config import ContainerConfig
from node_agent.errors import AccessDenied, GuardianRejection
from node_agent.jobs.guardian import (
    check_delegate_owner,
    check_offchain_job,
    policies_from_config,
)

POLICIES = policies_from_config(
    [
        ContainerConfig(id="a"),
        ContainerConfig(id="b", external=False),
        ContainerConfig(id="p", generates_proofs=True),
        ContainerConfig(id="lan", allowed_ips=("10.0.0.0/8", "2001:db8::/32")),
        ContainerConfig(
            id="d", allowed_delegate_addresses=("0xAbC0000000000000000000000000000000000001",)
        ),
        ContainerConfig(id="mine", allowed_keys=("k1",)),
    ]
)
HOME = ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize(
    ("containers", "proof", "error", "params"),
    [
        ([], False, "No containers specified", None),
        (["a", "zz"], False, "Container not supported", {"container": "zz"}),
        (["zz", "b"], False, "Container not supported", {"container": "zz"}),
        (["b", "a"], False, "First container must be external", {"first_container": "b"}),
        (["a"], True, "Container does not generate proof", {"container": "a"}),
        (["p", "a"], True, "Container does not generate proof", {"container": "a"}),
    ],
)
def test_rules_in_order(containers: list[str], proof: bool, error: str, params: object) -> None:
    with pytest.raises(GuardianRejection) as raised:
        check_offchain_job(POLICIES, containers, proof, HOME)
    assert (raised.value.error, raised.value.params, raised.value.status) == (error, params, 400)


def test_allowed_chains_pass() -> None:
    check_offchain_job(POLICIES, ["a", "b", "p"], True, HOME)
    check_offchain_job(POLICIES, ["lan"], False, ipaddress.ip_address("10.9.8.7"))
    check_offchain_job(POLICIES, ["lan"], False, ipaddress.ip_address("2001:db8::1"))
    check_offchain_job(POLICIES, ["lan"], False, ipaddress.ip_address("::ffff:10.0.0.1"))


def test_ip_rule_is_403_and_names_the_address() -> None:
    with pytest.raises(AccessDenied) as raised:
        check_offchain_job(POLICIES, ["a", "lan"], False, HOME)
    assert raised.value.status == 403
    assert raised.value.params == {"container": "lan", "address": "127.0.0.1"}


def test_delegate_owner_case_insensitive() -> None:
    check_delegate_owner(POLICIES, ["a", "d"], "0xabc0000000000000000000000000000000000001")
    with pytest.raises(AccessDenied):
        check_delegate_owner(POLICIES, ["d"], "0x" + "1" * 40)


def test_a_container_with_allowed_keys_takes_only_those_keys() -> None:
    check_offchain_job(POLICIES, ["mine"], False, HOME, "key:k1")
    check_offchain_job(POLICIES, ["a"], False, HOME, "127.0.0.1")  # no list: anyone
    for client in ("key:k2", "127.0.0.1", None):
        with pytest.raises(AccessDenied) as raised:
            check_offchain_job(POLICIES, ["a", "mine"], False, HOME, client)
        assert raised.value.status == 403
        assert raised.value.error == "Container not allowed for this API key"
        assert raised.value.params == {"container": "mine"}

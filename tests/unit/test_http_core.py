"""Pure parts of the HTTP layer: rate limiting, client identity, ports, request parsing."""

from __future__ import annotations

import ipaddress

import pytest

from node_agent.api.identity import client_address, is_local, parse_networks
from node_agent.api.ratelimit import GcraLimiter
from node_agent.api.wire import parse_offchain_job
from node_agent.containers.admission import Admission, gates_for
from node_agent.containers.ports import assign_ports
from node_agent.errors import BadRequest, Overloaded


def test_gcra_burst_then_steady_rate() -> None:
    limiter = GcraLimiter(count=4, period=8.0)  # one every 2 s, burst of 4
    assert [limiter.check("k", 0.0).allowed for _ in range(4)] == [True] * 4
    refused = limiter.check("k", 0.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(2.0)
    assert limiter.check("other", 0.0).allowed
    assert not limiter.check("k", 1.9).allowed
    assert limiter.check("k", 2.0).allowed
    limiter.prune(100.0)
    assert limiter.check("k", 100.0).remaining == 3


def test_forwarded_for_only_from_trusted_proxies() -> None:
    proxies = parse_networks(["10.0.0.0/8"])
    assert str(client_address("10.0.0.2", "203.0.113.5", proxies)) == "203.0.113.5"
    assert str(client_address("192.0.2.1", "203.0.113.5", proxies)) == "192.0.2.1"
    chain = "198.51.100.1, 203.0.113.5, 10.0.0.9"
    assert str(client_address("10.0.0.2", chain, proxies)) == "203.0.113.5"
    assert str(client_address("10.0.0.2", "garbage", proxies)) == "10.0.0.2"
    assert str(client_address("::ffff:127.0.0.1", None, ())) == "127.0.0.1"
    assert client_address(None, None, ()) is None
    assert client_address("not-an-ip", None, ()) is None


def test_local_status_reporters() -> None:
    for ip in ("127.0.0.1", "::1", "172.17.0.3"):
        assert is_local(ipaddress.ip_address(ip))
    for ip in ("192.168.1.10", "8.8.8.8", "2001:db8::1"):
        assert not is_local(ipaddress.ip_address(ip))


def test_port_assignment_matches_infernet() -> None:
    assert assign_ports([3000, 3000, 3000]) == [3000, 3999, 3998]
    assert assign_ports([3000, 4001, 3000]) == [3000, 4001, 3999]
    assert assign_ports([3999, 3000, 3000]) == [3999, 3000, 3998]


def test_offchain_body_parsing() -> None:
    job = parse_offchain_job({"containers": ["a"], "data": {"x": 1}, "requires_proof": None})
    assert (job.containers, job.data, job.requires_proof) == (["a"], {"x": 1}, False)
    for bad in ({"containers": ["a"], "data": {}, "id": "x"}, {"containers": "a", "data": {}}, 7):
        with pytest.raises(BadRequest):
            parse_offchain_job(bad)


def test_admission_reserves_all_or_nothing() -> None:
    admission = Admission(gates_for([("a", 1, 1), ("b", 1, 0)]))
    first = admission.reserve(["a", "b"])
    with pytest.raises(Overloaded) as raised:
        admission.reserve(["a", "b"])
    assert raised.value.params == {"container": "b", "queued": 1, "capacity": 1}
    assert admission.gates["a"].admitted == 1  # nothing half-reserved
    first.release_step("b")
    second = admission.reserve(["a", "b"])
    first.release_all()
    second.release_all()
    assert admission.gates["a"].admitted == 0 and admission.gates["b"].admitted == 0

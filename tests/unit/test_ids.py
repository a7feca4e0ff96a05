"""Job ids: RFC 9562 UUIDv7, unguessable and in creation order."""

from __future__ import annotations

import time
import uuid

from node_agent.ids import new_job_id, new_request_id


def test_job_ids_are_uuid7_in_creation_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_job_id() for _ in range(600)]  # more than one 4 KiB buffer of randomness
    after = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == len(ids)
    millis = [u.int >> 80 for u in parsed]
    assert before <= millis[0] and millis == sorted(millis) and millis[-1] <= after


def test_request_ids_are_unique() -> None:
    assert len({new_request_id() for _ in range(1000)}) == 1000

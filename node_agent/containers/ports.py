"""Host port assignment, as the Infernet node does it (§3.2), as a pure function."""

from __future__ import annotations

from collections.abc import Sequence


def assign_ports(requested: Sequence[int], top: int = 3999) -> list[int]:
    """Each container keeps its port unless an earlier one took it; then it gets the highest
    free port counting down from ``top`` (so the 2nd default container gets 3999, and so on)."""
    taken: set[int] = set()
    result: list[int] = []
    for port in requested:
        if port in taken:
            port = top
            while port in taken or port in requested:
                port -= 1
        taken.add(port)
        result.append(port)
    return result

"""Pure health decisions over one reading: which GPUs can take work, and why not."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from node_agent.gpu.model import GpuState, Health

# Application-level XIDs (bad kernels, illegal addresses): blamed on the job, not the GPU.
APPLICATION_XIDS = (13, 31, 43, 45, 68, 109)

_ORDER: dict[Health, int] = {"healthy": 0, "unknown": 1, "degraded": 2, "unhealthy": 3, "lost": 4}


def worst(healths: Sequence[Health]) -> Health:
    return max(healths, key=_ORDER.__getitem__, default="healthy")


def assess_gpu(
    state: GpuState,
    *,
    now: float,
    ignored_xids: Collection[int] = APPLICATION_XIDS,
    xid_hold_seconds: float = 600.0,
) -> GpuState:
    """Derive health from the readings; a critical XID marks the GPU only for a while.

    Marks recover on their own (the hold expires, or the remapping is done), so a transient
    fault does not take a GPU out of service until the next agent restart.
    """
    if state.health == "lost":
        return state
    inv, tel = state.inventory, state.telemetry
    marks: list[tuple[Health, str]] = []
    if tel.remapped_rows_failure:
        marks.append(("unhealthy", "row_remapping_failed: inspect the hardware"))
    if tel.remapped_rows_pending:
        marks.append(("degraded", "row_remapping_pending: reset the GPU when idle"))
    xid = tel.last_xid
    if xid is not None and xid.code not in ignored_xids and now - xid.at < xid_hold_seconds:
        marks.append(("unhealthy", f"xid_{xid.code}: critical driver error reported"))
    if _pending_change(inv.mig_enabled, inv.mig_pending):
        marks.append(("degraded", "mig_mode_change_pending: reset the GPU to apply it"))
    if _pending_change(inv.ecc_enabled, inv.ecc_pending):
        marks.append(("degraded", "ecc_mode_change_pending: reboot to apply it"))
    if tel.ecc_uncorrected_volatile:
        marks.append(("degraded", f"ecc_uncorrected_errors: {tel.ecc_uncorrected_volatile}"))
    if not marks:
        return replace(state, health="healthy", reasons=())
    return replace(
        state,
        health=worst([health for health, _ in marks]),
        reasons=tuple(reason for _, reason in marks),
    )


def _pending_change(current: bool | None, pending: bool | None) -> bool:
    return current is not None and pending is not None and current != pending

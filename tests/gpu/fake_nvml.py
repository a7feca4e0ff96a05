"""A fake of the narrow ``pynvml`` surface the adapter uses, driven by board fixtures.

Constants and exception classes come from the real ``pynvml`` module, so the adapter's error
handling runs against the real NVMLError hierarchy. Any NVML function the fake does not
implement raises ``NVMLError_FunctionNotFound``, as an older driver would.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

BOARDS = Path(__file__).parent / "boards"


def board(name: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BOARDS / f"{name}.json").read_text())
    data.update(overrides)
    return data


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class Handle:
    def __init__(self, index: int, mig: dict[str, Any] | None = None) -> None:
        self.index = index
        self.mig = mig


class FakeNvml:
    def __init__(
        self,
        boards: list[dict[str, Any]],
        *,
        init_error: int | None = None,
        driver: str = "570.86.15",
        cuda: int = 12080,
    ) -> None:
        self.boards = boards
        self.init_error = init_error
        self.driver = driver
        self.cuda = cuda
        self.calls: Counter[str] = Counter()
        self.lost: set[int] = set()
        self.block: threading.Event | None = None
        self.events: queue.Queue[tuple[int, int]] = queue.Queue()
        self.initialised = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(pynvml, name)
        if name.startswith("nvml") and callable(real) and not isinstance(real, type):

            def not_found(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                raise _error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

            return not_found
        return real

    # --- helpers for tests -------------------------------------------------------------

    def drop(self, name: str) -> None:
        """Behave like an older driver that lacks ``name``."""

        def not_found(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            raise _error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

        setattr(self, name, not_found)

    def lose(self, index: int) -> None:
        self.lost.add(index)

    def emit_xid(self, index: int, code: int) -> None:
        self.events.put((index, code))

    # --- init ----------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise _error(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return self.cuda

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "12." + self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.boards)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        if index in self.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return Handle(index)

    # --- per-device ----------------------------------------------------------------------

    def _field(self, name: str, handle: Handle, key: str) -> Any:
        self.calls[name] += 1
        if self.block is not None:
            self.block.wait()
        if handle.index in self.lost:
            raise _error(pynvml.NVML_ERROR_GPU_IS_LOST)
        source = handle.mig if handle.mig is not None else self.boards[handle.index]
        value = source.get(key)
        if value is None:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def _simple(name: str, key: str, convert: Callable[[Any], Any] = lambda v: v) -> Any:  # type: ignore[misc]
        def method(self: FakeNvml, handle: Handle) -> Any:
            return convert(self._field(name, handle, key))

        method.__name__ = name
        return method

    nvmlDeviceGetUUID = _simple("nvmlDeviceGetUUID", "uuid")
    nvmlDeviceGetName = _simple("nvmlDeviceGetName", "name")
    nvmlDeviceGetArchitecture = _simple("nvmlDeviceGetArchitecture", "arch")
    nvmlDeviceGetCudaComputeCapability = _simple("nvmlDeviceGetCudaComputeCapability", "cc", tuple)
    nvmlDeviceGetMinorNumber = _simple("nvmlDeviceGetMinorNumber", "minor")
    nvmlDeviceGetSerial = _simple("nvmlDeviceGetSerial", "serial")
    nvmlDeviceGetEnforcedPowerLimit = _simple("nvmlDeviceGetEnforcedPowerLimit", "power_limit_mw")
    nvmlDeviceGetPowerManagementDefaultLimit = _simple(
        "nvmlDeviceGetPowerManagementDefaultLimit", "power_default_mw"
    )
    nvmlDeviceGetMaxPcieLinkGeneration = _simple(
        "nvmlDeviceGetMaxPcieLinkGeneration", "pcie_max", lambda v: v[0]
    )
    nvmlDeviceGetMaxPcieLinkWidth = _simple(
        "nvmlDeviceGetMaxPcieLinkWidth", "pcie_max", lambda v: v[1]
    )
    nvmlDeviceGetCurrPcieLinkGeneration = _simple(
        "nvmlDeviceGetCurrPcieLinkGeneration", "pcie", lambda v: v[0]
    )
    nvmlDeviceGetCurrPcieLinkWidth = _simple(
        "nvmlDeviceGetCurrPcieLinkWidth", "pcie", lambda v: v[1]
    )
    nvmlDeviceGetEccMode = _simple("nvmlDeviceGetEccMode", "ecc", list)
    nvmlDeviceGetMigMode = _simple("nvmlDeviceGetMigMode", "mig", list)
    nvmlDeviceGetMaxMigDeviceCount = _simple("nvmlDeviceGetMaxMigDeviceCount", "max_mig")
    nvmlDeviceGetPersistenceMode = _simple("nvmlDeviceGetPersistenceMode", "persistence")
    nvmlDeviceGetComputeMode = _simple("nvmlDeviceGetComputeMode", "compute_mode")
    nvmlDeviceGetPowerUsage = _simple("nvmlDeviceGetPowerUsage", "power_mw")
    nvmlDeviceGetTotalEnergyConsumption = _simple("nvmlDeviceGetTotalEnergyConsumption", "energy")
    nvmlDeviceGetPerformanceState = _simple("nvmlDeviceGetPerformanceState", "pstate")
    nvmlDeviceGetFanSpeed = _simple("nvmlDeviceGetFanSpeed", "fan")
    nvmlDeviceGetCurrentClocksEventReasons = _simple(
        "nvmlDeviceGetCurrentClocksEventReasons", "throttle"
    )
    nvmlDeviceGetRemappedRows = _simple("nvmlDeviceGetRemappedRows", "remapped", tuple)
    nvmlDeviceGetGpuInstanceId = _simple("nvmlDeviceGetGpuInstanceId", "gi")
    nvmlDeviceGetComputeInstanceId = _simple("nvmlDeviceGetComputeInstanceId", "ci")
    nvmlDeviceGetUtilizationRates = _simple(
        "nvmlDeviceGetUtilizationRates",
        "util",
        lambda v: SimpleNamespace(gpu=v[0], memory=v[1]),
    )
    nvmlDeviceGetComputeRunningProcesses = _simple(
        "nvmlDeviceGetComputeRunningProcesses",
        "processes",
        lambda v: [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in v],
    )

    def nvmlDeviceGetPciInfo_v3(self, handle: Handle) -> Any:
        bus = self._field("nvmlDeviceGetPciInfo_v3", handle, "pci_bus_id")
        device = self._field("nvmlDeviceGetPciInfo_v3", handle, "pci_device_id")
        return SimpleNamespace(busId=bus.encode(), pciDeviceId=device)

    def nvmlDeviceGetMemoryInfo(self, handle: Handle, version: int | None = None) -> Any:
        total = self._field("nvmlDeviceGetMemoryInfo", handle, "memory_total")
        if handle.mig is not None:
            return SimpleNamespace(total=total, used=0, free=total)
        used = self.boards[handle.index]["memory_used"]
        if version is None:
            return SimpleNamespace(total=total, used=used, free=total - used)
        reserved = self._field("nvmlDeviceGetMemoryInfo_v2", handle, "memory_reserved")
        return SimpleNamespace(
            total=total, used=used - reserved, free=total - used, reserved=reserved
        )

    def nvmlDeviceGetMaxClockInfo(self, handle: Handle, clock: int) -> int:
        clocks = self._field("nvmlDeviceGetMaxClockInfo", handle, "max_clocks")
        return int(
            clocks[
                {pynvml.NVML_CLOCK_SM: "sm", pynvml.NVML_CLOCK_MEM: "mem"}.get(clock, "graphics")
            ]
        )

    def nvmlDeviceGetClockInfo(self, handle: Handle, clock: int) -> int:
        clocks = self._field("nvmlDeviceGetClockInfo", handle, "clocks")
        return int(clocks["sm" if clock == pynvml.NVML_CLOCK_SM else "mem"])

    def nvmlDeviceGetTemperature(self, handle: Handle, sensor: int) -> int:
        return int(self._field("nvmlDeviceGetTemperature", handle, "temp"))

    def nvmlDeviceGetTotalEccErrors(self, handle: Handle, kind: int, counter: int) -> int:
        errors = self._field("nvmlDeviceGetTotalEccErrors", handle, "ecc_errors")
        return int(errors[0 if counter == pynvml.NVML_VOLATILE_ECC else 1])

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Handle, slot: int) -> Handle:
        self._field("nvmlDeviceGetMigDeviceHandleByIndex", handle, "mig")
        for device in self.boards[handle.index].get("mig_devices", []):
            if device["slot"] == slot:
                return Handle(handle.index, mig=device)
        raise _error(pynvml.NVML_ERROR_NOT_FOUND)

    # --- events --------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceGetSupportedEventTypes(self, handle: Handle) -> int:
        return int(pynvml.nvmlEventTypeXidCriticalError | pynvml.nvmlEventTypeDoubleBitEccError)

    def nvmlDeviceRegisterEvents(self, handle: Handle, types: int, event_set: object) -> None:
        self.calls["nvmlDeviceRegisterEvents"] += 1

    def nvmlEventSetWait_v2(self, event_set: object, timeout_ms: int) -> Any:
        try:
            index, code = self.events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise _error(pynvml.NVML_ERROR_TIMEOUT) from None
        return SimpleNamespace(
            device=Handle(index),
            eventType=pynvml.nvmlEventTypeXidCriticalError,
            eventData=code,
        )

    def nvmlEventSetFree(self, event_set: object) -> None:
        pass

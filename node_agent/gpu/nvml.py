"""NVML adapter: the one place that calls the driver.

Every NVML call runs on one dedicated worker thread under a timeout, so a wedged driver can
never freeze the event loop. The XID event watcher runs on its own thread because
``nvmlEventSetWait`` blocks. The ``library`` argument is the ``pynvml`` module (the default) or,
in tests, an object with the same functions, constants and exception classes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import structlog

from node_agent.gpu.model import (
    ARCHITECTURES,
    Clocks,
    GpuInventory,
    GpuProcess,
    GpuState,
    GpuTelemetry,
    MigInstance,
    Pcie,
    XidEvent,
    compute_capability,
    cuda_version,
    family_slug,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Error codes (NVML_ERROR_*), fixed by the NVML ABI.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_NOT_FOUND = 6
_TIMEOUT = 10
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_ARGUMENT_VERSION_MISMATCH = 25
_UNKNOWN = 999
# A handle that returns one of these is gone until a reset or reboot.
_LOST_CODES = frozenset({_GPU_IS_LOST, _RESET_REQUIRED, _UNKNOWN})
_UNSUPPORTED_CODES = frozenset({_NOT_SUPPORTED, _FUNCTION_NOT_FOUND, _ARGUMENT_VERSION_MISMATCH})

_XID_CRITICAL = 0x8
_ECC_EVENTS = 0x1 | 0x2

# What an operator should do when NVML cannot start, keyed by the exception class name.
REMEDIES = {
    "NVMLError_LibraryNotFound": (
        "Install the NVIDIA driver so libnvidia-ml.so.1 can be loaded; the agent retries "
        "initialisation periodically."
    ),
    "NVMLError_DriverNotLoaded": (
        "Load the nvidia kernel module (modprobe nvidia) or reboot after installing the driver."
    ),
    "NVMLError_NoPermission": (
        "Give the agent's user access to /dev/nvidiactl and /dev/nvidia* "
        "(DeviceAllow= in the systemd unit)."
    ),
    "NVMLError_LibRmVersionMismatch": (
        "The driver was upgraded without a reboot: reboot the host to load the new kernel module."
    ),
}
DEFAULT_REMEDY = "Check the driver with `nvidia-smi` on the host and look at the kernel log."


class NvmlUnavailable(Exception):
    """NVML could not be initialised; the agent runs on without GPUs."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")

    @property
    def remedy(self) -> str:
        return REMEDIES.get(self.kind, DEFAULT_REMEDY)


class _GpuLost(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


@dataclass(frozen=True)
class NvmlReading:
    """One collection: driver facts plus each GPU (lost ones included, marked ``lost``)."""

    gpus: tuple[GpuState, ...]
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None


def _error_code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace").rstrip("\x00")
    return str(value)


class NvmlAdapter:
    """Reads inventory and telemetry through NVML on one worker thread."""

    def __init__(
        self,
        *,
        library: Any | None = None,
        call_timeout: float = 10.0,
        init_retry_seconds: float = 60.0,
        lost_retry_seconds: float = 300.0,
        event_wait_ms: int = 5000,
        watch_events: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._library = library
        self._call_timeout = call_timeout
        self._init_retry_seconds = init_retry_seconds
        self._lost_retry_seconds = lost_retry_seconds
        self._event_wait_ms = event_wait_ms
        self._watch_events = watch_events
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="nvml"
        )
        self._in_flight: asyncio.Future[Any] | None = None
        self._lib: Any | None = None
        self._initialised = False
        self._last_init_attempt: float | None = None
        self._init_error: NvmlUnavailable | None = None
        # (gpu key, field) pairs that answered NotSupported: never asked again this session.
        self._unsupported: set[tuple[str, str]] = set()
        # index -> (uuid, kind, when) for GPUs whose handle is lost.
        self._lost: dict[int, tuple[str | None, str, float]] = {}
        self._last_inventory: dict[int, GpuInventory] = {}
        self._xid_lock = threading.Lock()
        self._last_xid: dict[str, XidEvent] = {}
        self._watcher: XidWatcher | None = None

    # --- async surface ---------------------------------------------------------------------

    @property
    def init_error(self) -> NvmlUnavailable | None:
        return self._init_error

    async def read(self) -> NvmlReading:
        """Initialise if needed (rate-limited) and collect; raises :class:`NvmlUnavailable`."""
        return await self._on_worker(self._read_sync)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._initialised and (self._in_flight is None or self._in_flight.done()):
            try:
                await self._on_worker(self._shutdown_sync)
            except (NvmlUnavailable, Exception) as exc:  # closing must not raise
                log.warning("nvml.shutdown_failed", error=str(exc))
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.join, 1.0)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def record_xid(self, event: XidEvent) -> None:
        if event.gpu_uuid is None:
            return
        with self._xid_lock:
            self._last_xid[event.gpu_uuid] = event

    async def _on_worker(self, fn: Callable[[], T]) -> T:
        if self._in_flight is not None and not self._in_flight.done():
            # The previous call is still stuck in the driver; queueing more would pile up.
            raise NvmlUnavailable("NvmlTimeout", "an earlier NVML call has not returned")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn)
        self._in_flight = future
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            async with asyncio.timeout(self._call_timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            log.error("nvml.call_timeout", timeout=self._call_timeout)
            raise NvmlUnavailable(
                "NvmlTimeout", f"NVML did not answer within {self._call_timeout:g}s"
            ) from None

    # --- worker thread ---------------------------------------------------------------------

    def _load_library(self) -> Any:
        if self._lib is None:
            if self._library is not None:
                self._lib = self._library
            else:
                import pynvml

                self._lib = pynvml
        return self._lib

    def _init_sync(self) -> Any:
        now = self._clock()
        if (
            self._init_error is not None
            and self._last_init_attempt is not None
            and now - self._last_init_attempt < self._init_retry_seconds
        ):
            raise self._init_error
        self._last_init_attempt = now
        lib = self._load_library()
        try:
            lib.nvmlInit()
        except lib.NVMLError as exc:
            kind = type(exc).__name__
            self._init_error = NvmlUnavailable(kind, str(exc))
            log.warning("nvml.init_failed", kind=kind, detail=str(exc))
            raise self._init_error from None
        if self._init_error is not None:
            log.info("nvml.init_recovered")
        self._init_error = None
        self._initialised = True
        return lib

    def _shutdown_sync(self) -> None:
        if self._initialised and self._lib is not None:
            self._initialised = False
            self._lib.nvmlShutdown()

    def _read_sync(self) -> NvmlReading:
        lib: Any = self._lib if self._initialised else self._init_sync()
        try:
            count = int(lib.nvmlDeviceGetCount())
        except lib.NVMLError as exc:
            raise NvmlUnavailable(type(exc).__name__, str(exc)) from None
        gpus = tuple(self._read_gpu(lib, index) for index in range(count))
        if self._watch_events and self._watcher is None:
            self._start_watcher(lib, count)
        return NvmlReading(
            gpus=gpus,
            driver_version=_text(
                self._query(lib, "node", "driver", lib, "nvmlSystemGetDriverVersion")
            ),
            cuda_driver_version=cuda_version(
                self._query(
                    lib,
                    "node",
                    "cuda",
                    lib,
                    "nvmlSystemGetCudaDriverVersion_v2",
                    fallback="nvmlSystemGetCudaDriverVersion",
                )
            ),
            nvml_version=_text(self._query(lib, "node", "nvml", lib, "nvmlSystemGetNVMLVersion")),
        )

    def _query(
        self,
        lib: Any,
        key: str,
        field: str,
        target: Any,
        function: str,
        *args: Any,
        fallback: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """One NVML query: ``None`` when unsupported (cached), raises only for a lost GPU."""
        if (key, field) in self._unsupported:
            return None
        names = [function] + ([fallback] if fallback else [])
        for name in names:
            fn = getattr(target, name, None)
            if fn is None:
                continue
            try:
                return fn(*args, **kwargs)
            except lib.NVMLError as exc:
                code = _error_code(exc)
                if code in _LOST_CODES:
                    raise _GpuLost(type(exc).__name__) from None
                if code in _UNSUPPORTED_CODES:
                    continue
                if code == _NO_PERMISSION:
                    return None
                log.debug("nvml.query_failed", gpu=key, field=field, error=type(exc).__name__)
                return None
        self._unsupported.add((key, field))
        return None

    def _read_gpu(self, lib: Any, index: int) -> GpuState:
        lost = self._lost.get(index)
        now = self._clock()
        if lost is not None and now - lost[2] < self._lost_retry_seconds:
            return self._lost_state(index, lost[0], lost[1])
        try:
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            inventory = self._read_inventory(lib, index, handle)
            telemetry = self._read_telemetry(lib, inventory.uuid or f"#{index}", handle)
        except _GpuLost as exc:
            uuid = lost[0] if lost else self._known_uuid(index)
            self._lost[index] = (uuid, exc.kind, now)
            log.error("nvml.gpu_lost", index=index, uuid=uuid, kind=exc.kind)
            return self._lost_state(index, uuid, exc.kind)
        except lib.NVMLError as exc:
            uuid = self._known_uuid(index)
            self._lost[index] = (uuid, type(exc).__name__, now)
            return self._lost_state(index, uuid, type(exc).__name__)
        if lost is not None:
            log.info("nvml.gpu_recovered", index=index, uuid=inventory.uuid)
            del self._lost[index]
        self._last_inventory[index] = inventory
        if inventory.uuid is not None:
            with self._xid_lock:
                xid = self._last_xid.get(inventory.uuid)
            if xid is not None:
                telemetry = replace(telemetry, last_xid=xid)
        return GpuState(inventory=inventory, telemetry=telemetry)

    def _known_uuid(self, index: int) -> str | None:
        known = self._last_inventory.get(index)
        return known.uuid if known else None

    def _lost_state(self, index: int, uuid: str | None, kind: str) -> GpuState:
        inventory = self._last_inventory.get(index) or GpuInventory(index=index, uuid=uuid)
        return GpuState(
            inventory=inventory,
            health="lost",
            reasons=(f"gpu_lost: {kind}; reboot the host or inspect the hardware",),
        )

    def _read_inventory(self, lib: Any, index: int, h: Any) -> GpuInventory:
        uuid = _text(lib.nvmlDeviceGetUUID(h))
        key = uuid or f"#{index}"

        def q(field: str, function: str, *args: Any, fallback: str | None = None) -> Any:
            return self._query(lib, key, field, lib, function, h, *args, fallback=fallback)

        name = _text(q("name", "nvmlDeviceGetName"))
        arch = q("arch", "nvmlDeviceGetArchitecture")
        cc = q("cc", "nvmlDeviceGetCudaComputeCapability")
        pci = q("pci", "nvmlDeviceGetPciInfo_v3", fallback="nvmlDeviceGetPciInfo")
        memory = q("memory", "nvmlDeviceGetMemoryInfo")
        power = q("power_limit", "nvmlDeviceGetEnforcedPowerLimit")
        power_default = q("power_default", "nvmlDeviceGetPowerManagementDefaultLimit")
        ecc = q("ecc_mode", "nvmlDeviceGetEccMode")
        mig = q("mig_mode", "nvmlDeviceGetMigMode")
        persistence = q("persistence", "nvmlDeviceGetPersistenceMode")
        mig_enabled = bool(mig[0]) if mig is not None else None
        return GpuInventory(
            index=index,
            uuid=uuid,
            name=name,
            family=family_slug(name),
            architecture=ARCHITECTURES.get(arch) if isinstance(arch, int) else None,
            compute_capability=compute_capability(*cc) if cc else None,
            pci_bus_id=_text(getattr(pci, "busId", None)) if pci is not None else None,
            pci_device_id=(
                f"0x{int(pci.pciDeviceId):08x}" if getattr(pci, "pciDeviceId", None) else None
            ),
            minor_number=q("minor", "nvmlDeviceGetMinorNumber"),
            serial=_text(q("serial", "nvmlDeviceGetSerial")),
            memory_total=int(memory.total) if memory is not None else None,
            power_limit_w=power / 1000 if power is not None else None,
            power_limit_default_w=power_default / 1000 if power_default is not None else None,
            clocks_max=Clocks(
                sm_mhz=q("max_sm", "nvmlDeviceGetMaxClockInfo", lib.NVML_CLOCK_SM),
                mem_mhz=q("max_mem", "nvmlDeviceGetMaxClockInfo", lib.NVML_CLOCK_MEM),
                graphics_mhz=q("max_gr", "nvmlDeviceGetMaxClockInfo", lib.NVML_CLOCK_GRAPHICS),
            ),
            pcie_max=Pcie(
                gen=q("pcie_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration"),
                width=q("pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth"),
            ),
            ecc_enabled=bool(ecc[0]) if ecc is not None else None,
            ecc_pending=bool(ecc[1]) if ecc is not None else None,
            mig_enabled=mig_enabled,
            mig_pending=bool(mig[1]) if mig is not None else None,
            mig_instances=self._read_mig(lib, key, h, uuid) if mig_enabled else (),
            persistence_mode=bool(persistence) if persistence is not None else None,
            compute_mode=q("compute_mode", "nvmlDeviceGetComputeMode"),
        )

    def _read_mig(self, lib: Any, key: str, h: Any, parent: str | None) -> tuple[MigInstance, ...]:
        slots = self._query(lib, key, "mig_max", lib, "nvmlDeviceGetMaxMigDeviceCount", h) or 0
        instances = []
        for slot in range(int(slots)):
            try:
                child = lib.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
            except lib.NVMLError as exc:
                if _error_code(exc) in _LOST_CODES:
                    raise _GpuLost(type(exc).__name__) from None
                continue  # NotFound: an empty slot
            child_uuid = _text(lib.nvmlDeviceGetUUID(child))
            if child_uuid is None:
                continue
            ckey = child_uuid

            def cq(field: str, function: str, ckey: str = ckey, child: Any = child) -> Any:
                return self._query(lib, ckey, field, lib, function, child)

            memory = cq("memory", "nvmlDeviceGetMemoryInfo")
            instances.append(
                MigInstance(
                    uuid=child_uuid,
                    parent_uuid=parent or key,
                    gpu_instance_id=cq("gi", "nvmlDeviceGetGpuInstanceId"),
                    compute_instance_id=cq("ci", "nvmlDeviceGetComputeInstanceId"),
                    profile=_text(cq("name", "nvmlDeviceGetName")),
                    memory_total=int(memory.total) if memory is not None else None,
                )
            )
        return tuple(instances)

    def _read_telemetry(self, lib: Any, key: str, h: Any) -> GpuTelemetry:
        def q(field: str, function: str, *args: Any, fallback: str | None = None) -> Any:
            return self._query(lib, key, field, lib, function, h, *args, fallback=fallback)

        memory = self._query(
            lib, key, "memory_v2", lib, "nvmlDeviceGetMemoryInfo", h, version=lib.nvmlMemory_v2
        )
        if memory is None:
            memory = q("memory", "nvmlDeviceGetMemoryInfo")
        util = q("util", "nvmlDeviceGetUtilizationRates")
        power = q("power", "nvmlDeviceGetPowerUsage")
        rows = q("remapped_rows", "nvmlDeviceGetRemappedRows")
        processes = q("processes", "nvmlDeviceGetComputeRunningProcesses")
        uncorrected = lib.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        return GpuTelemetry(
            memory_used=_int_attr(memory, "used"),
            memory_free=_int_attr(memory, "free"),
            memory_reserved=_int_attr(memory, "reserved"),
            util_gpu_pct=_int_attr(util, "gpu"),
            util_mem_pct=_int_attr(util, "memory"),
            temperature_c=q("temp", "nvmlDeviceGetTemperature", lib.NVML_TEMPERATURE_GPU),
            power_draw_w=power / 1000 if power is not None else None,
            energy_mj=q("energy", "nvmlDeviceGetTotalEnergyConsumption"),
            clocks=Clocks(
                sm_mhz=q("clock_sm", "nvmlDeviceGetClockInfo", lib.NVML_CLOCK_SM),
                mem_mhz=q("clock_mem", "nvmlDeviceGetClockInfo", lib.NVML_CLOCK_MEM),
            ),
            pcie=Pcie(
                gen=q("pcie_gen", "nvmlDeviceGetCurrPcieLinkGeneration"),
                width=q("pcie_width", "nvmlDeviceGetCurrPcieLinkWidth"),
            ),
            pstate=q("pstate", "nvmlDeviceGetPerformanceState"),
            fan_pct=q("fan", "nvmlDeviceGetFanSpeed"),
            throttle_reasons=q(
                "throttle",
                "nvmlDeviceGetCurrentClocksEventReasons",
                fallback="nvmlDeviceGetCurrentClocksThrottleReasons",
            ),
            ecc_uncorrected_volatile=q(
                "ecc_vol", "nvmlDeviceGetTotalEccErrors", uncorrected, lib.NVML_VOLATILE_ECC
            ),
            ecc_uncorrected_aggregate=q(
                "ecc_agg", "nvmlDeviceGetTotalEccErrors", uncorrected, lib.NVML_AGGREGATE_ECC
            ),
            remapped_rows_correctable=rows[0] if rows else None,
            remapped_rows_uncorrectable=rows[1] if rows else None,
            remapped_rows_pending=bool(rows[2]) if rows else None,
            remapped_rows_failure=bool(rows[3]) if rows else None,
            processes=(
                tuple(
                    GpuProcess(pid=int(p.pid), used_memory=_int_attr(p, "usedGpuMemory"))
                    for p in processes
                )
                if processes is not None
                else None
            ),
        )

    def _start_watcher(self, lib: Any, count: int) -> None:
        handles = []
        for index in range(count):
            if index in self._lost:
                continue
            inventory = self._last_inventory.get(index)
            if inventory is None or inventory.uuid is None:
                continue
            try:
                handles.append((inventory.uuid, lib.nvmlDeviceGetHandleByIndex(index)))
            except lib.NVMLError:
                continue
        self._watcher = XidWatcher(
            lib, handles, on_event=self.record_xid, wait_ms=self._event_wait_ms, clock=self._clock
        )
        self._watcher.start()


def _int_attr(obj: Any, name: str) -> int | None:
    value = getattr(obj, name, None) if obj is not None else None
    return int(value) if isinstance(value, int) else None


class XidWatcher(threading.Thread):
    """Waits for critical XID and ECC events; blocking waits stay off the NVML worker."""

    def __init__(
        self,
        lib: Any,
        handles: list[tuple[str, Any]],
        *,
        on_event: Callable[[XidEvent], None],
        wait_ms: int = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="nvml-xid", daemon=True)
        self._lib = lib
        self._handles = handles
        self._on_event = on_event
        self._wait_ms = wait_ms
        self._clock = clock
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        lib = self._lib
        try:
            event_set = lib.nvmlEventSetCreate()
        except (lib.NVMLError, AttributeError) as exc:
            log.warning("nvml.events_unavailable", error=type(exc).__name__)
            return
        registered = 0
        for uuid, handle in self._handles:
            try:
                supported = lib.nvmlDeviceGetSupportedEventTypes(handle)
                wanted = (_XID_CRITICAL | _ECC_EVENTS) & int(supported)
                if wanted:
                    lib.nvmlDeviceRegisterEvents(handle, wanted, event_set)
                    registered += 1
            except lib.NVMLError as exc:
                log.info("nvml.events_not_supported", gpu=uuid, error=type(exc).__name__)
        try:
            if registered:
                self._loop(lib, event_set)
        finally:
            with contextlib.suppress(lib.NVMLError):
                lib.nvmlEventSetFree(event_set)

    def _loop(self, lib: Any, event_set: Any) -> None:
        while not self._stopping.is_set():
            try:
                data = lib.nvmlEventSetWait_v2(event_set, self._wait_ms)
            except lib.NVMLError as exc:
                if _error_code(exc) == _TIMEOUT:
                    continue
                log.warning("nvml.event_wait_failed", error=type(exc).__name__)
                self._stopping.wait(self._wait_ms / 1000)
                continue
            if not int(data.eventType) & _XID_CRITICAL:
                continue
            try:
                uuid = _text(lib.nvmlDeviceGetUUID(data.device))
            except lib.NVMLError:
                uuid = None
            event = XidEvent(code=int(data.eventData), at=self._clock(), gpu_uuid=uuid)
            log.warning("nvml.xid", gpu=uuid, xid=event.code)
            self._on_event(event)

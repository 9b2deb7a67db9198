"""NVIDIA GPUs through NVML (`pynvml` from nvidia-ml-py): energy counter, power, telemetry."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from llenergymeasure.devices.base import DeviceInfo, DeviceSample, DeviceSource
from llenergymeasure.devices.cuda_uuid import cuda_device_uuids
from llenergymeasure.errors import MeterError

T = TypeVar("T")

# nvmlClocksEventReasons bits that mean the GPU was slowed down (idle and app-clock
# settings are not throttling).
THROTTLE_REASONS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clock",
}
THROTTLE_MASK = sum(THROTTLE_REASONS)

# The power readings NvmlSource can poll (DeviceInfo.power_field, DeviceEnergy.power_field).
POWER_INSTANT = "nvml_power_instant"
POWER_USAGE = "nvml_power_usage (~1 s moving average on Ampere and later)"
# Field ids and scope of pynvml, with NVML's values for a pynvml that lacks the names.
FI_DEV_POWER_INSTANT = 186
POWER_SCOPE_GPU = 0


def translate_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Turn pynvml errors into MeterError at the vendor boundary."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        import pynvml

        try:
            return func(*args, **kwargs)
        except pynvml.NVMLError as e:
            raise MeterError(f"NVML: {func.__name__}: {e}") from e

    return wrapper


def _optional(call: Callable[[], T]) -> T | None:
    import pynvml

    try:
        return call()
    except pynvml.NVMLError:
        return None


def instant_power_mw(nvml: Any, handle: Any) -> int:
    """The GPU's instantaneous power (mW): field NVML_FI_DEV_POWER_INSTANT, scope GPU.

    ``nvmlDeviceGetPowerUsage`` is a ~1 s moving average on Ampere and later GPUs; this
    field, where the driver has it, is not (Zeus reads it the same way).

    Raises:
        pynvml.NVMLError: The call failed, or the field's own return code is an error
            (NOT_SUPPORTED on GPUs or drivers without it).
    """
    field_id = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", FI_DEV_POWER_INSTANT)
    scope = getattr(nvml, "NVML_POWER_SCOPE_GPU", POWER_SCOPE_GPU)
    (value,) = nvml.nvmlDeviceGetFieldValues(handle, [(field_id, scope)])
    if value.nvmlReturn != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(value.nvmlReturn)
    return int(value.value.uiVal)


def visible_device_keys(environ: dict[str, str] | None = None) -> list[str] | None:
    """Entries of CUDA_VISIBLE_DEVICES (indices or UUIDs), or None when it is unset."""
    value = (environ if environ is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [k.strip() for k in value.split(",") if k.strip()]


@dataclass(frozen=True)
class VisibleGpu:
    """One GPU this process may use: its NVML handle, its UUID and how that was found.

    Attributes:
        cuda_index: Its index among this process's CUDA devices (None: CUDA_VISIBLE_DEVICES
            unset, every GPU is metered and CUDA's order does not matter).
    """

    handle: Any
    uuid: str
    cuda_index: int | None
    identified_by: str


def gpu_uuid(nvml: Any, handle: Any) -> str:
    """The GPU's UUID as NVML writes it (GPU-...)."""
    raw = nvml.nvmlDeviceGetUUID(handle)
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _by_uuid_prefix(nvml: Any, key: str) -> Any:
    """The NVML handle whose UUID starts with ``key`` (CUDA accepts unique prefixes)."""
    matches = []
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = _optional(functools.partial(nvml.nvmlDeviceGetHandleByIndex, i))
        if handle is not None and gpu_uuid(nvml, handle).lower().startswith(key.lower()):
            matches.append(handle)
    if len(matches) != 1:
        found = "no GPU" if not matches else f"{len(matches)} GPUs"
        raise MeterError(f"NVML: CUDA_VISIBLE_DEVICES entry {key} matches {found}")
    return matches[0]


def resolve_gpus(nvml: Any) -> list[VisibleGpu]:
    """The GPUs this process may use, each identified by UUID.

    UUID entries of CUDA_VISIBLE_DEVICES are looked up in NVML. Index entries are CUDA
    indices (fastest GPU first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and 0 for every job
    under SLURM's device cgroups): the CUDA driver is asked which UUID each index is. Only
    where it cannot be asked, PCI_BUS_ID order makes an index NVML's, and a machine with
    one GPU has one answer.

    Raises:
        MeterError: CUDA_VISIBLE_DEVICES names a MIG slice, or indices that cannot be
            mapped to GPUs.
    """
    keys = visible_device_keys()
    if keys is None:
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        how = "every GPU (CUDA_VISIBLE_DEVICES unset), by NVML UUID"
        return [VisibleGpu(h, gpu_uuid(nvml, h), None, how) for h in handles]
    for key in keys:
        if key.startswith("MIG-"):
            raise MeterError(
                f"NVML: CUDA_VISIBLE_DEVICES names MIG slice {key}; energy counters exist only "
                "per physical GPU, so a slice's energy cannot be measured (use meter: "
                "codecarbon for an estimate, or run on a whole GPU)"
            )
    if all(key.startswith("GPU-") for key in keys):
        handles = [_by_uuid_prefix(nvml, key) for key in keys]
        how = "CUDA_VISIBLE_DEVICES UUID"
        return [VisibleGpu(h, gpu_uuid(nvml, h), i, how) for i, h in enumerate(handles)]
    try:
        uuids = cuda_device_uuids()
    except MeterError as e:
        return _without_driver(nvml, keys, str(e))
    how = "UUID of the CUDA device, from the CUDA driver"
    return [VisibleGpu(nvml.nvmlDeviceGetHandleByUUID(u), u, i, how) for i, u in enumerate(uuids)]


def _without_driver(nvml: Any, keys: list[str], reason: str) -> list[VisibleGpu]:
    """Index entries mapped without the CUDA driver, where the mapping is certain."""
    digits = all(key.isdigit() for key in keys)
    if digits and os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        how = "CUDA_DEVICE_ORDER=PCI_BUS_ID: the CUDA index is NVML's (PCI bus order)"
        handles = [nvml.nvmlDeviceGetHandleByIndex(int(key)) for key in keys]
    elif keys == ["0"] and nvml.nvmlDeviceGetCount() == 1:
        how = "the only GPU NVML sees"
        handles = [nvml.nvmlDeviceGetHandleByIndex(0)]
    else:
        raise MeterError(
            f"NVML: CUDA_VISIBLE_DEVICES={','.join(keys)} names CUDA indices, which GPU each "
            f"is depends on CUDA's order (fastest first by default) and {reason}: set "
            "CUDA_DEVICE_ORDER=PCI_BUS_ID or list GPU UUIDs"
        )
    return [VisibleGpu(h, gpu_uuid(nvml, h), i, how) for i, h in enumerate(handles)]


class NvmlSource(DeviceSource):
    """The GPUs this process may use (CUDA_VISIBLE_DEVICES respected), read through NVML.

    Power is polled from the instantaneous power field where the driver answers it, else
    from ``nvmlDeviceGetPowerUsage`` (a ~1 s moving average on Ampere and later); each
    GPU's choice is its ``DeviceInfo.power_field``.
    """

    counter_method = "nvml_counter"
    polling_method = "nvml_power_polling"
    counter_period_s = 0.1  # the energy counter updates about every 100 ms
    throttle_names = THROTTLE_REASONS

    @translate_errors
    def __init__(self) -> None:
        import pynvml

        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound as e:
            raise MeterError("NVML: libnvidia-ml.so.1 not found (no NVIDIA driver)") from e
        self._nvml = pynvml
        gpus = resolve_gpus(pynvml)
        if not gpus:
            pynvml.nvmlShutdown()
            raise MeterError("NVML: no GPU visible to this process")
        self._handles = [gpu.handle for gpu in gpus]
        self._infos = [self._describe(gpu) for gpu in gpus]

    def _describe(self, gpu: VisibleGpu) -> DeviceInfo:
        nvml, handle = self._nvml, gpu.handle
        has_counter = _optional(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        instant_mw = _optional(lambda: instant_power_mw(nvml, handle))
        usage_mw = _optional(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        mig = _optional(lambda: nvml.nvmlDeviceGetMigMode(handle))
        persistence = _optional(lambda: nvml.nvmlDeviceGetPersistenceMode(handle))
        notes = []
        if mig and mig[0] == nvml.NVML_DEVICE_MIG_ENABLE:
            notes.append(
                "MIG is enabled: the energy is that of the whole parent GPU, not of one slice"
            )
        power_field = None
        # A field that reads 0 W while the averaged power does not is taken as unsupported.
        if instant_mw is not None and (instant_mw > 0 or not usage_mw):
            power_field = POWER_INSTANT
        elif usage_mw is not None:
            power_field = POWER_USAGE
            notes.append(
                "the instantaneous power field (NVML_FI_DEV_POWER_INSTANT) is not available: "
                "power is nvmlDeviceGetPowerUsage, a ~1 s moving average on Ampere and later "
                "GPUs, so the polled power lags changes by ~0.5 s"
            )
        return DeviceInfo(
            device=gpu.uuid,
            name=str(nvml.nvmlDeviceGetName(handle)),
            has_counter=has_counter is not None,
            has_power=power_field is not None,
            persistence_mode=None if persistence is None else bool(persistence),
            notes=tuple(notes),
            power_field=power_field,
            nvml_index=nvml.nvmlDeviceGetIndex(handle),
            cuda_index=gpu.cuda_index,
            identified_by=gpu.identified_by,
        )

    def devices(self) -> list[DeviceInfo]:
        """The visible GPUs."""
        return list(self._infos)

    def _power_mw(self, handle: Any, info: DeviceInfo) -> int | None:
        """The power reading chosen for this GPU at ``_describe`` (mW), None without one."""
        if info.power_field == POWER_INSTANT:
            return instant_power_mw(self._nvml, handle)
        if info.power_field == POWER_USAGE:
            return int(self._nvml.nvmlDeviceGetPowerUsage(handle))
        return None

    @translate_errors
    def read(self) -> list[DeviceSample]:
        """Energy, power (the reading in ``DeviceInfo.power_field``) and telemetry of every GPU."""
        nvml = self._nvml
        samples = []
        for handle, info in zip(self._handles, self._infos, strict=True):
            now = time.time()
            energy_mj = (
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle) if info.has_counter else None
            )
            power_mw = self._power_mw(handle, info)
            limit_mw = _optional(functools.partial(nvml.nvmlDeviceGetEnforcedPowerLimit, handle))
            memory = _optional(functools.partial(nvml.nvmlDeviceGetMemoryInfo, handle))
            util = _optional(functools.partial(nvml.nvmlDeviceGetUtilizationRates, handle))
            samples.append(
                DeviceSample(
                    device=info.device,
                    t_s=now,
                    energy_j=None if energy_mj is None else energy_mj / 1000,
                    power_w=None if power_mw is None else power_mw / 1000,
                    temperature_c=_optional(
                        functools.partial(
                            nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
                        )
                    ),
                    sm_clock_mhz=_optional(
                        functools.partial(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM)
                    ),
                    mem_clock_mhz=_optional(
                        functools.partial(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM)
                    ),
                    memory_used_mb=None if memory is None else memory.used / 2**20,
                    gpu_util_pct=None if util is None else util.gpu,
                    mem_util_pct=None if util is None else util.memory,
                    throttle_reasons=_optional(
                        functools.partial(nvml.nvmlDeviceGetCurrentClocksEventReasons, handle)
                    ),
                    power_limit_w=None if limit_mw is None else limit_mw / 1000,
                )
            )
        return samples

    def compute_processes(self) -> dict[str, list[tuple[int, float | None]]]:
        """``nvmlDeviceGetComputeRunningProcesses`` of every GPU (host PIDs, used MiB)."""
        found = {}
        for handle, info in zip(self._handles, self._infos, strict=True):
            listed = _optional(
                functools.partial(self._nvml.nvmlDeviceGetComputeRunningProcesses, handle)
            )
            if listed is not None:
                found[info.device] = [
                    (int(p.pid), None if p.usedGpuMemory is None else p.usedGpuMemory / 2**20)
                    for p in listed
                ]
        return found

    def close(self) -> None:
        """Shut NVML down."""
        _optional(self._nvml.nvmlShutdown)

"""GPU power limit and locked clocks through NVML: checked, applied, read back, always restored.

Before anything is changed, the previous values are written to a restore file per GPU (by
UUID) in `restore_dir()`; `restore()` puts them back and removes the file. A run killed
with SIGKILL leaves the file behind: the next run on that GPU (or `llem doctor --restore`)
restores it before measuring.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llenergymeasure.config.models import GpuSettings, clock_range
from llenergymeasure.devices.nvml import gpu_uuid, resolve_gpus
from llenergymeasure.errors import DeviceSettingError, MeterError
from llenergymeasure.results.io import write_text_atomic
from llenergymeasure.results.models import GpuDeviceSettings, GpuSettingsRecord

log = logging.getLogger(__name__)
PERMISSION_HINT = (
    "changing GPU power limits and clocks needs root (run as root, or ask the site for a "
    "SLURM prolog / nvidia-smi wrapper that sets them), or leave settings.gpu out"
)


def restore_dir() -> Path:
    """Where restore files live: $LLEM_RESTORE_DIR, else a per-host temporary directory."""
    return Path(os.environ.get("LLEM_RESTORE_DIR", "/tmp/llenergymeasure-gpu-restore"))


def _nvml() -> Any:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise MeterError(f"NVML: cannot change GPU settings: {e}") from e
    return pynvml


def _restore_one(nvml: Any, handle: Any, saved: dict[str, Any]) -> None:
    if saved.get("power_limit_mw") is not None:
        nvml.nvmlDeviceSetPowerManagementLimit(handle, int(saved["power_limit_mw"]))
    if saved.get("sm_locked"):
        nvml.nvmlDeviceResetGpuLockedClocks(handle)
    if saved.get("memory_locked"):
        nvml.nvmlDeviceResetMemoryLockedClocks(handle)


def restore_leftovers(only_uuids: set[str] | None = None) -> list[str]:
    """Restore every GPU an earlier run left changed (its restore file), then drop the file.

    Args:
        only_uuids: Restore only these GPUs (None: every leftover file).

    Returns:
        One line per GPU restored.
    """
    files = sorted(restore_dir().glob("*.json")) if restore_dir().is_dir() else []
    if not files:
        return []
    nvml = _nvml()
    done = []
    try:
        for path in files:
            saved = json.loads(path.read_text())
            if only_uuids is not None and saved["uuid"] not in only_uuids:
                continue
            handle = nvml.nvmlDeviceGetHandleByUUID(saved["uuid"])
            _restore_one(nvml, handle, saved)
            path.unlink()
            done.append(
                f"{saved['uuid']}: restored what run {saved.get('run_id')} left "
                f"(power limit {saved.get('power_limit_mw')} mW, clocks reset)"
            )
            log.warning("%s", done[-1])
    except nvml.NVMLError as e:
        raise DeviceSettingError(f"NVML: restoring leftover GPU settings failed: {e}") from e
    finally:
        nvml.nvmlShutdown()
    return done


def _check_power(settings: GpuSettings, device: str, lo_w: float, hi_w: float) -> None:
    limit = settings.power_limit_w
    if limit is not None and not lo_w <= limit <= hi_w:
        raise DeviceSettingError(
            f"settings.gpu.power_limit_w: {limit:g} W is outside {device}'s range "
            f"{lo_w:g}–{hi_w:g} W"
        )


def _check_clocks(
    key: str, wanted: tuple[int, int] | None, supported: list[int], device: str
) -> None:
    if wanted is None or not supported:
        return
    if wanted[0] < min(supported) or wanted[1] > max(supported):
        raise DeviceSettingError(
            f"settings.gpu.{key}: {wanted[0]}–{wanted[1]} MHz is outside {device}'s supported "
            f"{min(supported)}–{max(supported)} MHz"
        )


class GpuControl:
    """Applies one run's GPU settings to the GPUs this process uses, and restores them."""

    def __init__(self, settings: GpuSettings, run_id: str) -> None:
        self.settings = settings
        self.run_id = run_id
        self.nvml = _nvml()
        self.handles = [gpu.handle for gpu in resolve_gpus(self.nvml)]
        self.record = GpuSettingsRecord(
            power_limit_w=settings.power_limit_w,
            sm_clocks_mhz=list(clock_range(settings.sm_clocks_mhz) or []) or None,
            memory_clocks_mhz=list(clock_range(settings.memory_clocks_mhz) or []) or None,
        )
        self._saved: list[tuple[Any, Path, dict[str, Any]]] = []

    def apply(self) -> GpuSettingsRecord:
        """Restore leftovers, check every GPU's range, save the old values, apply, read back.

        Raises:
            DeviceSettingError: A value outside a GPU's range, or no permission.
        """
        nvml, s = self.nvml, self.settings
        uuids = {gpu_uuid(nvml, h) for h in self.handles}
        self.record.restored_leftovers = restore_leftovers(uuids)
        sm, mem = clock_range(s.sm_clocks_mhz), clock_range(s.memory_clocks_mhz)
        try:
            for handle in self.handles:
                device = gpu_uuid(nvml, handle)
                lo_mw, hi_mw = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
                _check_power(s, device, lo_mw / 1000, hi_mw / 1000)
                memory_clocks = list(nvml.nvmlDeviceGetSupportedMemoryClocks(handle))
                _check_clocks("memory_clocks_mhz", mem, memory_clocks, device)
                graphics = (
                    list(nvml.nvmlDeviceGetSupportedGraphicsClocks(handle, max(memory_clocks)))
                    if sm is not None and memory_clocks
                    else []
                )
                _check_clocks("sm_clocks_mhz", sm, graphics, device)
            for handle in self.handles:
                self.record.devices.append(self._apply_one(handle, sm, mem))
        except nvml.NVMLError_NoPermission as e:
            self.restore()
            raise DeviceSettingError(f"NVML: no permission: {PERMISSION_HINT}") from e
        except nvml.NVMLError as e:
            self.restore()
            raise DeviceSettingError(f"NVML: applying settings.gpu failed: {e}") from e
        return self.record

    def _apply_one(
        self, handle: Any, sm: tuple[int, int] | None, mem: tuple[int, int] | None
    ) -> GpuDeviceSettings:
        nvml, s = self.nvml, self.settings
        uuid = gpu_uuid(nvml, handle)
        before_mw = nvml.nvmlDeviceGetPowerManagementLimit(handle)
        saved = {
            "uuid": uuid,
            "run_id": self.run_id,
            "pid": os.getpid(),
            "power_limit_mw": before_mw if s.power_limit_w is not None else None,
            "sm_locked": sm is not None,
            "memory_locked": mem is not None,
        }
        path = restore_dir() / f"{uuid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(saved) + "\n")  # before anything changes
        self._saved.append((handle, path, saved))
        steps = [
            (
                "power_limit_mw",
                s.power_limit_w is not None,
                nvml.nvmlDeviceSetPowerManagementLimit,
                (round((s.power_limit_w or 0) * 1000),),
            ),
            ("sm_locked", sm is not None, nvml.nvmlDeviceSetGpuLockedClocks, sm),
            ("memory_locked", mem is not None, nvml.nvmlDeviceSetMemoryLockedClocks, mem),
        ]
        pending = [key for key, wanted, _, _ in steps if wanted]
        for key, wanted, setter, args in steps:
            if not wanted:
                continue
            try:
                setter(handle, *(args or ()))
            except nvml.NVMLError:
                # what did not change needs no restore; nothing changed: no restore file
                for undone in pending:
                    saved[undone] = None if undone == "power_limit_mw" else False
                if not any(saved[k] for k in ("power_limit_mw", "sm_locked", "memory_locked")):
                    path.unlink(missing_ok=True)
                    self._saved.pop()
                else:
                    write_text_atomic(path, json.dumps(saved) + "\n")
                raise
            pending.remove(key)
        lo_mw, hi_mw = nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
        return GpuDeviceSettings(
            device=uuid,
            uuid=uuid,
            power_limit_w_before=before_mw / 1000,
            power_limit_w_applied=nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000,
            power_limit_range_w=[lo_mw / 1000, hi_mw / 1000],
            sm_clocks_mhz_locked=list(sm) if sm else None,
            memory_clocks_mhz_locked=list(mem) if mem else None,
            sm_clock_mhz_read=nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
            memory_clock_mhz_read=nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
        )

    def restore(self) -> None:
        """Put every changed GPU back as it was and drop its restore file (idempotent)."""
        while self._saved:
            handle, path, saved = self._saved.pop()
            try:
                _restore_one(self.nvml, handle, saved)
            except self.nvml.NVMLError as e:  # the file stays: the next run restores it
                log.error(
                    "restoring %s failed (%s); %s keeps the old values", saved["uuid"], e, path
                )
                continue
            path.unlink(missing_ok=True)
            for device in self.record.devices:
                if device.uuid == saved["uuid"]:
                    device.restored = True

    def close(self) -> None:
        """Restore, then shut NVML down."""
        self.restore()
        self.nvml.nvmlShutdown()


@contextmanager
def gpu_settings(
    settings: GpuSettings | None, run_id: str, uses_nvml: bool
) -> Iterator[GpuSettingsRecord | None]:
    """Apply the run's GPU settings for the duration of the block; always restore them.

    A run without settings still restores what a killed earlier run left on its GPUs.
    """
    if settings is None:
        if uses_nvml and restore_dir().is_dir() and any(restore_dir().glob("*.json")):
            nvml = _nvml()
            try:
                uuids = {gpu.uuid for gpu in resolve_gpus(nvml)}
            finally:
                nvml.nvmlShutdown()
            restore_leftovers(uuids)
        yield None
        return
    control = GpuControl(settings, run_id)
    try:
        yield control.apply()
    finally:
        control.close()

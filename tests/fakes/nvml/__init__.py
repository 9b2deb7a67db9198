"""A fake NVIDIA driver library (``libnvidia-ml.so.1``) for testing the real ``pynvml``.

``fake_nvml.c`` (next to this file) implements the NVML C entry points that ``pynvml``,
Zeus and this project call; every reading is a deterministic function of a scenario file
and of wall-clock time.  The format of that file is documented at the top of
``fake_nvml.c``; build scenarios with :class:`FakeScenario` / :class:`FakeDevice` and
write them with :func:`write_scenario`.

Two ways to put the fake under ``pynvml``:

* A fresh process (works for everything, including processes that process spawns, e.g.
  Zeus's power monitor)::

      env = subprocess_env(lib_path, scenario_path)   # LD_LIBRARY_PATH + FAKE_NVML_SCENARIO
      subprocess.run([sys.executable, "-c", code], env=env)

  ``LD_LIBRARY_PATH`` is read by the dynamic loader at process start only: setting
  ``os.environ["LD_LIBRARY_PATH"]`` inside a running process does not affect it.

* In-process: :func:`activate` loads the library before ``pynvml`` does.  ``pynvml``'s
  ``CDLL("libnvidia-ml.so.1")`` then returns the already-loaded fake, because glibc
  matches a requested bare name against the sonames of loaded objects.  This works as long
  as ``pynvml`` has not loaded a real library yet (a failed ``nvmlInit`` leaves
  ``pynvml.nvmlLib`` as ``None``, so activating after a failed init is fine).

The scenario file is re-read at every ``nvmlInit``: point ``FAKE_NVML_SCENARIO`` at another
file between ``nvmlShutdown`` and the next ``nvmlInit`` to switch scenarios in one process.

Energy is analytic: the counter is the exact integral of the scripted piecewise-linear
power capped by the enforced power limit, so :func:`analytic_energy_j` gives the truth a
measurement should reproduce (pass ``power_limit_mw`` for a limit a test set).

GPU settings (power limit, locked SM / memory clocks) are changed through the real NVML
setters (``nvmlDeviceSetPowerManagementLimit``, ``nvmlDeviceSetGpuLockedClocks``, ...).
They survive ``nvmlShutdown``/``nvmlInit`` in one process, and with a state file
(``subprocess_env(..., state_path=...)``, i.e. ``FAKE_NVML_STATE``) across processes, like
a real GPU; :func:`read_state` parses that file, :func:`write_state` writes one (e.g. a GPU
a killed run left capped).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SOURCE = HERE / "fake_nvml.c"
LIB_NAME = "libnvidia-ml.so.1"
SCENARIO_ENV = "FAKE_NVML_SCENARIO"
STATE_ENV = "FAKE_NVML_STATE"
CFLAGS = ("-O2", "-Wall", "-std=gnu11", "-shared", "-fPIC", "-fvisibility=hidden")
LDFLAGS = ("-lm", "-lpthread")
CUDA_SOURCE = HERE / "fake_cuda.c"
CUDA_LIB_NAME = "libcuda.so.1"
CUDA_ORDER_ENV = "FAKE_CUDA_ORDER"  # NVML indices in CUDA's fastest-first order, e.g. "1,0"

# NVML return codes used in scenarios (the full list is in pynvml: NVML_ERROR_*).
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

# nvmlDeviceGetFieldValues field ids the fake answers (NVML_FI_DEV_*).
NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION = 83
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186
NVML_FI_DEV_POWER_MIN_LIMIT = 187
NVML_FI_DEV_POWER_MAX_LIMIT = 188
NVML_FI_DEV_POWER_DEFAULT_LIMIT = 189
NVML_FI_DEV_POWER_CURRENT_LIMIT = 190

# Clocks-event (throttle) reason the fake adds while the power cap binds.
CLOCKS_EVENT_SW_POWER_CAP = 0x4

# The fake's default supported clocks (an A100): NVML lists them descending.
DEFAULT_MEMORY_CLOCKS_MHZ = (1593, 1215, 405)
DEFAULT_GRAPHICS_CLOCKS_MHZ = tuple(range(1410, 209, -15))  # 1410, 1395, ..., 210

# What nvmlDeviceGetPowerUsage reports (FakeDevice.power_usage).
POWER_USAGE_AVERAGED = "averaged"  # mean over the last 1 s: Ampere and later but GA100
POWER_USAGE_INSTANT = "instant"  # P(t): GA100 and older architectures
POWER_USAGE_MODES = (POWER_USAGE_AVERAGED, POWER_USAGE_INSTANT)

# NVML_DEVICE_ARCH_* codes (Zeus uses the energy counter from Volta on).
ARCH_PASCAL = 4
ARCH_VOLTA = 5
ARCH_TURING = 6
ARCH_AMPERE = 7
ARCH_ADA = 8
ARCH_HOPPER = 9

# Environment variables that would make a consumer look at something other than the fake.
FOREIGN_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "ZEUSD_SOCK_PATH",
    "ZEUSD_HOST_PORT",
    "ZEUSD_TOKEN",
)

Curve = float | Sequence[tuple[float, float]]


@dataclass
class InjectedError:
    """``function`` (a C symbol, e.g. ``nvmlDeviceGetPowerUsage``) returns NVML error ``code``.

    With ``start_s``/``end_s`` (seconds since the scenario epoch) only while
    ``start_s <= t < end_s``.
    """

    function: str
    code: int
    start_s: float | None = None
    end_s: float | None = None

    def line(self) -> str:
        if (self.start_s is None) != (self.end_s is None):
            raise ValueError("give both start_s and end_s, or neither")
        window = "" if self.start_s is None else f" {_num(self.start_s)} {_num(self.end_s)}"
        return f"error {_token(self.function)} {int(self.code)}{window}"


@dataclass
class Throttle:
    """Clocks-event (throttle) reasons ``reasons`` while ``start_s <= t < end_s``."""

    start_s: float
    end_s: float
    reasons: int
    sm_clock_mhz: int | None = None  # the SM clock read during the interval

    def line(self) -> str:
        sm = "" if self.sm_clock_mhz is None else f" {int(self.sm_clock_mhz)}"
        return f"throttle {_num(self.start_s)} {_num(self.end_s)} {int(self.reasons):#x}{sm}"


@dataclass
class Process:
    """A compute process on the device (``nvmlDeviceGetComputeRunningProcesses``).

    ``pid`` is a process id, or ``"self"``: whichever process asks (a run's own CUDA
    context is listed like any other). With ``start_s``/``end_s`` only while
    ``start_s <= t < end_s``.
    """

    pid: int | str
    used_mib: int = 1024
    start_s: float | None = None
    end_s: float | None = None

    def line(self) -> str:
        if (self.start_s is None) != (self.end_s is None):
            raise ValueError("give both start_s and end_s, or neither")
        if self.pid != "self" and not (isinstance(self.pid, int) and self.pid > 0):
            raise ValueError(f"pid is a positive int or 'self': {self.pid!r}")
        window = "" if self.start_s is None else f" {_num(self.start_s)} {_num(self.end_s)}"
        return f"process {self.pid} {int(self.used_mib)}{window}"


@dataclass
class FakeDevice:
    """One GPU of a scenario.  Times are seconds since the scenario's ``start_epoch_s``.

    ``power_w`` and ``temperature_c`` are a constant or ``[(t_s, value), ...]`` points,
    linear in between, held before the first and after the last point.

    ``power_usage`` is what ``nvmlDeviceGetPowerUsage`` reports: ``"averaged"`` (the
    default, as NVML documents for Ampere and later but GA100) the mean power over the last
    second, like field 185; ``"instant"`` the scripted power now, like field 186.
    ``unsupported_fields`` lists field ids (e.g. :data:`NVML_FI_DEV_POWER_INSTANT`) whose
    entries ``nvmlDeviceGetFieldValues`` answers NOT_SUPPORTED, as on older GPUs/drivers.

    Every power reading and the energy counter use ``min(power_w, enforced limit)``: the
    enforced limit (``enforced_power_limit_mw``, else ``power_limit_mw``) caps the power,
    and while the scripted power exceeds it the clocks-event reasons include
    :data:`CLOCKS_EVENT_SW_POWER_CAP`.  ``settable=False`` makes every setter fail with
    NVML_ERROR_NO_PERMISSION (a non-root user).  ``supported_*_clocks_mhz`` are what
    ``nvmlDeviceGetSupported{Memory,Graphics}Clocks`` list (one graphics list for every
    memory clock); their min..max is the range the locked-clock setters accept.
    ``sm_locked_mhz`` / ``mem_locked_mhz`` start the device with locked clocks.
    """

    name: str = "NVIDIA A100-SXM4-80GB"
    uuid: str | None = None  # None: GPU-fa4e0000-0000-0000-0000-<index as 12 digits>
    architecture: int = ARCH_AMPERE
    energy_counter: bool = True
    energy_offset_mj: int = 0
    counter_period_s: float | None = None  # None: the scenario's counter_period_s
    power_period_s: float | None = None  # None: the scenario's power_period_s
    power_usage: str = POWER_USAGE_AVERAGED  # or POWER_USAGE_INSTANT
    unsupported_fields: list[int] = field(default_factory=list)
    power_w: Curve = 100.0
    temperature_c: Curve = 40.0
    sm_clock_mhz: int = 1410
    mem_clock_mhz: int = 1593
    memory_total_bytes: int = 80 * 2**30
    memory_used_bytes: int = 0
    memory_reserved_bytes: int = 0
    gpu_utilization_pct: int = 0
    memory_utilization_pct: int = 0
    power_limit_mw: int = 400_000
    power_limit_min_mw: int = 100_000
    power_limit_max_mw: int = 400_000
    default_power_limit_mw: int | None = None  # None: power_limit_mw
    enforced_power_limit_mw: int | None = None  # None: power_limit_mw
    mig_mode: int = 0
    mig_pending_mode: int | None = None  # None: mig_mode
    persistence_mode: bool = False
    throttle: list[Throttle] = field(default_factory=list)
    c2c_enabled: bool | None = None  # None: nvmlDeviceGetC2cModeInfoV is NOT_SUPPORTED
    compute_mode: int = 0
    settable: bool = True  # False: the setters return NVML_ERROR_NO_PERMISSION
    supported_memory_clocks_mhz: list[int] = field(
        default_factory=lambda: list(DEFAULT_MEMORY_CLOCKS_MHZ)
    )
    supported_graphics_clocks_mhz: list[int] = field(
        default_factory=lambda: list(DEFAULT_GRAPHICS_CLOCKS_MHZ)
    )
    sm_locked_mhz: tuple[int, int] | None = None  # (min, max) locked at init; None: unlocked
    mem_locked_mhz: tuple[int, int] | None = None
    errors: list[InjectedError] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FakeDevice:
        values = dict(data)
        values["processes"] = [_coerce(Process, p) for p in values.get("processes", [])]
        values["throttle"] = [_coerce(Throttle, t) for t in values.get("throttle", [])]
        values["errors"] = _coerce_errors(values.get("errors", []))
        for key in ("sm_locked_mhz", "mem_locked_mhz"):
            if values.get(key) is not None:
                values[key] = _lock(values[key])
        return cls(**values)

    def power_points(self) -> list[tuple[float, float]]:
        return _points(self.power_w)

    def power_limit_w(self, power_limit_mw: int | None = None) -> float:
        """The power cap (W): ``power_limit_mw`` if given (a limit the test set), else the
        scenario's enforced limit."""
        if power_limit_mw is None:
            power_limit_mw = _default(self.enforced_power_limit_mw, self.power_limit_mw)
        return int(power_limit_mw) / 1000.0

    def scripted_power_w(self, t_s: float) -> float:
        """The scripted power (W) at ``t_s``, before the power cap."""
        return _curve_at(self.power_points(), t_s)

    def power_capped(self, t_s: float, power_limit_mw: int | None = None) -> bool:
        """Whether the cap binds at ``t_s`` (the fake then reports SW_POWER_CAP)."""
        return self.scripted_power_w(t_s) > self.power_limit_w(power_limit_mw)

    def power_at(self, t_s: float, power_limit_mw: int | None = None) -> float:
        """Power (W) at ``t_s`` seconds since the epoch, as the fake computes it (capped)."""
        return min(self.scripted_power_w(t_s), self.power_limit_w(power_limit_mw))

    def energy_j(self, t_s: float, power_limit_mw: int | None = None) -> float:
        """Energy (J) from the epoch to ``t_s`` (0 for ``t_s <= 0``): the counter's truth.

        The integral of ``min(power_w, limit)`` for one limit over the whole interval
        (``power_limit_mw``, default the enforced limit of the scenario).
        """
        if t_s <= 0:
            return 0.0
        return _curve_integral(self.power_points(), 0.0, t_s, self.power_limit_w(power_limit_mw))

    def average_power_w(self, t_s: float, power_limit_mw: int | None = None) -> float:
        """Mean power (W) over ``[t_s - 1, t_s]``, as field 185 and averaged GetPowerUsage.

        Before the epoch the power at ``t = 0`` is held (same arithmetic as
        average_power_mw() in fake_nvml.c); capped like :meth:`energy_j`.
        """
        points, a, cap = self.power_points(), t_s - 1.0, self.power_limit_w(power_limit_mw)
        p0 = min(_curve_at(points, 0.0), cap)
        if a >= 0:
            return _curve_integral(points, a, t_s, cap)
        if t_s <= 0:
            return p0
        return p0 * -a + _curve_integral(points, 0.0, t_s, cap)

    def power_usage_w(self, t_s: float, power_limit_mw: int | None = None) -> float:
        """What ``nvmlDeviceGetPowerUsage`` shows at ``t_s`` (W, before mW rounding)."""
        if self.power_usage == POWER_USAGE_INSTANT:
            return self.power_at(t_s, power_limit_mw)
        return self.average_power_w(t_s, power_limit_mw)

    def lines(self) -> list[str]:
        out = ["device", f"name {_text(self.name)}"]
        if self.uuid is not None:
            out.append(f"uuid {_token(self.uuid)}")
        out += [
            f"arch {int(self.architecture)}",
            f"energy_counter {int(bool(self.energy_counter))}",
            f"energy_offset_mj {int(self.energy_offset_mj)}",
        ]
        if self.counter_period_s is not None:
            out.append(f"counter_period_s {_num(self.counter_period_s)}")
        if self.power_period_s is not None:
            out.append(f"power_period_s {_num(self.power_period_s)}")
        if self.power_usage not in POWER_USAGE_MODES:
            raise ValueError(f"power_usage is one of {POWER_USAGE_MODES}: {self.power_usage!r}")
        out.append(f"power_usage {self.power_usage}")
        if self.unsupported_fields:
            ids = " ".join(str(int(f)) for f in self.unsupported_fields)
            out.append(f"unsupported_field {ids}")
        out += _curve_lines("power", self.power_w)
        out += _curve_lines("temperature", self.temperature_c)
        out += [
            f"clocks {int(self.sm_clock_mhz)} {int(self.mem_clock_mhz)}",
            f"memory {int(self.memory_total_bytes)} {int(self.memory_used_bytes)} "
            f"{int(self.memory_reserved_bytes)}",
            f"utilization {int(self.gpu_utilization_pct)} {int(self.memory_utilization_pct)}",
            "power_limit_mw "
            + " ".join(
                str(int(v))
                for v in (
                    self.power_limit_mw,
                    self.power_limit_min_mw,
                    self.power_limit_max_mw,
                    _default(self.default_power_limit_mw, self.power_limit_mw),
                    _default(self.enforced_power_limit_mw, self.power_limit_mw),
                )
            ),
            f"mig {int(self.mig_mode)} {int(_default(self.mig_pending_mode, self.mig_mode))}",
            f"persistence {int(bool(self.persistence_mode))}",
            f"compute_mode {int(self.compute_mode)}",
        ]
        if self.c2c_enabled is not None:
            out.append(f"c2c {int(bool(self.c2c_enabled))}")
        out.append(f"settable {int(bool(self.settable))}")
        for key, clocks in (
            ("supported_memory_clocks", self.supported_memory_clocks_mhz),
            ("supported_graphics_clocks", self.supported_graphics_clocks_mhz),
        ):
            if not clocks:
                raise ValueError(f"{key} needs at least one clock")
            out.append(f"{key} " + " ".join(str(int(c)) for c in clocks))
        for key, lock in (("sm_locked", self.sm_locked_mhz), ("mem_locked", self.mem_locked_mhz)):
            if lock is not None:
                lo, hi = _lock(lock)
                out.append(f"{key} {lo} {hi}")
        out += [t.line() for t in self.throttle]
        out += [p.line() for p in self.processes]
        out += [e.line() for e in self.errors]
        return out


@dataclass
class FakeScenario:
    """Global settings plus the devices (index = position in ``devices``)."""

    devices: list[FakeDevice] = field(default_factory=list)
    start_epoch_s: float = field(default_factory=time.time)
    driver_version: str = "550.54.15"
    nvml_version: str = "12.550.54.15"
    cuda_driver_version: int = 12040
    counter_period_s: float = 0.0
    power_period_s: float = 0.0
    errors: list[InjectedError] = field(default_factory=list)  # for every device and call

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FakeScenario:
        values = dict(data)
        values["devices"] = [_coerce(FakeDevice, d) for d in values.get("devices", [])]
        values["errors"] = _coerce_errors(values.get("errors", []))
        return cls(**values)

    def uuid(self, index: int) -> str:
        """The UUID device ``index`` reports (its own, or the fake's default)."""
        own = self.devices[index].uuid
        return own if own is not None else f"GPU-fa4e0000-0000-0000-0000-{index:012d}"

    def counter_period(self, index: int) -> float:
        own = self.devices[index].counter_period_s
        return self.counter_period_s if own is None else own

    def energy_j(
        self,
        index: int,
        t0_epoch_s: float,
        t1_epoch_s: float,
        power_limit_mw: int | None = None,
    ) -> float:
        """Exact energy (J) of device ``index`` between two CLOCK_REALTIME times.

        ``power_limit_mw``: the limit in force over the whole interval (default the
        scenario's enforced limit).
        """
        return analytic_energy_j(
            self.devices[index], t0_epoch_s, t1_epoch_s, self.start_epoch_s, power_limit_mw
        )

    def text(self) -> str:
        lines = [
            "# fake NVML scenario (format: tests/fakes/nvml/fake_nvml.c)",
            "fake_nvml_scenario 1",
            f"start_epoch_s {_num(self.start_epoch_s)}",
            f"driver_version {_token(self.driver_version)}",
            f"nvml_version {_token(self.nvml_version)}",
            f"cuda_driver_version {int(self.cuda_driver_version)}",
            f"counter_period_s {_num(self.counter_period_s)}",
            f"power_period_s {_num(self.power_period_s)}",
        ]
        lines += [e.line() for e in self.errors]
        for device in self.devices:
            lines += device.lines()
        return "\n".join(lines) + "\n"


def write_scenario(
    path: str | os.PathLike[str], scenario: FakeScenario | Mapping[str, Any]
) -> Path:
    """Write ``scenario`` (a :class:`FakeScenario` or an equivalent dict) to ``path``."""
    if not isinstance(scenario, FakeScenario):
        scenario = FakeScenario.from_dict(scenario)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(scenario.text())
    tmp.replace(path)  # atomic: a concurrent nvmlInit never sees half a file
    return path


def analytic_energy_j(
    device: FakeDevice | Mapping[str, Any],
    t0_epoch_s: float,
    t1_epoch_s: float,
    start_epoch_s: float,
    power_limit_mw: int | None = None,
) -> float:
    """Exact energy (J) of ``device``'s capped power between two CLOCK_REALTIME times.

    Equals the fake's counter difference when the counter is continuous
    (``counter_period_s`` 0), up to the counter's 1 mJ resolution, provided one limit
    (``power_limit_mw``, default the scenario's enforced limit) held over the interval.
    """
    if not isinstance(device, FakeDevice):
        device = FakeDevice.from_dict(device)
    return device.energy_j(t1_epoch_s - start_epoch_s, power_limit_mw) - device.energy_j(
        t0_epoch_s - start_epoch_s, power_limit_mw
    )


def expected_counter_mj(
    device: FakeDevice,
    t_epoch_s: float,
    start_epoch_s: float,
    counter_period_s: float = 0.0,
    power_limit_mw: int | None = None,
) -> int:
    """The value the fake's energy counter shows at ``t_epoch_s`` (quantisation included),
    for one limit since the epoch (``power_limit_mw``, default the enforced limit)."""
    t = t_epoch_s - start_epoch_s
    if counter_period_s > 0:
        t = math.floor(t / counter_period_s) * counter_period_s
    return int(device.energy_offset_mj) + math.floor(1000.0 * device.energy_j(t, power_limit_mw))


STATE_KEYS = (
    "power_limit_mw",
    "enforced_power_limit_mw",
    "sm_locked",
    "mem_locked",
    "limit_since_epoch_s",
    "energy_at_since_j",
)


def read_state(path: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """Parse the fake's state file (``FAKE_NVML_STATE``): ``{device index: settings}``.

    Each device's dict holds the keys its line names (the fake writes every one of them
    but the last two, which appear once the limit was changed): ``power_limit_mw`` and
    ``enforced_power_limit_mw`` (int), ``sm_locked`` and ``mem_locked`` (``(min, max)``
    MHz or None when unlocked), ``limit_since_epoch_s`` (float, CLOCK_REALTIME of the
    last limit change) and ``energy_at_since_j`` (float).  A missing file (no setter has
    run yet) gives ``{}``.
    """
    path = Path(path)
    if not path.exists():
        return {}
    devices: dict[int, dict[str, Any]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#") or tokens[0] != "device":
            continue
        if len(tokens) < 2:
            raise ValueError(f"{path}:{number}: `device` needs an index")
        entry: dict[str, Any] = {}
        i = 2
        while i < len(tokens):
            key = tokens[i]
            if key in ("sm_locked", "mem_locked"):
                if i + 1 < len(tokens) and tokens[i + 1] == "none":
                    entry[key], i = None, i + 2
                else:
                    entry[key], i = (int(tokens[i + 1], 0), int(tokens[i + 2], 0)), i + 3
            elif key in ("power_limit_mw", "enforced_power_limit_mw"):
                entry[key], i = int(tokens[i + 1], 0), i + 2
            elif key in ("limit_since_epoch_s", "energy_at_since_j"):
                entry[key], i = float(tokens[i + 1]), i + 2
            else:
                raise ValueError(f"{path}:{number}: unknown state key {key!r}")
        devices[int(tokens[1], 0)] = entry
    return devices


def write_state(
    path: str | os.PathLike[str],
    devices: Mapping[int, Mapping[str, Any]],
    start_epoch_s: float | None = None,
) -> Path:
    """Write a state file (atomically), e.g. a GPU an earlier (killed) run left changed.

    ``devices`` maps a device index to any of :data:`STATE_KEYS` (the format
    :func:`read_state` returns); keys left out keep the scenario's values.  Without
    ``limit_since_epoch_s`` a power limit holds for all time (the counter's past included),
    so write the file before the processes that should see it start.
    """
    lines = ["# fake NVML state (format: tests/fakes/nvml/fake_nvml.c)", "fake_nvml_state 1"]
    if start_epoch_s is not None:
        lines.append(f"start_epoch_s {_num(start_epoch_s)}")
    for index, entry in sorted(devices.items()):
        unknown = set(entry) - set(STATE_KEYS)
        if unknown:
            raise ValueError(f"unknown state keys {sorted(unknown)}; use {STATE_KEYS}")
        words = [f"device {int(index)}"]
        for key in STATE_KEYS:
            if key not in entry:
                continue
            value = entry[key]
            if key in ("sm_locked", "mem_locked"):
                lock = "none" if value is None else "{} {}".format(*_lock(value))
                words.append(f"{key} {lock}")
            elif key in ("limit_since_epoch_s", "energy_at_since_j"):
                words.append(f"{key} {_num(value)}")
            else:
                words.append(f"{key} {int(value)}")
        lines.append(" ".join(words))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def build_fake_nvml(out_dir: str | os.PathLike[str], compiler: str = "gcc") -> Path:
    """Compile ``fake_nvml.c`` into ``out_dir/libnvidia-ml.so.1`` and, beside it,
    ``fake_cuda.c`` into ``out_dir/libcuda.so.1`` (each skipped if up to date).

    The fake CUDA driver sits in the same directory so that ``subprocess_env`` (and
    ``activate``'s children) find both: it answers which NVML GPU each CUDA device is.

    Raises FileNotFoundError if the compiler is missing, RuntimeError if compiling fails.
    """
    cc = shutil.which(compiler)
    if cc is None:
        raise FileNotFoundError(f"C compiler {compiler!r} not found: cannot build {LIB_NAME}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _compile(cc, CUDA_SOURCE, out_dir / CUDA_LIB_NAME, ("-ldl",))
    return _compile(cc, SOURCE, out_dir / LIB_NAME, LDFLAGS)


def _compile(cc: str, source: Path, lib: Path, ldflags: Sequence[str]) -> Path:
    stamp = lib.with_name(lib.name + ".stamp")
    soname = (f"-Wl,-soname,{lib.name}",)
    digest = hashlib.sha256(
        source.read_bytes() + " ".join((cc, *CFLAGS, *soname, *ldflags)).encode()
    ).hexdigest()
    if lib.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return lib
    tmp = lib.with_name(f".{lib.name}.{os.getpid()}.tmp")
    cmd = [cc, *CFLAGS, "-o", str(tmp), str(source), *soname, *ldflags]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {lib.name} failed:\n{' '.join(cmd)}\n{proc.stderr}")
    tmp.replace(lib)
    stamp.write_text(digest + "\n")
    return lib


def activate(
    lib_path: str | os.PathLike[str],
    scenario_path: str | os.PathLike[str],
    state_path: str | os.PathLike[str] | None = None,
) -> ctypes.CDLL:
    """Make this process's ``pynvml`` use the fake (see the module docstring).

    Sets ``FAKE_NVML_SCENARIO`` (and ``FAKE_NVML_STATE`` if ``state_path`` is given) and
    preloads the library with RTLD_GLOBAL.  Call it before
    ``pynvml`` loads a real ``libnvidia-ml.so.1``; if it already did, raises RuntimeError.
    A loaded library cannot be unloaded: every later ``dlopen("libnvidia-ml.so.1")`` in
    this process gets the fake, so do not call this in a pytest process whose other tests
    expect "no driver" -- run it in a child process.
    """
    os.environ[SCENARIO_ENV] = str(Path(scenario_path).resolve())
    if state_path is not None:
        os.environ[STATE_ENV] = str(Path(state_path).resolve())
    lib = ctypes.CDLL(str(Path(lib_path).resolve()), mode=ctypes.RTLD_GLOBAL)
    pynvml = sys.modules.get("pynvml")
    loaded = getattr(pynvml, "nvmlLib", None)
    if loaded is not None and loaded._handle != lib._handle:
        raise RuntimeError(
            "pynvml already loaded another libnvidia-ml.so.1; activate the fake before the "
            "first nvmlInit, or use a subprocess with subprocess_env()"
        )
    return lib


def subprocess_env(
    lib_path: str | os.PathLike[str],
    scenario_path: str | os.PathLike[str],
    base: Mapping[str, str] | None = None,
    state_path: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Environment for a child process whose ``pynvml`` loads the fake.

    ``LD_LIBRARY_PATH`` starts with the library's directory and ``FAKE_NVML_SCENARIO``
    names the scenario; CUDA_VISIBLE_DEVICES and the Zeus daemon variables are removed so
    that device indices are the scenario's.  ``state_path`` sets ``FAKE_NVML_STATE``: GPU
    settings (power limit, locked clocks) then persist in that file across processes;
    without it ``FAKE_NVML_STATE`` is removed and settings live in each process only.
    """
    env = dict(os.environ if base is None else base)
    for name in FOREIGN_ENV:
        env.pop(name, None)
    lib_dir = str(Path(lib_path).resolve().parent)
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = lib_dir if not old else f"{lib_dir}{os.pathsep}{old}"
    env[SCENARIO_ENV] = str(Path(scenario_path).resolve())
    env.pop(STATE_ENV, None)
    if state_path is not None:
        env[STATE_ENV] = str(Path(state_path).resolve())
    return env


def run_python(code: str, env: Mapping[str, str], timeout: float = 60.0) -> Any:
    """Run ``code`` in a fresh interpreter (cwd = repository root, so ``tests.fakes`` imports)
    and return the JSON it printed on its last stdout line.

    Raises AssertionError with the child's stdout and stderr if it fails or prints nothing.
    """
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise AssertionError(
            f"child exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------ helpers


def _num(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    return repr(value)


def _token(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"must be one non-empty word without blanks: {value!r}")
    return value


def _text(value: str) -> str:
    if not value.strip() or "\n" in value or "\r" in value:
        raise ValueError(f"must be one non-empty line: {value!r}")
    return value.strip()


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _lock(value: Sequence[int]) -> tuple[int, int]:
    lo, hi = (int(v) for v in value)
    if lo > hi:
        raise ValueError(f"locked clocks need min <= max: {value!r}")
    return lo, hi


def _points(curve: Curve) -> list[tuple[float, float]]:
    if isinstance(curve, int | float):
        return [(0.0, float(curve))]
    points = [(float(t), float(v)) for t, v in curve]
    if not points:
        raise ValueError("a curve needs at least one point")
    if any(b[0] < a[0] for a, b in zip(points, points[1:], strict=False)):
        raise ValueError("curve times must not decrease")
    return points


def _curve_lines(key: str, curve: Curve) -> list[str]:
    points = _points(curve)
    chunk = 256  # several lines for long curves; the fake appends them
    return [
        f"{key} " + " ".join(f"{_num(t)} {_num(v)}" for t, v in points[i : i + chunk])
        for i in range(0, len(points), chunk)
    ]


def _curve_at(points: list[tuple[float, float]], t: float) -> float:
    """Same arithmetic as curve_at() in fake_nvml.c."""
    if t <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        if t < t1:
            dt = t1 - t0
            return v1 if dt <= 0 else v0 + (v1 - v0) * (t - t0) / dt
    return points[-1][1]


def _piece_integral(
    points: list[tuple[float, float]], x: float, y: float, cap_w: float = math.inf
) -> float:
    """Same arithmetic as piece_integral() in fake_nvml.c: min(P, cap_w) over one piece."""
    w, mid = y - x, _curve_at(points, 0.5 * (x + y))
    if not cap_w < math.inf:
        return mid * w
    q1, q3 = _curve_at(points, x + 0.25 * w), _curve_at(points, x + 0.75 * w)
    half = 0.5 * (q3 - q1)
    lo, hi = q1 - half, q3 + half  # the piece's values at x+ and y-
    if lo <= cap_w and hi <= cap_w:
        return mid * w
    if lo >= cap_w and hi >= cap_w:
        return cap_w * w
    f = (cap_w - lo) / (hi - lo)  # where the piece crosses the cap
    if lo < cap_w:
        return 0.5 * (lo + cap_w) * f * w + cap_w * (1.0 - f) * w
    return cap_w * f * w + 0.5 * (cap_w + hi) * (1.0 - f) * w


def _curve_integral(
    points: list[tuple[float, float]], a: float, b: float, cap_w: float = math.inf
) -> float:
    """Same arithmetic as curve_integral() in fake_nvml.c (exact for the linear pieces).

    Integrates ``min(P, cap_w)``.  Each piece between breakpoints is linear, so its mean is
    its midpoint value; evaluating there (never at a breakpoint) also integrates a step (two
    points at one time) exactly.
    """
    if b <= a:
        return 0.0
    total, x = 0.0, a
    for t, _ in points:
        if x >= b:
            break
        if t <= x:
            continue
        y = min(t, b)
        total += _piece_integral(points, x, y, cap_w)
        x = y
    if x < b:
        total += _piece_integral(points, x, b, cap_w)
    return total


def _coerce(cls: type, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_dict(value) if hasattr(cls, "from_dict") else cls(**value)
    return cls(*value)


def _coerce_errors(value: Any) -> list[InjectedError]:
    """A list of InjectedError / dicts / tuples, or a {function: code} mapping."""
    if isinstance(value, Mapping):
        return [InjectedError(fn, code) for fn, code in value.items()]
    return [_coerce(InjectedError, e) for e in value]


__all__ = [
    "CLOCKS_EVENT_SW_POWER_CAP",
    "DEFAULT_GRAPHICS_CLOCKS_MHZ",
    "DEFAULT_MEMORY_CLOCKS_MHZ",
    "STATE_ENV",
    "STATE_KEYS",
    "FakeDevice",
    "FakeScenario",
    "InjectedError",
    "Process",
    "Throttle",
    "activate",
    "analytic_energy_j",
    "build_fake_nvml",
    "expected_counter_mj",
    "read_state",
    "run_python",
    "subprocess_env",
    "write_scenario",
    "write_state",
]

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
power, so :func:`analytic_energy_j` gives the truth a measurement should reproduce.
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
CFLAGS = ("-O2", "-Wall", "-std=gnu11", "-shared", "-fPIC", "-fvisibility=hidden")
LDFLAGS = (f"-Wl,-soname,{LIB_NAME}", "-lm", "-lpthread")

# NVML return codes used in scenarios (the full list is in pynvml: NVML_ERROR_*).
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

# nvmlDeviceGetFieldValues field ids the fake answers (NVML_FI_DEV_*).
NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION = 83
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186

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
FOREIGN_ENV = ("CUDA_VISIBLE_DEVICES", "ZEUSD_SOCK_PATH", "ZEUSD_HOST_PORT", "ZEUSD_TOKEN")

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
class FakeDevice:
    """One GPU of a scenario.  Times are seconds since the scenario's ``start_epoch_s``.

    ``power_w`` and ``temperature_c`` are a constant or ``[(t_s, value), ...]`` points,
    linear in between, held before the first and after the last point.

    ``power_usage`` is what ``nvmlDeviceGetPowerUsage`` reports: ``"averaged"`` (the
    default, as NVML documents for Ampere and later but GA100) the mean power over the last
    second, like field 185; ``"instant"`` the scripted power now, like field 186.
    ``unsupported_fields`` lists field ids (e.g. :data:`NVML_FI_DEV_POWER_INSTANT`) whose
    entries ``nvmlDeviceGetFieldValues`` answers NOT_SUPPORTED, as on older GPUs/drivers.
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
    errors: list[InjectedError] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FakeDevice:
        values = dict(data)
        values["throttle"] = [_coerce(Throttle, t) for t in values.get("throttle", [])]
        values["errors"] = _coerce_errors(values.get("errors", []))
        return cls(**values)

    def power_points(self) -> list[tuple[float, float]]:
        return _points(self.power_w)

    def power_at(self, t_s: float) -> float:
        """Power (W) at ``t_s`` seconds since the epoch, as the fake computes it."""
        return _curve_at(self.power_points(), t_s)

    def energy_j(self, t_s: float) -> float:
        """Energy (J) from the epoch to ``t_s`` (0 for ``t_s <= 0``): the counter's truth."""
        return 0.0 if t_s <= 0 else _curve_integral(self.power_points(), 0.0, t_s)

    def average_power_w(self, t_s: float) -> float:
        """Mean power (W) over ``[t_s - 1, t_s]``, as field 185 and averaged GetPowerUsage.

        Before the epoch the power at ``t = 0`` is held (same arithmetic as
        average_power_mw() in fake_nvml.c).
        """
        points, a = self.power_points(), t_s - 1.0
        p0 = _curve_at(points, 0.0)
        if a >= 0:
            return _curve_integral(points, a, t_s)
        if t_s <= 0:
            return p0
        return p0 * -a + _curve_integral(points, 0.0, t_s)

    def power_usage_w(self, t_s: float) -> float:
        """What ``nvmlDeviceGetPowerUsage`` shows at ``t_s`` (W, before mW rounding)."""
        if self.power_usage == POWER_USAGE_INSTANT:
            return self.power_at(t_s)
        return self.average_power_w(t_s)

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
        out += [t.line() for t in self.throttle]
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

    def energy_j(self, index: int, t0_epoch_s: float, t1_epoch_s: float) -> float:
        """Exact energy (J) of device ``index`` between two CLOCK_REALTIME times."""
        return analytic_energy_j(self.devices[index], t0_epoch_s, t1_epoch_s, self.start_epoch_s)

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
) -> float:
    """Exact energy (J) of ``device``'s scripted power between two CLOCK_REALTIME times.

    Equals the fake's counter difference when the counter is continuous
    (``counter_period_s`` 0), up to the counter's 1 mJ resolution.
    """
    if not isinstance(device, FakeDevice):
        device = FakeDevice.from_dict(device)
    return device.energy_j(t1_epoch_s - start_epoch_s) - device.energy_j(t0_epoch_s - start_epoch_s)


def expected_counter_mj(
    device: FakeDevice, t_epoch_s: float, start_epoch_s: float, counter_period_s: float = 0.0
) -> int:
    """The value the fake's energy counter shows at ``t_epoch_s`` (quantisation included)."""
    t = t_epoch_s - start_epoch_s
    if counter_period_s > 0:
        t = math.floor(t / counter_period_s) * counter_period_s
    return int(device.energy_offset_mj) + math.floor(1000.0 * device.energy_j(t))


def build_fake_nvml(out_dir: str | os.PathLike[str], compiler: str = "gcc") -> Path:
    """Compile ``fake_nvml.c`` into ``out_dir/libnvidia-ml.so.1`` (skipped if up to date).

    Raises FileNotFoundError if the compiler is missing, RuntimeError if compiling fails.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / LIB_NAME
    stamp = out_dir / (LIB_NAME + ".stamp")
    cc = shutil.which(compiler)
    if cc is None:
        raise FileNotFoundError(f"C compiler {compiler!r} not found: cannot build {LIB_NAME}")
    digest = hashlib.sha256(
        SOURCE.read_bytes() + " ".join((compiler, *CFLAGS, *LDFLAGS)).encode()
    ).hexdigest()
    if lib.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return lib
    tmp = out_dir / f".{LIB_NAME}.{os.getpid()}.tmp"
    cmd = [cc, *CFLAGS, "-o", str(tmp), str(SOURCE), *LDFLAGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {LIB_NAME} failed:\n{' '.join(cmd)}\n{proc.stderr}")
    tmp.replace(lib)
    stamp.write_text(digest + "\n")
    return lib


def activate(
    lib_path: str | os.PathLike[str], scenario_path: str | os.PathLike[str]
) -> ctypes.CDLL:
    """Make this process's ``pynvml`` use the fake (see the module docstring).

    Sets ``FAKE_NVML_SCENARIO`` and preloads the library with RTLD_GLOBAL.  Call it before
    ``pynvml`` loads a real ``libnvidia-ml.so.1``; if it already did, raises RuntimeError.
    A loaded library cannot be unloaded: every later ``dlopen("libnvidia-ml.so.1")`` in
    this process gets the fake, so do not call this in a pytest process whose other tests
    expect "no driver" -- run it in a child process.
    """
    os.environ[SCENARIO_ENV] = str(Path(scenario_path).resolve())
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
) -> dict[str, str]:
    """Environment for a child process whose ``pynvml`` loads the fake.

    ``LD_LIBRARY_PATH`` starts with the library's directory and ``FAKE_NVML_SCENARIO``
    names the scenario; CUDA_VISIBLE_DEVICES and the Zeus daemon variables are removed so
    that device indices are the scenario's.
    """
    env = dict(os.environ if base is None else base)
    for name in FOREIGN_ENV:
        env.pop(name, None)
    lib_dir = str(Path(lib_path).resolve().parent)
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = lib_dir if not old else f"{lib_dir}{os.pathsep}{old}"
    env[SCENARIO_ENV] = str(Path(scenario_path).resolve())
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


def _curve_integral(points: list[tuple[float, float]], a: float, b: float) -> float:
    """Same arithmetic as curve_integral() in fake_nvml.c (exact for the linear pieces).

    Each piece between breakpoints is linear, so its mean is its midpoint value; evaluating
    there (never at a breakpoint) also integrates a step (two points at one time) exactly.
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
        total += _curve_at(points, 0.5 * (x + y)) * (y - x)
        x = y
    if x < b:
        total += _curve_at(points, 0.5 * (x + b)) * (b - x)
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
    "FakeDevice",
    "FakeScenario",
    "InjectedError",
    "Throttle",
    "activate",
    "analytic_energy_j",
    "build_fake_nvml",
    "expected_counter_mj",
    "run_python",
    "subprocess_env",
    "write_scenario",
]

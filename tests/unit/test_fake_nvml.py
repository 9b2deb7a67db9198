"""The real pynvml (and Zeus) against the fake libnvidia-ml.so.1 in tests/fakes/nvml.

Every NVML call runs in a fresh child process (LD_LIBRARY_PATH + FAKE_NVML_SCENARIO): the
fake must never be loaded into the pytest process itself, where it would shadow "no
driver" for other tests (glibc would hand it to any later dlopen("libnvidia-ml.so.1")).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.nvml import (
    ARCH_AMPERE,
    ARCH_HOPPER,
    CLOCKS_EVENT_SW_POWER_CAP,
    DEFAULT_GRAPHICS_CLOCKS_MHZ,
    DEFAULT_MEMORY_CLOCKS_MHZ,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_INSUFFICIENT_SIZE,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    NVML_FI_DEV_POWER_INSTANT,
    POWER_USAGE_INSTANT,
    FakeDevice,
    FakeScenario,
    InjectedError,
    Throttle,
    analytic_energy_j,
    expected_counter_mj,
    read_state,
    run_python,
    subprocess_env,
    write_scenario,
    write_state,
)

pytest_plugins = ["tests.fakes.nvml.fixtures"]

PRELUDE = """
import json, sys, time
import pynvml as n

def err(call):
    try:
        call()
    except n.NVMLError as e:
        return type(e).__name__
    return None

"""

SW_POWER_CAP = 0x4
HW_THERMAL = 0x40


def two_gpus(**overrides) -> FakeScenario:
    """An A100 with a power ramp and a counter, and a Hopper-named GPU without one."""
    scenario = FakeScenario(
        devices=[
            FakeDevice(
                name="NVIDIA A100-SXM4-80GB",
                uuid="GPU-11111111-2222-3333-4444-555555555555",
                architecture=ARCH_AMPERE,
                power_w=[(0.0, 90.0), (0.7, 310.0), (1.4, 180.0), (3.0, 250.0)],
                energy_offset_mj=123_456_789,
            ),
            FakeDevice(
                name="NVIDIA H100 80GB HBM3",
                architecture=ARCH_HOPPER,
                energy_counter=False,
                power_w=[(0.0, 120.0), (2.0, 400.0)],
            ),
        ]
    )
    for key, value in overrides.items():
        setattr(scenario, key, value)
    return scenario


# ------------------------------------------------------------------ pure Python


def test_analytic_energy_is_the_exact_integral() -> None:
    ramp = FakeDevice(power_w=[(0.0, 100.0), (1.0, 300.0), (3.0, 300.0)])
    assert ramp.energy_j(1.0) == pytest.approx(200.0)
    assert ramp.energy_j(2.0) == pytest.approx(500.0)
    assert ramp.energy_j(4.0) == pytest.approx(1100.0)  # held at 300 W after the last point
    assert ramp.energy_j(-1.0) == 0.0
    late = FakeDevice(power_w=[(1.0, 50.0), (2.0, 150.0)])  # held at 50 W before t = 1
    assert late.energy_j(2.0) == pytest.approx(150.0)
    assert FakeDevice(power_w=42.0).energy_j(10.0) == pytest.approx(420.0)
    epoch = 1_000.0
    # E(0.5) = 100 * 0.5 + 0.5 * 200 * 0.5**2 = 75
    assert analytic_energy_j(ramp, epoch + 0.5, epoch + 2.0, epoch) == pytest.approx(500 - 75)
    assert analytic_energy_j({"power_w": 10.0}, epoch - 5, epoch + 1, epoch) == pytest.approx(10)
    assert expected_counter_mj(ramp, epoch + 1.05, epoch, counter_period_s=0.1) == 200_000


def test_average_power_is_the_mean_of_the_last_second() -> None:
    step = FakeDevice(power_w=[(5.0, 100.0), (5.0, 300.0)])  # 100 W -> 300 W at t = 5 s
    assert step.average_power_w(5.0) == pytest.approx(100.0)
    assert step.average_power_w(5.25) == pytest.approx(150.0)
    assert step.average_power_w(6.0) == pytest.approx(300.0)
    assert step.energy_j(6.0) == pytest.approx(5 * 100.0 + 300.0)  # a step integrates exactly
    assert step.power_usage_w(5.25) == pytest.approx(150.0)  # averaged is the default
    step.power_usage = POWER_USAGE_INSTANT
    assert step.power_usage_w(5.25) == pytest.approx(300.0)
    ramp = FakeDevice(power_w=[(0.0, 100.0), (10.0, 200.0)])
    assert ramp.average_power_w(-3.0) == pytest.approx(100.0)  # P(0) held before the epoch
    assert ramp.average_power_w(0.5) == pytest.approx(0.5 * 100.0 + 0.5 * 102.5)
    assert ramp.average_power_w(4.0) == pytest.approx(135.0)  # P(t) - 10 W/s * 0.5 s


def test_scenario_text_round_trips_dicts(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path / "s.txt",
        {
            "start_epoch_s": 12.5,
            "devices": [
                {
                    "name": "Tesla V100-SXM2-16GB",
                    "power_w": [(0, 1), (1, 2)],
                    "throttle": [(0.0, 1.0, SW_POWER_CAP)],
                    "errors": {"nvmlDeviceGetPowerUsage": NVML_ERROR_UNKNOWN},
                    "power_usage": "instant",
                    "unsupported_fields": [NVML_FI_DEV_POWER_INSTANT, 83],
                },
                {},
            ],
        },
    )
    text = path.read_text()
    assert "power_usage instant\n" in text
    assert "unsupported_field 186 83\n" in text
    assert text.count("power_usage averaged\n") == 1  # the default, written out
    with pytest.raises(ValueError, match="power_usage"):
        FakeDevice(power_usage="smoothed").lines()
    assert "start_epoch_s 12.5\n" in text
    assert "name Tesla V100-SXM2-16GB\n" in text
    assert "power 0.0 1.0 1.0 2.0\n" in text
    assert "throttle 0.0 1.0 0x4\n" in text
    assert "error nvmlDeviceGetPowerUsage 999\n" in text


# ---------------------------------------------------------- pynvml in a child


def test_library_exports_the_nvml_entry_points(fake_nvml_lib: Path) -> None:
    names = [
        "nvmlInit",
        "nvmlInit_v2",
        "nvmlInitWithFlags",
        "nvmlShutdown",
        "nvmlErrorString",
        "nvmlSystemGetDriverVersion",
        "nvmlSystemGetNVMLVersion",
        "nvmlDeviceGetCount_v2",
        "nvmlDeviceGetHandleByIndex_v2",
        "nvmlDeviceGetHandleByUUID",
        "nvmlDeviceGetIndex",
        "nvmlDeviceGetName",
        "nvmlDeviceGetUUID",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetClockInfo",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        "nvmlDeviceGetMigMode",
        "nvmlDeviceGetArchitecture",
        "nvmlDeviceGetPersistenceMode",
        "nvmlDeviceGetPowerManagementLimit",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetPowerManagementLimitConstraints",
        "nvmlDeviceGetC2cModeInfoV",
        "nvmlDeviceGetFieldValues",
        "nvmlDeviceGetTemperatureV",
        "nvmlDeviceSetPowerManagementLimit",
        "nvmlDeviceSetGpuLockedClocks",
        "nvmlDeviceResetGpuLockedClocks",
        "nvmlDeviceSetMemoryLockedClocks",
        "nvmlDeviceResetMemoryLockedClocks",
        "nvmlDeviceGetSupportedMemoryClocks",
        "nvmlDeviceGetSupportedGraphicsClocks",
    ]
    code = (
        "import ctypes, json\n"
        f"lib = ctypes.CDLL({str(fake_nvml_lib)!r})\n"
        f"print(json.dumps([s for s in {names!r} if not hasattr(lib, s)]))\n"
    )
    assert run_python(code, dict(os.environ)) == []


def test_two_devices_names_uuids_and_handle_by_uuid(fake_nvml_env) -> None:
    scenario = two_gpus()
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(n.nvmlDeviceGetCount())]
by_uuid = n.nvmlDeviceGetHandleByUUID(n.nvmlDeviceGetUUID(handles[1]))
print(json.dumps({
    "count": len(handles),
    "names": [n.nvmlDeviceGetName(h) for h in handles],
    "uuids": [n.nvmlDeviceGetUUID(h) for h in handles],
    "indices": [n.nvmlDeviceGetIndex(h) for h in handles],
    "arch": [n.nvmlDeviceGetArchitecture(h) for h in handles],
    "by_uuid_index": n.nvmlDeviceGetIndex(by_uuid),
    "unknown_uuid": err(lambda: n.nvmlDeviceGetHandleByUUID("GPU-nope")),
    "bad_index": err(lambda: n.nvmlDeviceGetHandleByIndex(2)),
    "driver": n.nvmlSystemGetDriverVersion(),
    "nvml": n.nvmlSystemGetNVMLVersion(),
}))
""",
        fake_nvml_env(scenario),
    )
    assert out["count"] == 2
    assert out["names"] == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]
    assert out["uuids"] == [scenario.uuid(0), scenario.uuid(1)]
    assert out["uuids"][1] == "GPU-fa4e0000-0000-0000-0000-000000000001"
    assert out["indices"] == [0, 1]
    assert out["arch"] == [ARCH_AMPERE, ARCH_HOPPER]
    assert out["by_uuid_index"] == 1
    assert out["unknown_uuid"] == "NVMLError_NotFound"
    assert out["bad_index"] == "NVMLError_InvalidArgument"
    assert (out["driver"], out["nvml"]) == ("550.54.15", "12.550.54.15")


def test_energy_counter_is_the_integral_of_power(fake_nvml_env) -> None:
    scenario = two_gpus()
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
def read():
    before = time.time()
    e, p = n.nvmlDeviceGetTotalEnergyConsumption(h), n.nvmlDeviceGetPowerUsage(h)
    return [before, time.time(), e, p]
a = read()
time.sleep(1.0)
b = read()
print(json.dumps({"a": a, "b": b}))
""",
        fake_nvml_env(scenario),
    )
    device, epoch = scenario.devices[0], scenario.start_epoch_s
    (a0, a1, ea, pa), (b0, b1, eb, pb) = out["a"], out["b"]
    # absolute counter = offset + integral since the epoch (monotonic, so bracketed)
    for t0, t1, counter in ((a0, a1, ea), (b0, b1, eb)):
        assert expected_counter_mj(device, t0, epoch) <= counter
        assert counter <= expected_counter_mj(device, t1, epoch)
        assert counter > device.energy_offset_mj
    # so the difference is the integral between the reads, bracketed by their calls (mJ)
    measured = (eb - ea) / 1000
    assert analytic_energy_j(device, a1, b0, epoch) - 0.001 <= measured
    assert measured <= analytic_energy_j(device, a0, b1, epoch) + 0.001
    assert analytic_energy_j(device, a1, b0, epoch) > 100
    # GetPowerUsage is the 1 s average by default (power_usage averaged)
    for t0, t1, power_mw in ((a0, a1, pa), (b0, b1, pb)):
        lo, hi = sorted((device.average_power_w(t0 - epoch), device.average_power_w(t1 - epoch)))
        assert lo - 0.01 <= power_mw / 1000 <= hi + 0.01


POWER_READINGS = """
n.nvmlInit()
epoch = EPOCH
while time.time() - epoch < 1.2:  # past the first second: every average is a full second
    time.sleep(0.05)
out = []
for i in range(n.nvmlDeviceGetCount()):
    h = n.nvmlDeviceGetHandleByIndex(i)
    before = time.time() - epoch
    usage = n.nvmlDeviceGetPowerUsage(h)
    fields = n.nvmlDeviceGetFieldValues(h, [
        (n.NVML_FI_DEV_POWER_INSTANT, n.NVML_POWER_SCOPE_GPU),
        (n.NVML_FI_DEV_POWER_AVERAGE, n.NVML_POWER_SCOPE_GPU),
    ])
    after = time.time() - epoch
    out.append({"t": [before, after], "usage": usage,
                "fields": [[f.nvmlReturn, f.value.uiVal] for f in fields]})
print(json.dumps(out))
"""


def test_power_usage_is_the_one_second_average_unless_instant(fake_nvml_env) -> None:
    ramp = [(0.0, 100.0), (1000.0, 10_100.0)]  # +10 W/s: the 1 s mean is P(t) - 5 W
    scenario = FakeScenario(
        devices=[
            FakeDevice(power_w=ramp),
            FakeDevice(power_w=ramp, power_usage=POWER_USAGE_INSTANT),
            FakeDevice(power_w=ramp, unsupported_fields=[NVML_FI_DEV_POWER_INSTANT]),
        ]
    )
    code = PRELUDE + POWER_READINGS.replace("EPOCH", repr(scenario.start_epoch_s))
    averaged, instant, no_field = run_python(code, fake_nvml_env(scenario))
    device, slope_w_per_s, rounding_w = scenario.devices[0], 10.0, 0.002

    def bracket(curve, reading) -> tuple[float, float]:
        """The reads happened within [t0, t1] and the ramp rises: its values there bound them."""
        t0, t1 = reading["t"]
        return curve(t0) - rounding_w, curve(t1) + rounding_w

    for reading in (averaged, instant, no_field):
        reading["expect"] = {
            "average": bracket(device.average_power_w, reading),
            "instant": bracket(device.power_at, reading),
        }
        reading["usage_w"] = reading["usage"] / 1000
        reading["slack_w"] = slope_w_per_s * (reading["t"][1] - reading["t"][0]) + rounding_w

    # averaged (the default): GetPowerUsage is field 185, 5 W below field 186
    lo, hi = averaged["expect"]["average"]
    assert lo <= averaged["usage_w"] <= hi
    (ok_instant, instant_mw), (ok_average, average_mw) = averaged["fields"]
    assert ok_instant == ok_average == 0  # NVML_SUCCESS
    assert instant_mw / 1000 - averaged["usage_w"] == pytest.approx(5.0, abs=averaged["slack_w"])
    assert average_mw / 1000 == pytest.approx(averaged["usage_w"], abs=averaged["slack_w"])

    # instant: GetPowerUsage is P(t), like field 186
    lo, hi = instant["expect"]["instant"]
    assert lo <= instant["usage_w"] <= hi
    assert instant["fields"][0][1] / 1000 == pytest.approx(
        instant["usage_w"], abs=instant["slack_w"]
    )

    # unsupported_field 186: the call succeeds, that entry says NOT_SUPPORTED, 185 still reads
    (ret_instant, _), (ret_average, average_mw) = no_field["fields"]
    assert (ret_instant, ret_average) == (NVML_ERROR_NOT_SUPPORTED, 0)
    lo, hi = no_field["expect"]["average"]
    assert lo <= average_mw / 1000 <= hi
    assert lo <= no_field["usage_w"] <= hi


def test_counter_is_quantised_to_its_update_period(fake_nvml_env) -> None:
    scenario = two_gpus(counter_period_s=0.1)
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
samples = []
for _ in range(40):
    before = time.time()
    e = n.nvmlDeviceGetTotalEnergyConsumption(h)
    samples.append([before, time.time(), e])
    time.sleep(0.013)
print(json.dumps(samples))
""",
        fake_nvml_env(scenario),
    )
    device, epoch = scenario.devices[0], scenario.start_epoch_s

    def expected(t: float) -> int:
        return expected_counter_mj(device, t, epoch, counter_period_s=0.1)

    for t0, t1, counter in out:
        assert counter in (expected(t0), expected(t1))
    values = [counter for _, _, counter in out]
    assert values == sorted(values)
    # reads surely inside one 100 ms period show one value; it moves every period (40 reads
    # 13 ms apart at least span five)
    period = {}
    for t0, t1, counter in out:
        if math.floor((t0 - epoch) / 0.1) == math.floor((t1 - epoch) / 0.1):
            period.setdefault(math.floor((t0 - epoch) / 0.1), set()).add(counter)
    assert all(len(seen) == 1 for seen in period.values())
    assert len(set(values)) >= 5


def test_device_without_counter_raises_not_supported(fake_nvml_env) -> None:
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(1)
print(json.dumps({
    "energy": err(lambda: n.nvmlDeviceGetTotalEnergyConsumption(h)),
    "power": n.nvmlDeviceGetPowerUsage(h),
}))
try:
    n.nvmlDeviceGetTotalEnergyConsumption(h)
except n.NVMLError_NotSupported as e:
    assert e.value == n.NVML_ERROR_NOT_SUPPORTED and str(e) == "Not Supported"
""",
        fake_nvml_env(two_gpus()),
    )
    assert out["energy"] == "NVMLError_NotSupported"
    assert out["power"] > 0


THROTTLED = """
def where(t0, t1):
    \"\"\"1: a read between t0 and t1 fell inside [k + 0.2, k + 0.6); 0: outside; None: either\"\"\"
    k = math.floor(t0)
    if t1 - k >= 1.2 or (t1 - k >= 0.2 and t0 - k < 0.6):
        return 1 if 0.2 <= t0 - k and t1 - k < 0.6 else None
    return 0
"""


def test_throttle_reasons_inside_the_intervals_only(fake_nvml_env) -> None:
    scenario = two_gpus()
    # 0.4 s throttled in every second, for longer than any child takes to start
    scenario.devices[0].throttle = [
        Throttle(k + 0.2, k + 0.6, SW_POWER_CAP | HW_THERMAL, 900) for k in range(600)
    ]
    out = run_python(
        PRELUDE
        + "import math\n"
        + THROTTLED
        + f"""
epoch = {scenario.start_epoch_s!r}
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
samples, seen = [], set()
while seen != {{0, 1}} and len(samples) < 2000:  # until both cases were surely read
    before = time.time() - epoch
    s = [before, 0.0,
         n.nvmlDeviceGetCurrentClocksEventReasons(h),
         n.nvmlDeviceGetCurrentClocksThrottleReasons(h),
         n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)]
    s[1] = time.time() - epoch
    samples.append(s)
    seen.add(where(s[0], s[1]))
    seen.discard(None)
    time.sleep(0.02)
print(json.dumps(samples))
""",
        fake_nvml_env(scenario),
    )
    namespace: dict = {"math": math}
    exec(THROTTLED, namespace)
    inside = [s for s in out if namespace["where"](s[0], s[1]) == 1]
    outside = [s for s in out if namespace["where"](s[0], s[1]) == 0]
    assert inside and outside
    for _, _, events, throttle, sm in inside:
        assert (events, throttle, sm) == (SW_POWER_CAP | HW_THERMAL, SW_POWER_CAP | HW_THERMAL, 900)
    for _, _, events, throttle, sm in outside:
        assert (events, throttle, sm) == (0, 0, 1410)


def test_injected_errors_surface_as_pynvml_exceptions(fake_nvml_env) -> None:
    scenario = two_gpus()
    scenario.devices[0].errors = [
        InjectedError("nvmlDeviceGetPowerUsage", NVML_ERROR_UNKNOWN),
        InjectedError("nvmlDeviceGetTemperature", NVML_ERROR_GPU_IS_LOST, -1e9, -1e9 + 1),  # past
    ]
    scenario.devices[1].errors = [
        InjectedError("nvmlDeviceGetClockInfo", NVML_ERROR_GPU_IS_LOST, -1e9, 1e9),  # now
    ]
    scenario.errors = [InjectedError("nvmlDeviceGetMigMode", NVML_ERROR_NOT_SUPPORTED)]
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
h0, h1 = n.nvmlDeviceGetHandleByIndex(0), n.nvmlDeviceGetHandleByIndex(1)
try:
    n.nvmlDeviceGetPowerUsage(h0)
except n.NVMLError as e:
    unknown = [type(e).__name__, e.value, str(e), isinstance(e, n.NVMLError_Unknown)]
print(json.dumps({
    "power0": unknown,
    "power1": err(lambda: n.nvmlDeviceGetPowerUsage(h1)),
    "temp0_past_window": err(lambda: n.nvmlDeviceGetTemperature(h0, 0)),
    "clock1_in_window": err(lambda: n.nvmlDeviceGetClockInfo(h1, n.NVML_CLOCK_SM)),
    "mig_global": [err(lambda: n.nvmlDeviceGetMigMode(h)) for h in (h0, h1)],
}))
""",
        fake_nvml_env(scenario),
    )
    assert out["power0"] == ["NVMLError_Unknown", 999, "Unknown Error", True]
    assert out["power1"] is None
    assert out["temp0_past_window"] is None
    assert out["clock1_in_window"] == "NVMLError_GpuIsLost"
    assert out["mig_global"] == ["NVMLError_NotSupported", "NVMLError_NotSupported"]


def test_init_fails_like_a_host_without_a_usable_driver(fake_nvml_env, tmp_path: Path) -> None:
    env = fake_nvml_env(two_gpus(errors=[InjectedError("nvmlInit", 9)]))
    code = PRELUDE + "print(json.dumps([err(n.nvmlInit), err(n.nvmlDeviceGetCount)]))"
    assert run_python(code, env) == ["NVMLError_DriverNotLoaded", "NVMLError_Uninitialized"]
    no_scenario = {k: v for k, v in env.items() if k != "FAKE_NVML_SCENARIO"}
    assert run_python(code, no_scenario)[0] == "NVMLError_DriverNotLoaded"

    bad = tmp_path / "bad.txt"
    bad.write_text("fake_nvml_scenario 1\ndevice\npowr 0 100\n")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "FAKE_NVML_SCENARIO": str(bad)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout)[0] == "NVMLError_Unknown"
    assert f"fake_nvml: {bad}:3: unknown device keyword 'powr'" in proc.stderr


def test_modes_and_telemetry_read_back(fake_nvml_env) -> None:
    scenario = two_gpus()
    scenario.devices[0] = FakeDevice(
        mig_mode=1,
        mig_pending_mode=0,
        persistence_mode=True,
        temperature_c=[(-100.0, 30.0), (100.0, 80.0)],  # 55 C at t = 0, +0.25 C/s
        sm_clock_mhz=1980,
        mem_clock_mhz=2619,
        memory_total_bytes=80 * 2**30,
        memory_used_bytes=3 * 2**30,
        memory_reserved_bytes=2**29,
        gpu_utilization_pct=97,
        memory_utilization_pct=41,
        power_limit_mw=350_000,
        power_limit_min_mw=200_000,
        power_limit_max_mw=700_000,
        default_power_limit_mw=700_000,
        enforced_power_limit_mw=300_000,
    )
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
h0, h1 = n.nvmlDeviceGetHandleByIndex(0), n.nvmlDeviceGetHandleByIndex(1)
m1, m2 = n.nvmlDeviceGetMemoryInfo(h0), n.nvmlDeviceGetMemoryInfo(h0, n.nvmlMemory_v2)
u = n.nvmlDeviceGetUtilizationRates(h0)
print(json.dumps({
    "mig": [n.nvmlDeviceGetMigMode(h0), n.nvmlDeviceGetMigMode(h1)],
    "persistence": [n.nvmlDeviceGetPersistenceMode(h0), n.nvmlDeviceGetPersistenceMode(h1)],
    "t": [time.time(),
          n.nvmlDeviceGetTemperature(h0, n.NVML_TEMPERATURE_GPU),
          n.nvmlDeviceGetTemperatureV(h0, n.NVML_TEMPERATURE_GPU),
          time.time()],
    "clocks": [n.nvmlDeviceGetClockInfo(h0, c) for c in (n.NVML_CLOCK_SM, n.NVML_CLOCK_MEM)],
    "video_clock": err(lambda: n.nvmlDeviceGetClockInfo(h0, n.NVML_CLOCK_VIDEO)),
    "mem_v1": [m1.total, m1.used, m1.free],
    "mem_v2": [m2.total, m2.reserved, m2.used, m2.free],
    "util": [u.gpu, u.memory],
    "limits": [n.nvmlDeviceGetPowerManagementLimit(h0),
               n.nvmlDeviceGetPowerManagementLimitConstraints(h0),
               n.nvmlDeviceGetPowerManagementDefaultLimit(h0),
               n.nvmlDeviceGetEnforcedPowerLimit(h0)],
    "c2c": err(lambda: n.nvmlDeviceGetC2cModeInfoV(h0)),
    "procs": n.nvmlDeviceGetComputeRunningProcesses(h0),
    "cuda": n.nvmlSystemGetCudaDriverVersion(),
}))
""",
        fake_nvml_env(scenario),
    )
    assert out["mig"] == [[1, 0], [0, 0]]
    assert out["persistence"] == [1, 0]
    t0, temperature, temperature_v, t1 = out["t"]
    epoch = scenario.start_epoch_s
    # 55 C at the epoch, +0.25 C/s, rounded: between its values when the calls began and ended
    low, high = (math.floor(55.0 + 0.25 * (t - epoch) + 0.5) for t in (t0, t1))
    assert low <= temperature <= temperature_v <= high
    assert out["clocks"] == [1980, 2619]
    assert out["video_clock"] == "NVMLError_NotSupported"
    gib = 2**30
    assert out["mem_v1"] == [80 * gib, 3 * gib, 77 * gib]
    assert out["mem_v2"] == [80 * gib, gib // 2, 3 * gib, 77 * gib - gib // 2]
    assert out["util"] == [97, 41]
    assert out["limits"] == [350_000, [200_000, 700_000], 700_000, 300_000]
    assert out["c2c"] == "NVMLError_NotSupported"
    assert out["procs"] == []
    assert out["cuda"] == 12040


def test_calls_outside_init_and_with_bad_handles(fake_nvml_env) -> None:
    out = run_python(
        PRELUDE
        + """
before = err(n.nvmlDeviceGetCount)
n.nvmlInit()
n.nvmlInit()  # reference counted like the real NVML
h = n.nvmlDeviceGetHandleByIndex(0)
null = n.c_nvmlDevice_t()
bogus = n.c_nvmlDevice_t.from_buffer_copy(bytes(range(8)))
result = {
    "before": before,
    "null_handle": err(lambda: n.nvmlDeviceGetPowerUsage(null)),
    "bogus_handle": err(lambda: n.nvmlDeviceGetName(bogus)),
    "bad_sensor": err(lambda: n.nvmlDeviceGetTemperature(h, 7)),
}
n.nvmlShutdown()
result["after_one_shutdown"] = err(lambda: n.nvmlDeviceGetPowerUsage(h))
n.nvmlShutdown()
result["after_last_shutdown"] = err(lambda: n.nvmlDeviceGetPowerUsage(h))
result["extra_shutdown"] = err(n.nvmlShutdown)
print(json.dumps(result))
""",
        fake_nvml_env(two_gpus()),
    )
    assert out == {
        "before": "NVMLError_Uninitialized",
        "null_handle": "NVMLError_InvalidArgument",
        "bogus_handle": "NVMLError_InvalidArgument",
        "bad_sensor": "NVMLError_InvalidArgument",
        "after_one_shutdown": None,
        "after_last_shutdown": "NVMLError_Uninitialized",
        "extra_shutdown": "NVMLError_Uninitialized",
    }


def test_activate_preloads_the_fake_and_init_rereads_the_scenario(
    fake_nvml_lib: Path, tmp_path: Path
) -> None:
    first = write_scenario(tmp_path / "first.txt", two_gpus())
    second = write_scenario(
        tmp_path / "second.txt", FakeScenario(devices=[FakeDevice(name="Tesla T4", power_w=70)])
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "FAKE_NVML_SCENARIO")
    }
    out = run_python(
        PRELUDE
        + f"""
import os
from tests.fakes.nvml import activate
activate({str(fake_nvml_lib)!r}, {str(first)!r})
n.nvmlInit()
h1 = n.nvmlDeviceGetHandleByIndex(1)
one = [n.nvmlDeviceGetCount(), n.nvmlDeviceGetName(h1)]
n.nvmlShutdown()
os.environ["FAKE_NVML_SCENARIO"] = {str(second)!r}
n.nvmlInit()
two = [n.nvmlDeviceGetCount(),
       n.nvmlDeviceGetName(n.nvmlDeviceGetHandleByIndex(0)),
       err(lambda: n.nvmlDeviceGetName(h1))]
print(json.dumps({{"one": one, "two": two, "lib": n.nvmlLib._name}}))
""",
        env,
    )
    assert out["one"] == [2, "NVIDIA H100 80GB HBM3"]
    assert out["two"] == [1, "Tesla T4", "NVMLError_InvalidArgument"]  # stale handle
    assert out["lib"] == "libnvidia-ml.so.1"


# --------------------------------------------------------------------- Zeus

ZEUS_SKIP = pytest.mark.skipif(
    importlib.util.find_spec("zeus") is None, reason="zeus is not installed (pip install zeus)"
)

# ZeusMonitor needs: no CUDA_VISIBLE_DEVICES / ZEUSD_* (subprocess_env drops them),
# cpu_indices=[] (no RAPL here), and sync_execution=False: with a CPU-only torch installed,
# Zeus's torch.cuda.synchronize path raises "PyTorch is available but does not have CUDA
# support".
ZEUS_CHILD = """
import json, sys, time

def main():
    from zeus.monitor import ZeusMonitor
    monitor = ZeusMonitor(gpu_indices=[0, 1], cpu_indices=[])
    time.sleep(WARMUP)
    t0 = time.time()
    monitor.begin_window("w", sync_execution=False)
    begun = time.time()
    time.sleep(1.0)
    ending = time.time()
    result = monitor.end_window("w", sync_execution=False)
    t1 = time.time()
    print(json.dumps({"t": [t0, begun, ending, t1], "time": result.time,
                      "energy": {str(k): v for k, v in result.gpu_energy.items()},
                      "power_monitor": monitor.power_monitor is not None}))

if __name__ == "__main__":
    main()
"""


@ZEUS_SKIP
def test_zeus_monitor_reads_the_fake(fake_nvml_env) -> None:
    scenario = two_gpus()
    scenario.devices[1].energy_counter = True  # Zeus trusts the counter from Volta on
    env = fake_nvml_env(scenario)
    out = run_python(ZEUS_CHILD.replace("WARMUP", "0.0"), env, timeout=120)
    assert out["power_monitor"] is False  # both GPUs are >= Volta: counters only
    # Zeus reads its clock and the counters inside begin_window and end_window
    t0, begun, ending, t1 = out["t"]
    assert 1.0 <= ending - begun <= out["time"] <= t1 - t0
    for index in (0, 1):
        lo_j = scenario.energy_j(index, begun, ending) - 0.001
        assert lo_j <= out["energy"][str(index)] <= scenario.energy_j(index, t0, t1) + 0.001


def test_subprocess_env_points_the_loader_at_the_fake(tmp_path: Path) -> None:
    lib = tmp_path / "lib" / "libnvidia-ml.so.1"
    base = {
        "LD_LIBRARY_PATH": "/opt/x",
        "CUDA_VISIBLE_DEVICES": "3",
        "PATH": "/bin",
        "FAKE_NVML_STATE": "/elsewhere",
    }
    env = subprocess_env(lib, tmp_path / "s.txt", base)
    assert env["LD_LIBRARY_PATH"] == f"{tmp_path / 'lib'}:/opt/x"
    assert env["FAKE_NVML_SCENARIO"] == str(tmp_path / "s.txt")
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert "FAKE_NVML_STATE" not in env  # explicit: settings per process unless asked
    env = subprocess_env(lib, tmp_path / "s.txt", base, state_path=tmp_path / "state.txt")
    assert env["FAKE_NVML_STATE"] == str(tmp_path / "state.txt")


# ------------------------------------------------- power limit and clock control


def test_capped_energy_is_the_integral_of_min_power_and_limit() -> None:
    ramp = FakeDevice(power_w=[(0.0, 100.0), (4.0, 500.0)])  # +100 W/s
    # the default enforced limit (400 W) caps from t = 3: 300 + 450 + 400
    assert ramp.energy_j(4.0) == pytest.approx(1150.0)
    # a 300 W limit caps from t = 2: 200 + 200 + 2 * 300
    assert ramp.energy_j(4.0, power_limit_mw=300_000) == pytest.approx(1000.0)
    assert ramp.energy_j(1.0, power_limit_mw=300_000) == pytest.approx(150.0)  # below the cap
    falling = FakeDevice(power_w=[(0.0, 400.0), (2.0, 0.0)], power_limit_mw=300_000)
    # capped at 300 W until t = 0.5, then below: 150 + 0.5 * 300 * 1.5
    assert falling.energy_j(2.0) == pytest.approx(150.0 + 225.0)
    step = FakeDevice(power_w=[(1.0, 100.0), (1.0, 500.0)], enforced_power_limit_mw=250_000)
    assert step.energy_j(3.0) == pytest.approx(100.0 + 2 * 250.0)  # a step above the cap
    assert step.power_at(2.0) == 250.0 and step.scripted_power_w(2.0) == 500.0
    assert step.power_capped(2.0) and not step.power_capped(0.5)
    assert step.average_power_w(1.5) == pytest.approx(0.5 * 100.0 + 0.5 * 250.0)
    assert step.power_usage_w(5.0, power_limit_mw=400_000) == pytest.approx(400.0)
    epoch = 100.0
    assert analytic_energy_j(ramp, epoch + 1, epoch + 4, epoch, 300_000) == pytest.approx(850.0)
    assert expected_counter_mj(ramp, epoch + 4, epoch, power_limit_mw=300_000) == 1_000_000
    scenario = FakeScenario(devices=[ramp], start_epoch_s=epoch)
    assert scenario.energy_j(0, epoch, epoch + 4, power_limit_mw=300_000) == pytest.approx(1000.0)


def test_state_files_round_trip(tmp_path: Path) -> None:
    path = write_state(
        tmp_path / "state.txt",
        {
            1: {"power_limit_mw": 250_000, "sm_locked": None, "mem_locked": [405, 1215]},
            0: {"sm_locked": (900, 1200), "limit_since_epoch_s": 12.5, "energy_at_since_j": 3.25},
        },
        start_epoch_s=10.0,
    )
    text = path.read_text()
    assert "fake_nvml_state 1\nstart_epoch_s 10.0\n" in text
    assert "device 0 sm_locked 900 1200 limit_since_epoch_s 12.5 energy_at_since_j 3.25\n" in text
    assert "device 1 power_limit_mw 250000 sm_locked none mem_locked 405 1215\n" in text
    assert read_state(path) == {
        0: {"sm_locked": (900, 1200), "limit_since_epoch_s": 12.5, "energy_at_since_j": 3.25},
        1: {"power_limit_mw": 250_000, "sm_locked": None, "mem_locked": (405, 1215)},
    }
    assert read_state(tmp_path / "missing.txt") == {}
    with pytest.raises(ValueError, match="unknown state keys"):
        write_state(tmp_path / "bad.txt", {0: {"power_limit_w": 300}})
    with pytest.raises(ValueError, match="min <= max"):
        FakeDevice(sm_locked_mhz=(1400, 1000)).lines()
    lines = FakeDevice(settable=False, supported_memory_clocks_mhz=[2619, 810]).lines()
    assert "settable 0" in lines
    assert "supported_memory_clocks 2619 810" in lines
    assert f"supported_graphics_clocks {' '.join(map(str, DEFAULT_GRAPHICS_CLOCKS_MHZ))}" in lines
    assert not any(line.startswith(("sm_locked", "mem_locked")) for line in lines)


def control_gpus() -> FakeScenario:
    """A settable A100 drawing a constant 350 W (under its 400 W limit) and one that is not."""
    return FakeScenario(
        devices=[
            FakeDevice(power_w=350.0, power_limit_min_mw=150_000, power_limit_max_mw=400_000),
            FakeDevice(settable=False),
        ]
    )


def test_power_limit_set_get_and_field_values(fake_nvml_env) -> None:
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
h, locked = n.nvmlDeviceGetHandleByIndex(0), n.nvmlDeviceGetHandleByIndex(1)
LIMIT_FIELDS = [(f, 0) for f in (187, 188, 189, 190)]

def limits(handle):
    return [n.nvmlDeviceGetPowerManagementLimit(handle),
            n.nvmlDeviceGetEnforcedPowerLimit(handle),
            n.nvmlDeviceGetPowerManagementLimitConstraints(handle),
            n.nvmlDeviceGetPowerManagementDefaultLimit(handle),
            [f.value.uiVal for f in n.nvmlDeviceGetFieldValues(handle, LIMIT_FIELDS)]]

before = limits(h)
set_ok = n.nvmlDeviceSetPowerManagementLimit(h, 250000)
after = limits(h)
errors = {
    "below_min": err(lambda: n.nvmlDeviceSetPowerManagementLimit(h, 149999)),
    "above_max": err(lambda: n.nvmlDeviceSetPowerManagementLimit(h, 400001)),
    "not_settable": [
        err(lambda: n.nvmlDeviceSetPowerManagementLimit(locked, 300000)),
        err(lambda: n.nvmlDeviceSetGpuLockedClocks(locked, 900, 1200)),
        err(lambda: n.nvmlDeviceResetGpuLockedClocks(locked)),
        err(lambda: n.nvmlDeviceSetMemoryLockedClocks(locked, 405, 1215)),
        err(lambda: n.nvmlDeviceResetMemoryLockedClocks(locked)),
    ],
}
after_errors = limits(h)
edges = [err(lambda: n.nvmlDeviceSetPowerManagementLimit(h, v)) for v in (150000, 400000)]
print(json.dumps({"before": before, "set": set_ok, "after": after, "errors": errors,
                  "after_errors": after_errors, "locked": limits(locked), "edges": edges}))
""",
        fake_nvml_env(control_gpus()),
    )
    assert out["before"] == [
        400_000,
        400_000,
        [150_000, 400_000],
        400_000,
        [150_000, 400_000, 400_000, 400_000],
    ]
    assert out["set"] is None  # pynvml's setter returns None
    assert out["after"] == [
        250_000,
        250_000,
        [150_000, 400_000],
        400_000,  # the default limit does not move
        [150_000, 400_000, 400_000, 250_000],
    ]
    assert out["errors"] == {
        "below_min": "NVMLError_InvalidArgument",
        "above_max": "NVMLError_InvalidArgument",
        "not_settable": ["NVMLError_NoPermission"] * 5,
    }
    assert out["after_errors"] == out["after"]  # a refused call changes nothing
    assert out["locked"][:2] == [400_000, 400_000]
    assert out["edges"] == [None, None]  # MIN and MAX themselves are accepted


def test_locked_clocks_clamp_the_clock_readings_until_reset(fake_nvml_env) -> None:
    scenario = control_gpus()
    scenario.devices.append(FakeDevice(sm_clock_mhz=1005, sm_locked_mhz=(1100, 1300)))
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
h, slow = n.nvmlDeviceGetHandleByIndex(0), n.nvmlDeviceGetHandleByIndex(2)
def clocks(handle):
    return [n.nvmlDeviceGetClockInfo(handle, c)
            for c in (n.NVML_CLOCK_SM, n.NVML_CLOCK_GRAPHICS, n.NVML_CLOCK_MEM)]
steps = {"start": clocks(h), "slow_start": clocks(slow)}
n.nvmlDeviceSetGpuLockedClocks(h, 900, 1200)
steps["sm_900_1200"] = clocks(h)
n.nvmlDeviceSetGpuLockedClocks(h, 1300, 1410)
steps["sm_1300_1410"] = clocks(h)
n.nvmlDeviceSetMemoryLockedClocks(h, 405, 1215)
steps["mem_405_1215"] = clocks(h)
steps["refused"] = [
    err(lambda: n.nvmlDeviceSetGpuLockedClocks(h, 1200, 900)),    # min > max
    err(lambda: n.nvmlDeviceSetGpuLockedClocks(h, 195, 1200)),    # below the lowest
    err(lambda: n.nvmlDeviceSetGpuLockedClocks(h, 900, 1425)),    # above the highest
    err(lambda: n.nvmlDeviceSetMemoryLockedClocks(h, 1215, 405)),
    err(lambda: n.nvmlDeviceSetMemoryLockedClocks(h, 405, 1600)),
    err(lambda: n.nvmlDeviceSetGpuLockedClocks(h, 900, n.NVML_CLOCK_LIMIT_ID_TDP)),
]
steps["after_refused"] = clocks(h)
n.nvmlDeviceSetGpuLockedClocks(slow, 1200, 1200)
steps["slow_1200"] = clocks(slow)
n.nvmlDeviceResetGpuLockedClocks(h)
steps["sm_reset"] = clocks(h)
n.nvmlDeviceResetMemoryLockedClocks(h)
n.nvmlDeviceResetMemoryLockedClocks(h)  # resetting what is not locked succeeds
steps["mem_reset"] = clocks(h)
n.nvmlDeviceResetGpuLockedClocks(slow)
steps["slow_reset"] = clocks(slow)
print(json.dumps(steps))
""",
        fake_nvml_env(scenario),
    )
    assert out["start"] == [1410, 1410, 1593]
    assert out["slow_start"] == [1100, 1100, 1593]  # scripted 1005 MHz clamped up to the lock
    assert out["sm_900_1200"] == [1200, 1200, 1593]
    assert out["sm_1300_1410"] == [1410, 1410, 1593]
    assert out["mem_405_1215"] == [1410, 1410, 1215]
    assert out["refused"] == ["NVMLError_InvalidArgument"] * 6
    assert out["after_refused"] == out["mem_405_1215"]
    assert out["slow_1200"] == [1200, 1200, 1593]
    assert out["sm_reset"] == [1410, 1410, 1215]
    assert out["mem_reset"] == [1410, 1410, 1593]
    assert out["slow_reset"] == [1005, 1005, 1593]


def test_supported_clocks_lists_and_the_insufficient_size_protocol(fake_nvml_env) -> None:
    scenario = control_gpus()
    scenario.devices[1] = FakeDevice(
        supported_memory_clocks_mhz=[2619, 810],
        supported_graphics_clocks_mhz=[1980, 1500, 1005],
    )
    out = run_python(
        PRELUDE
        + """
from ctypes import byref, c_uint
n.nvmlInit()
h0, h1 = n.nvmlDeviceGetHandleByIndex(0), n.nvmlDeviceGetHandleByIndex(1)
mem_fn = n._nvmlGetFunctionPointer("nvmlDeviceGetSupportedMemoryClocks")
gfx_fn = n._nvmlGetFunctionPointer("nvmlDeviceGetSupportedGraphicsClocks")

def raw(call, room, with_buffer=True):
    count = c_uint(room)
    buf = (c_uint * max(room, 1))()
    ret = call(byref(count), buf if with_buffer else None)
    return [ret, count.value, list(buf)[:count.value] if ret == 0 else []]

print(json.dumps({
    "mem0": n.nvmlDeviceGetSupportedMemoryClocks(h0),
    "gfx0": [n.nvmlDeviceGetSupportedGraphicsClocks(h0, m) for m in (1593, 1215, 405)],
    "mem1": n.nvmlDeviceGetSupportedMemoryClocks(h1),
    "gfx1": n.nvmlDeviceGetSupportedGraphicsClocks(h1, 810),
    "unknown_mem": err(lambda: n.nvmlDeviceGetSupportedGraphicsClocks(h1, 1593)),
    "mem_raw": [raw(lambda c, b: mem_fn(h1, c, b), 0, with_buffer=False),
                raw(lambda c, b: mem_fn(h1, c, b), 1),
                raw(lambda c, b: mem_fn(h1, c, b), 2),
                raw(lambda c, b: mem_fn(h1, c, b), 5)],
    "gfx_raw": [raw(lambda c, b: gfx_fn(h1, c_uint(2619), c, b), 0, with_buffer=False),
                raw(lambda c, b: gfx_fn(h1, c_uint(2619), c, b), 3),
                raw(lambda c, b: gfx_fn(h1, c_uint(7), c, b), 3)],
    "lock_range": [err(lambda: n.nvmlDeviceSetGpuLockedClocks(h1, 1005, 1980)),
                   err(lambda: n.nvmlDeviceSetGpuLockedClocks(h1, 1000, 1980)),
                   err(lambda: n.nvmlDeviceSetMemoryLockedClocks(h1, 810, 2619)),
                   err(lambda: n.nvmlDeviceSetMemoryLockedClocks(h1, 810, 2620))],
}))
""",
        fake_nvml_env(scenario),
    )
    assert out["mem0"] == list(DEFAULT_MEMORY_CLOCKS_MHZ) == [1593, 1215, 405]
    assert out["gfx0"] == [list(DEFAULT_GRAPHICS_CLOCKS_MHZ)] * 3
    assert out["gfx0"][0][:3] == [1410, 1395, 1380] and out["gfx0"][0][-1] == 210
    assert len(out["gfx0"][0]) == 81
    assert out["mem1"] == [2619, 810]
    assert out["gfx1"] == [1980, 1500, 1005]
    assert out["unknown_mem"] == "NVMLError_NotFound"  # nvml.h: not a supported frequency
    small = NVML_ERROR_INSUFFICIENT_SIZE
    assert out["mem_raw"] == [
        [small, 2, []],
        [small, 2, []],
        [0, 2, [2619, 810]],
        [0, 2, [2619, 810]],
    ]
    assert out["gfx_raw"] == [[small, 3, []], [0, 3, [1980, 1500, 1005]], [6, 3, []]]
    assert out["lock_range"] == [
        None,
        "NVMLError_InvalidArgument",
        None,
        "NVMLError_InvalidArgument",
    ]


def test_power_cap_limits_power_and_energy_and_reports_sw_power_cap(fake_nvml_env) -> None:
    scenario = control_gpus()
    scenario.start_epoch_s = time.time() - 5.0  # every 1 s average is a full second
    out = run_python(
        PRELUDE
        + """
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
INSTANT = [(n.NVML_FI_DEV_POWER_INSTANT, 0), (n.NVML_FI_DEV_POWER_AVERAGE, 0)]
def snap():
    t0 = time.time()
    fields = n.nvmlDeviceGetFieldValues(h, INSTANT)
    return {"t0": t0, "usage": n.nvmlDeviceGetPowerUsage(h),
            "instant": fields[0].value.uiVal, "average": fields[1].value.uiVal,
            "reasons": n.nvmlDeviceGetCurrentClocksEventReasons(h),
            "throttle": n.nvmlDeviceGetCurrentClocksThrottleReasons(h),
            "energy": n.nvmlDeviceGetTotalEnergyConsumption(h), "t": time.time()}
out = {"free": snap()}
n.nvmlDeviceSetPowerManagementLimit(h, 250000)
out["capped"] = snap()
time.sleep(0.5)
out["capped_later"] = snap()
time.sleep(0.7)
out["capped_settled"] = snap()
n.nvmlDeviceSetPowerManagementLimit(h, 400000)
out["restored"] = snap()
print(json.dumps(out))
""",
        fake_nvml_env(scenario),
    )
    free, capped, later, settled, restored = (
        out[k] for k in ("free", "capped", "capped_later", "capped_settled", "restored")
    )
    assert (free["usage"], free["instant"], free["reasons"]) == (350_000, 350_000, 0)
    # the cap binds at once for the instant reading and the event reasons ...
    assert capped["instant"] == 250_000
    assert capped["reasons"] == capped["throttle"] == CLOCKS_EVENT_SW_POWER_CAP
    # ... the 1 s average follows within a second (100 W/s: the set came after free["t"]) ...
    since_set_s = capped["t"] - free["t"]
    assert max(250_000, 350_000 - 100_000 * since_set_s) - 1 <= capped["usage"] <= 350_000
    assert settled["usage"] == settled["average"] == 250_000
    # ... and the counter integrates 250 W, continuous across the change
    assert free["energy"] <= capped["energy"] <= later["energy"]
    delta_j = (later["energy"] - capped["energy"]) / 1000
    assert 250.0 * (later["t0"] - capped["t"]) - 0.001 <= delta_j
    assert delta_j <= 250.0 * (later["t"] - capped["t0"]) + 0.001
    assert (restored["instant"], restored["reasons"]) == (350_000, 0)


def test_capped_counter_matches_the_analytic_integral(fake_nvml_env) -> None:
    # 200 W -> 400 W over 2 s under a 300 W enforced limit: the cap binds from t = 1 s
    scenario = FakeScenario(
        devices=[FakeDevice(power_w=[(0.0, 200.0), (2.0, 400.0)], power_limit_mw=300_000)]
    )
    code = (
        PRELUDE
        + f"""
epoch = {scenario.start_epoch_s!r}
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
def read(at):
    while time.time() - epoch < at:
        time.sleep(0.01)
    before = time.time()
    e = n.nvmlDeviceGetTotalEnergyConsumption(h)
    return [before, time.time(), e, n.nvmlDeviceGetCurrentClocksEventReasons(h)]
print(json.dumps([read(0.7), read(1.5)]))
"""
    )
    (a0, a1, ea, ra), (b0, b1, eb, rb) = run_python(code, fake_nvml_env(scenario))
    device, epoch = scenario.devices[0], scenario.start_epoch_s
    for t0, t1, counter in ((a0, a1, ea), (b0, b1, eb)):
        assert expected_counter_mj(device, t0, epoch) <= counter
        assert counter <= expected_counter_mj(device, t1, epoch)
    # the difference is the capped integral between the reads, bracketed by their calls
    assert analytic_energy_j(device, a1, b0, epoch) - 0.001 <= (eb - ea) / 1000
    assert (eb - ea) / 1000 <= analytic_energy_j(device, a0, b1, epoch) + 0.001
    uncapped = analytic_energy_j(device, a1, b0, epoch, 10**9)
    assert uncapped > analytic_energy_j(device, a1, b0, epoch) * 1.02  # the cap shows
    # the cap binds from t = 1 s: the reasons say so for a read surely on either side
    for t0, t1, reasons in ((a0, a1, ra), (b0, b1, rb)):
        capped = {device.power_capped(t - epoch) for t in (t0, t1)}
        assert reasons in {CLOCKS_EVENT_SW_POWER_CAP if c else 0 for c in capped}
    assert rb == CLOCKS_EVENT_SW_POWER_CAP  # read at t >= 1.5 s


SET_AND_READ = """
n.nvmlInit()
h = n.nvmlDeviceGetHandleByIndex(0)
def read():
    return {"t0": time.time(), "limit": n.nvmlDeviceGetPowerManagementLimit(h),
            "enforced": n.nvmlDeviceGetEnforcedPowerLimit(h),
            "clocks": [n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
                       n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)],
            "reasons": n.nvmlDeviceGetCurrentClocksEventReasons(h),
            "energy": n.nvmlDeviceGetTotalEnergyConsumption(h), "t": time.time()}
out = {"start": read()}
ACTIONS
out["end"] = read()
print(json.dumps(out))
"""


def child(actions: str) -> str:
    return PRELUDE + SET_AND_READ.replace("ACTIONS", actions)


def test_state_file_persists_settings_from_one_process_to_the_next(
    fake_nvml_env, fake_nvml_state: Path
) -> None:
    env = fake_nvml_env(control_gpus())
    assert not fake_nvml_state.exists()  # nothing set yet
    first = run_python(
        child(
            "n.nvmlDeviceSetPowerManagementLimit(h, 275000)\n"
            "n.nvmlDeviceSetGpuLockedClocks(h, 1000, 1200)\n"
            "n.nvmlDeviceSetMemoryLockedClocks(h, 405, 1215)\n"
        ),
        env,
    )
    state = read_state(fake_nvml_state)
    assert state[0]["power_limit_mw"] == state[0]["enforced_power_limit_mw"] == 275_000
    assert (state[0]["sm_locked"], state[0]["mem_locked"]) == ((1000, 1200), (405, 1215))
    assert first["start"]["t"] <= state[0]["limit_since_epoch_s"] <= first["end"]["t"]
    assert state[0]["energy_at_since_j"] > 0
    assert state[1] == {
        "power_limit_mw": 400_000,
        "enforced_power_limit_mw": 400_000,
        "sm_locked": None,
        "mem_locked": None,
    }
    assert first["end"]["clocks"] == [1200, 1215]

    second = run_python(
        child(
            "n.nvmlDeviceResetGpuLockedClocks(h)\n"
            "n.nvmlDeviceResetMemoryLockedClocks(h)\n"
            "n.nvmlDeviceSetPowerManagementLimit(h, 400000)\n"
        ),
        env,
    )
    start = second["start"]
    assert (start["limit"], start["enforced"], start["clocks"]) == (275_000, 275_000, [1200, 1215])
    assert start["reasons"] == CLOCKS_EVENT_SW_POWER_CAP  # 350 W scripted, 275 W enforced
    # one counter across processes: it kept integrating the capped 275 W in between
    gap_j = (start["energy"] - first["end"]["energy"]) / 1000
    assert 275.0 * (start["t0"] - first["end"]["t"]) - 0.001 <= gap_j
    assert gap_j <= 275.0 * (start["t"] - first["end"]["t0"]) + 0.001
    state = read_state(fake_nvml_state)[0]
    since_s, since_j = state.pop("limit_since_epoch_s"), state.pop("energy_at_since_j")
    assert state == {
        "power_limit_mw": 400_000,
        "enforced_power_limit_mw": 400_000,
        "sm_locked": None,
        "mem_locked": None,
    }
    # the limit was set between the two reads, and the counter read before and after it
    assert start["t"] <= since_s <= second["end"]["t"]
    assert start["energy"] / 1000 <= since_j <= second["end"]["energy"] / 1000 + 0.001

    third = run_python(child(""), env)["start"]
    assert (third["limit"], third["clocks"], third["reasons"]) == (400_000, [1410, 1593], 0)
    assert third["energy"] >= second["end"]["energy"]


def test_without_a_state_file_settings_are_per_process(fake_nvml_env) -> None:
    env = fake_nvml_env(control_gpus(), state=False)
    assert "FAKE_NVML_STATE" not in env
    out = run_python(
        child(
            "n.nvmlDeviceSetPowerManagementLimit(h, 300000)\n"
            "n.nvmlDeviceSetGpuLockedClocks(h, 900, 900)\n"
            "n.nvmlShutdown()\n"
            "n.nvmlInit()  # the scenario is re-read, the driver keeps the settings\n"
            "n.nvmlInit()  # a nested init (a meter inside GpuControl) too\n"
        ),
        env,
    )
    assert (out["end"]["limit"], out["end"]["clocks"]) == (300_000, [900, 1593])
    assert out["end"]["energy"] >= out["start"]["energy"]
    fresh = run_python(child(""), env)["start"]
    assert (fresh["limit"], fresh["clocks"]) == (400_000, [1410, 1593])


def test_a_seeded_state_applies_at_init_and_rewrites_reach_running_processes(
    fake_nvml_env, fake_nvml_state: Path
) -> None:
    scenario = control_gpus()
    env = fake_nvml_env(scenario)
    # a GPU an earlier run left capped and locked (no limit_since: the limit holds for all t)
    write_state(fake_nvml_state, {0: {"power_limit_mw": 200_000, "sm_locked": (600, 900)}})
    out = run_python(
        child(
            "import os, subprocess, sys\n"
            "setter = 'import pynvml as n; n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex(0); "
            "n.nvmlDeviceSetPowerManagementLimit(h, 222000); n.nvmlDeviceResetGpuLockedClocks(h)'\n"
            "subprocess.run([sys.executable, '-c', setter], env=os.environ, check=True)\n"
        ),
        env,
    )
    start, end = out["start"], out["end"]
    assert (start["limit"], start["enforced"], start["clocks"]) == (200_000, 200_000, [900, 1593])
    assert start["reasons"] == CLOCKS_EVENT_SW_POWER_CAP
    device, epoch = scenario.devices[0], scenario.start_epoch_s
    assert start["energy"] <= expected_counter_mj(device, start["t"], epoch, power_limit_mw=200_000)
    assert start["energy"] >= expected_counter_mj(
        device, start["t0"], epoch, power_limit_mw=200_000
    )
    # another process changed the GPU while this one ran: the next call sees it
    assert (end["limit"], end["enforced"], end["clocks"]) == (222_000, 222_000, [1410, 1593])
    assert end["energy"] >= start["energy"]


def test_a_malformed_state_file_fails_init_loudly(fake_nvml_env, fake_nvml_state: Path) -> None:
    env = fake_nvml_env(control_gpus())
    fake_nvml_state.write_text("fake_nvml_state 1\ndevice 0 power_limit_watts 300\n")
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + "print(json.dumps(err(n.nvmlInit)))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(proc.stdout) == "NVMLError_Unknown"
    assert f"fake_nvml: {fake_nvml_state}:2: unknown state key 'power_limit_watts'" in proc.stderr

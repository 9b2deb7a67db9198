"""The NVML meter against the fake libnvidia-ml.so.1, loaded by the real pynvml.

Every NVML test runs in a child process: once loaded, the fake cannot be unloaded, and the
rest of the suite must keep seeing this host as it is (no NVIDIA driver).
"""

from __future__ import annotations

import bisect
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest

from llenergymeasure.config import plan_campaign
from tests.fakes.nvml import FakeDevice, FakeScenario, Throttle, run_python
from tests.llem import llem_run

pytest_plugins = ["tests.fakes.nvml.fixtures"]
REPO = Path(__file__).parents[2]

HW_THERMAL = 0x40
GPU_IDLE = 0x1  # not a slowdown: must not count as throttling
HORIZON_S = 900  # the scripts run this long: past any run here (llem_run stops at 600 s)
THROTTLES = [Throttle(s, s + 2.0, HW_THERMAL) for s in range(3, HORIZON_S, 6)]


def triangle(low_w: float, high_w: float, ramp_s: float) -> list[tuple[float, float]]:
    """Power ramping between `low_w` and `high_w`, `ramp_s` each way, until HORIZON_S:
    changing wherever this machine's speed puts the window."""
    return [(i * ramp_s, high_w if i % 2 else low_w) for i in range(int(HORIZON_S / ramp_s) + 1)]


def two_gpus() -> FakeScenario:
    """GPU 0 has the energy counter; GPU 1 has none and throttles 2 s in every 6 s."""
    return FakeScenario(
        devices=[
            FakeDevice(
                name="NVIDIA H100 80GB HBM3",
                power_w=triangle(120.0, 320.0, 30.0),
                temperature_c=50.0,
                persistence_mode=True,
                throttle=[Throttle(0, HORIZON_S, GPU_IDLE)],
            ),
            FakeDevice(
                name="NVIDIA H100 80GB HBM3",
                energy_counter=False,
                power_w=triangle(90.0, 250.0, 40.0),
                temperature_c=[(0, 40.0), (200, 60.0)],
                persistence_mode=False,
                throttle=THROTTLES,
            ),
        ]
    )


def overlap_s(intervals: list[Throttle], t0: float, t1: float) -> float:
    return sum(max(0.0, min(t1, i.end_s) - max(t0, i.start_s)) for i in intervals)


def reads(timeline: pd.DataFrame, device: dict, after_s: float) -> list[tuple[float, float]]:
    """`(timestamp, read by)` of each sample of `device`'s window, in time order.

    NvmlSource stamps a sample before it reads that GPU, and the sampler reads one GPU
    after another under one lock: each reading was taken between its timestamp and the
    next timestamp of any sample (for the last one, `after_s`, a time after the run).
    The bounds below come from these recorded times, never from this machine's speed.
    """
    stamps = sorted(timeline["t_unix_s"])
    own = timeline.loc[timeline.device == device["device"], "t_unix_s"]
    own = own[own.between(device["window_start_unix_s"], device["window_end_unix_s"])]
    out = []
    for t in sorted(own):
        i = bisect.bisect_right(stamps, t)
        out.append((t, stamps[i] if i < len(stamps) else after_s))
    return out


def power_range_w(fake: FakeDevice, a_s: float, b_s: float) -> tuple[float, float]:
    """Least and greatest scripted power over [a_s, b_s] (s since the epoch)."""
    times = [a_s, b_s, *(t for t, _ in fake.power_points() if a_s < t < b_s)]
    powers = [fake.power_at(t) for t in times]
    return min(powers), max(powers)


def polled_bounds_j(fake: FakeDevice, window: list[tuple[float, float]], epoch_s: float):
    """Least and greatest trapezoid of the power readings, each read within its bounds."""
    ranges = [power_range_w(fake, t - epoch_s, by - epoch_s) for t, by in window]
    bounds = []
    for side in (0, 1):
        points = [(t, r[side]) for (t, _), r in zip(window, ranges, strict=True)]
        bounds.append(sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairwise(points)))
    slack_j = 0.0005 * (window[-1][0] - window[0][0])  # readings are whole mW
    return bounds[0] - slack_j, bounds[1] + slack_j


def counter_bounds_j(fake: FakeDevice, window: list[tuple[float, float]], epoch_s: float):
    """Least and greatest counter difference, begin and end read within their bounds."""
    (b0, b1), (e0, e1) = window[0], window[-1]
    energy = [fake.energy_j(t - epoch_s) for t in (b0, b1, e0, e1)]
    return energy[2] - energy[1] - 0.001, energy[3] - energy[0] + 0.001  # whole mJ


def throttle_bounds(window: list[tuple[float, float]], epoch_s: float):
    """Least and greatest throttled time (each reading's reasons hold until the next
    sample), and whether some reading was surely / possibly taken while throttled."""
    surely = [
        any(i.start_s <= t - epoch_s and by - epoch_s < i.end_s for i in THROTTLES)
        for t, by in window
    ]
    possibly = [
        any(i.start_s <= by - epoch_s and t - epoch_s < i.end_s for i in THROTTLES)
        for t, by in window
    ]
    gaps = [b[0] - a[0] for a, b in pairwise(window)]
    return (
        sum(g for g, s in zip(gaps, surely, strict=False) if s),
        sum(g for g, p in zip(gaps, possibly, strict=False) if p),
        any(surely),
        any(possibly),
    )


def check_energy_is_the_truth_at_the_reads(
    energy: dict, scenario: FakeScenario, windows: list[list[tuple[float, float]]]
) -> None:
    """Each device's energy is the fake's truth at the times its readings were taken."""
    gpu0, gpu1 = energy["per_device"]
    fake0, fake1 = scenario.devices
    epoch_s = scenario.start_epoch_s
    for device, window in zip((gpu0, gpu1), windows, strict=True):
        assert device["samples"] == len(window) >= 2  # every sample the sampler recorded
        assert (window[0][0], window[-1][0]) == (
            device["window_start_unix_s"],
            device["window_end_unix_s"],
        )
    lo_j, hi_j = counter_bounds_j(fake0, windows[0], epoch_s)
    assert lo_j <= gpu0["energy_j"] <= hi_j
    assert gpu0["energy_j"] == pytest.approx(gpu0["counter_end_j"] - gpu0["counter_begin_j"])
    lo_j, hi_j = polled_bounds_j(fake0, windows[0], epoch_s)  # the counter's cross-check
    assert lo_j <= gpu0["polled_energy_j"] <= hi_j
    assert gpu0["counter_polling_diff_pct"] == pytest.approx(
        (gpu0["polled_energy_j"] - gpu0["energy_j"]) / gpu0["energy_j"] * 100
    )
    lo_j, hi_j = polled_bounds_j(fake1, windows[1], epoch_s)
    assert lo_j <= gpu1["energy_j"] <= hi_j
    assert energy["energy_j"] == pytest.approx(gpu0["energy_j"] + gpu1["energy_j"])


def check_throttling(result: dict, scenario: FakeScenario, window1: list[tuple[float, float]]):
    """Per device, never summed; idle is not throttling. The window holds throttled time;
    what the meter counts of it follows from when it read the reasons."""
    gpu0, gpu1 = result["energy"]["per_device"]
    epoch_s = scenario.start_epoch_s
    assert overlap_s(THROTTLES, window1[0][0] - epoch_s, window1[-1][0] - epoch_s) > 0
    lo_s, hi_s, surely, possibly = throttle_bounds(window1, epoch_s)
    assert lo_s - 1e-9 <= gpu1["throttle_s"] <= hi_s + 1e-9
    seen = [["hw_thermal"]] if surely else [[], ["hw_thermal"]] if possibly else [[]]
    assert gpu1["throttle_reasons"] in seen
    assert gpu0["throttle_s"] == 0 and gpu0["throttle_reasons"] == []
    throttled = any(w.startswith(f"{scenario.uuid(1)}: throttled") for w in result["warnings"])
    assert throttled is (gpu1["throttle_s"] > 0)


def check_passes_and_cooldown(result: dict) -> None:
    assert result["timing"]["window_passes"] * 8 == result["tokens"]["num_requests"]
    cooldown = result["timing"]["cooldown"]
    # cooldown_max_s 1: too short a wait to judge the devices at rest, so the wait stops at
    # its bound whatever the scripts do when this machine gets there
    assert cooldown["settled"] is False and cooldown["cooldown_s"] >= cooldown["max_s"] == 1.0
    assert "cooldown stopped at 1 s before the devices settled" in result["warnings"]


def check_phases_cover_both_gpus(result: dict) -> None:
    """The phase split sums the counter's curve and the polled one, and is conserved."""
    phases = result["phases"]
    assert abs(phases["conservation_error_j"]) < 1e-6 * result["energy"]["energy_j"]
    assert "nvml_counter: counter deltas" in phases["energy_method"]
    assert "nvml_power_polling: polled power integrated" in phases["energy_method"]


@pytest.mark.slow
def test_llem_run_meters_fake_gpus_per_device(tmp_path, embedded_model, fake_nvml_env):
    campaign = {
        "name": "nvml",
        "models": ["smollm2-135m"],
        "settings": {
            "batch_size": 2,
            "num_prompts": 8,
            "max_new_tokens": 32,
            "min_new_tokens": 32,
            "max_input_tokens": 64,
        },
        "measurement": {
            "meter": "nvml",
            "baseline_s": 1.0,
            "cooldown_max_s": 1,
            "warmup_batches": 1,
            "min_window_s": 5.0,  # holds a throttled interval: the gaps between them are 4 s
        },
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    scenario = two_gpus()
    result = llem_run(config, tmp_path, fake_nvml_env(scenario))
    after_s = time.time()
    run_dir = tmp_path / "run"
    energy = result["energy"]
    assert energy["method"] == "nvml" and energy["confidence"] == "measured"
    assert energy["meter_choice"] == {"requested": "nvml", "chosen": "nvml", "refused": {}}
    window_s = result["timing"]["window_s"]
    assert window_s >= 5.0, "min_window_s guarantees the window's length"
    check_passes_and_cooldown(result)

    gpu0, gpu1 = energy["per_device"]
    assert (gpu0["device"], gpu0["method"]) == (scenario.uuid(0), "nvml_counter")
    assert (gpu1["device"], gpu1["method"]) == (scenario.uuid(1), "nvml_power_polling")
    assert gpu0["identified_by"].startswith("every GPU (CUDA_VISIBLE_DEVICES unset)")
    assert gpu1["polled_energy_j"] is None
    assert any("no energy counter" in n for n in gpu1["notes"])

    timeline = pd.read_parquet(run_dir / "timeseries.parquet")
    assert {"baseline", "warmup", "window"} <= set(timeline["phase"])
    windows = [reads(timeline, d, after_s) for d in (gpu0, gpu1)]
    check_energy_is_the_truth_at_the_reads(energy, scenario, windows)
    check_phases_cover_both_gpus(result)

    # Idle baseline and adjusted energy, per device and in total.
    baseline = energy["baseline"]
    assert baseline["method"] == "nvml" and baseline["duration_s"] >= 1.0
    idle_w = baseline["idle_power_w"]
    assert idle_w == pytest.approx(sum(baseline["per_device_w"].values()))
    assert 200 < idle_w < 600  # together the two scripts stay within 210..570 W
    for device in (gpu0, gpu1):
        # the boundary samples are taken after the window's start and after its end
        assert result["timing"]["window_start_unix_s"] <= device["window_start_unix_s"]
        assert result["timing"]["window_end_unix_s"] <= device["window_end_unix_s"]
        span_s = device["window_end_unix_s"] - device["window_start_unix_s"]
        assert device["adjusted_energy_j"] == pytest.approx(
            device["energy_j"] - baseline["per_device_w"][device["device"]] * span_s
        )
    assert energy["adjusted_energy_j"] == pytest.approx(
        gpu0["adjusted_energy_j"] + gpu1["adjusted_energy_j"]
    )

    check_throttling(result, scenario, windows[1])
    # the temperature only rises, and the window ends >= 7 s (cooldown, baseline, 5 s) in
    assert gpu1["max_temperature_c"] > 40

    warnings = result["warnings"]
    assert any(w.startswith(f"{scenario.uuid(1)}: persistence mode is off") for w in warnings)
    assert not any(w.startswith(f"{scenario.uuid(0)}: persistence") for w in warnings)
    assert result["timeseries"]["samples"] == len(timeline)


ZEUS_AND_OURS = """
import json, time
from zeus.monitor import ZeusMonitor
from llenergymeasure.devices.counter import CounterMeter
from llenergymeasure.devices.nvml import NvmlSource
from llenergymeasure.devices.sampler import Sampler

zeus = ZeusMonitor(gpu_indices=[0], cpu_indices=[])
source = NvmlSource()
sampler = Sampler(source, 0.1)
sampler.start()
ours = CounterMeter("nvml", source, sampler)
t = [time.time()]  # around each call: its counter read lies between two of these
zeus.begin_window("w", sync_execution=False)
t.append(time.time())
ours.begin_window()
t.append(time.time())
time.sleep(3.0)
t.append(time.time())
energy = ours.end_window()
t.append(time.time())
measurement = zeus.end_window("w", sync_execution=False)
t.append(time.time())
sampler.stop()
print(json.dumps(
    {"ours": energy.per_device[0].energy_j, "zeus": measurement.gpu_energy[0], "t": t}
))
"""


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("zeus") is None, reason="zeus is in the dev extra"
)
def test_nvml_counter_agrees_with_zeus_on_one_window(fake_nvml_env):
    scenario = FakeScenario(devices=[FakeDevice(power_w=[(0, 150.0), (60, 350.0)])])
    out = run_python(ZEUS_AND_OURS, fake_nvml_env(scenario), timeout=120)
    # Both are the counter's difference between their reads (whole mJ): Zeus's window
    # (t0..t1 to t4..t5) encloses ours (t1..t2 to t3..t4), however long each call took.
    e = [scenario.energy_j(0, scenario.start_epoch_s, t) for t in out["t"]]
    assert e[3] - e[2] - 0.001 <= out["ours"] <= e[4] - e[1] + 0.001
    assert e[4] - e[1] - 0.001 <= out["zeus"] <= e[5] - e[0] + 0.001
    assert out["ours"] <= out["zeus"] + 0.002


SOURCE_DEVICES = """
import json
from llenergymeasure.devices.nvml import NvmlSource
from llenergymeasure.errors import MeterError
try:
    source = NvmlSource()
    print(json.dumps([[d.device, d.has_counter, list(d.notes)] for d in source.devices()]))
except MeterError as e:
    print(json.dumps(str(e)))
"""
THREE = FakeScenario(devices=[FakeDevice(), FakeDevice(), FakeDevice()])
UUIDS = [THREE.uuid(i) for i in range(3)]


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, UUIDS),
        ("2,0", [UUIDS[2], UUIDS[0]]),
        (UUIDS[1], [UUIDS[1]]),
        ("2,7,0", [UUIDS[2]]),  # CUDA: only the devices before an invalid index
        ("", "NVML: no GPU visible to this process"),
    ],
)
def test_cuda_visible_devices_selects_the_metered_gpus(fake_nvml_env, visible, expected):
    env = fake_nvml_env(THREE)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    out = run_python(SOURCE_DEVICES, env)
    assert out == expected if isinstance(expected, str) else [d[0] for d in out] == expected


@pytest.mark.parametrize(
    ("order", "visible", "expected"),
    [
        # CUDA lists the fastest GPU first: its index 0 is NVML's 2, which the driver says
        ({"FAKE_CUDA_ORDER": "2,0,1"}, "0", [2]),
        ({"FAKE_CUDA_ORDER": "2,0,1"}, "1,0", [0, 2]),
        # PCI bus order: CUDA's index is NVML's
        ({"FAKE_CUDA_ORDER": "2,0,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, "0", [0]),
    ],
)
def test_a_cuda_index_is_the_gpu_the_driver_says(fake_nvml_env, order, visible, expected):
    env = {**fake_nvml_env(THREE), **order, "CUDA_VISIBLE_DEVICES": visible}
    out = run_python(SOURCE_DEVICES, env)
    assert [d[0] for d in out] == [UUIDS[i] for i in expected]


def test_without_the_cuda_driver_an_index_is_mapped_only_where_certain(fake_nvml_env, tmp_path):
    env = fake_nvml_env(THREE)
    lib_dir = Path(env["LD_LIBRARY_PATH"].split(":")[0])
    only_nvml = tmp_path / "only-nvml"
    only_nvml.mkdir()
    (only_nvml / "libnvidia-ml.so.1").symlink_to(lib_dir / "libnvidia-ml.so.1")
    env["LD_LIBRARY_PATH"] = str(only_nvml)  # no libcuda.so.1: the driver cannot be asked
    env["CUDA_VISIBLE_DEVICES"] = "1"
    message = run_python(SOURCE_DEVICES, env)
    assert message.startswith("NVML: CUDA_VISIBLE_DEVICES=1 names CUDA indices")
    assert message.endswith("set CUDA_DEVICE_ORDER=PCI_BUS_ID or list GPU UUIDs")
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    assert [d[0] for d in run_python(SOURCE_DEVICES, env)] == [UUIDS[1]]


def test_mig_slices_are_refused_and_mig_gpus_reported_whole(fake_nvml_env):
    env = fake_nvml_env(FakeScenario(devices=[FakeDevice(mig_mode=1)]))
    (device,) = run_python(SOURCE_DEVICES, env)
    assert device[0] == "GPU-fa4e0000-0000-0000-0000-000000000000"
    assert device[2] == [
        "MIG is enabled: the energy is that of the whole parent GPU, not of one slice"
    ]
    env["CUDA_VISIBLE_DEVICES"] = "MIG-4b5c8a1e-0000-0000-0000-000000000000"
    message = run_python(SOURCE_DEVICES, env)
    assert message.startswith("NVML: CUDA_VISIBLE_DEVICES names MIG slice MIG-4b5c8a1e")


def test_auto_picks_nvml_on_a_gpu_run(fake_nvml_env):
    code = (
        "import json\nfrom llenergymeasure.config.models import MeasurementConfig\n"
        "from llenergymeasure.devices import select_meter\n"
        "s = select_meter(MeasurementConfig(meter='auto', device='cuda'))\n"
        "print(json.dumps([s.choice.chosen, [d.device for d in s.source.devices()]]))\n"
    )
    out = run_python(code, fake_nvml_env(FakeScenario(devices=[FakeDevice()])))
    assert out == ["nvml", ["GPU-fa4e0000-0000-0000-0000-000000000000"]]


def test_doctor_reports_each_source(fake_nvml_env, tmp_path):
    command = [sys.executable, "-m", "llenergymeasure", "doctor"]
    env = fake_nvml_env(FakeScenario(devices=[FakeDevice(), FakeDevice(energy_counter=False)]))
    env["LLEM_POWERCAP_ROOT"] = str(tmp_path)
    with_gpus = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert f"{UUIDS[0]} NVIDIA A100-SXM4-80GB: energy counter" in with_gpus.stdout
    assert f"{UUIDS[1]} NVIDIA A100-SXM4-80GB: power polling only" in with_gpus.stdout
    del env["LD_LIBRARY_PATH"]
    without = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert "libnvidia-ml.so.1 not found" in without.stdout
    assert "codecarbon" in without.stdout


IDLE_BASELINE = """
import json, sys
from pathlib import Path
from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices import select_meter
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.measure.baseline import idle_baseline
measurement = MeasurementConfig(meter="nvml", device="cuda", baseline_s=0.5)
setup = select_meter(measurement)
sampler = Sampler(setup.source, 0.05)
sampler.start()
baseline = idle_baseline(setup, sampler, measurement, Path(sys.argv[1]))
sampler.stop()
print(json.dumps([baseline.cached, baseline.per_device_w]))
"""


def test_jobs_that_see_index_0_on_different_gpus_never_share_a_baseline(fake_nvml_env, tmp_path):
    """Under SLURM every job's GPU is CUDA index 0; the cached idle power is per UUID."""
    scenario = FakeScenario(devices=[FakeDevice(power_w=60.0), FakeDevice(power_w=90.0)])
    cache = tmp_path / "baselines"
    code = IDLE_BASELINE.replace("sys.argv[1]", repr(str(cache)))

    def job(nvml_gpu: int) -> list:
        order = "0,1" if nvml_gpu == 0 else "1,0"  # the job's GPU is CUDA's index 0
        env = {**fake_nvml_env(scenario), "CUDA_VISIBLE_DEVICES": "0", "FAKE_CUDA_ORDER": order}
        return run_python(code, env)

    first, other_gpu, first_again = job(0), job(1), job(0)
    assert first == [False, {scenario.uuid(0): pytest.approx(60.0, abs=0.5)}]
    assert other_gpu == [False, {scenario.uuid(1): pytest.approx(90.0, abs=0.5)}]
    assert first_again[0] is True and first_again[1] == first[1]

"""The NVML meter against the fake libnvidia-ml.so.1, loaded by the real pynvml.

Every NVML test runs in a child process: once loaded, the fake cannot be unloaded, and the
rest of the suite must keep seeing this host as it is (no NVIDIA driver).
"""

from __future__ import annotations

import subprocess
import sys
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
THROTTLES = [Throttle(s, s + 2.0, HW_THERMAL) for s in range(3, 200, 6)]


def two_gpus() -> FakeScenario:
    """GPU 0 has the energy counter; GPU 1 has none and throttles 2 s in every 6 s."""
    return FakeScenario(
        devices=[
            FakeDevice(
                name="NVIDIA H100 80GB HBM3",
                power_w=[(0, 120.0), (30, 320.0)],
                temperature_c=50.0,
                persistence_mode=True,
                throttle=[Throttle(0, 1000, GPU_IDLE)],
            ),
            FakeDevice(
                name="NVIDIA H100 80GB HBM3",
                energy_counter=False,
                power_w=[(0, 90.0), (40, 250.0)],
                temperature_c=[(0, 40.0), (200, 60.0)],
                persistence_mode=False,
                throttle=THROTTLES,
            ),
        ]
    )


def overlap_s(intervals: list[Throttle], t0: float, t1: float) -> float:
    return sum(max(0.0, min(t1, i.end_s) - max(t0, i.start_s)) for i in intervals)


def check_passes_and_cooldown(result: dict) -> None:
    assert result["timing"]["window_passes"] * 8 == result["tokens"]["num_requests"]
    cooldown = result["timing"]["cooldown"]
    # GPU 0's scripted power climbs 6.7 W/s: it never settles, so the wait stops at the bound
    assert cooldown["settled"] is False and 3.0 <= cooldown["cooldown_s"] < 4.5
    assert "cooldown stopped at 3 s before the devices settled" in result["warnings"]


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
            "cooldown_max_s": 3,
            "warmup_batches": 1,
            "min_window_s": 5.0,  # long enough for the 0.5 % comparison, on any machine
        },
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    scenario = two_gpus()
    result = llem_run(config, tmp_path, fake_nvml_env(scenario))
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
    assert gpu0["polled_energy_j"] is not None and abs(gpu0["counter_polling_diff_pct"]) < 1.0
    assert gpu1["polled_energy_j"] is None
    assert any("no energy counter" in n for n in gpu1["notes"])

    timeline = pd.read_parquet(run_dir / "timeseries.parquet")
    assert {"baseline", "warmup", "window"} <= set(timeline["phase"])
    for index, device in enumerate((gpu0, gpu1)):
        window = timeline[(timeline.device == device["device"]) & (timeline.phase == "window")]
        t0, t1 = window["t_unix_s"].min(), window["t_unix_s"].max()
        truth_j = scenario.energy_j(index, t0, t1)
        assert device["energy_j"] == pytest.approx(truth_j, rel=0.005), device["device"]
        assert device["samples"] >= window_s / 0.1 * 0.8
    assert energy["energy_j"] == pytest.approx(gpu0["energy_j"] + gpu1["energy_j"])
    check_phases_cover_both_gpus(result)

    # Idle baseline and adjusted energy, per device and in total.
    baseline = energy["baseline"]
    assert baseline["method"] == "nvml" and baseline["duration_s"] >= 1.0
    idle_w = baseline["idle_power_w"]
    assert idle_w == pytest.approx(sum(baseline["per_device_w"].values()))
    assert 200 < idle_w < 600  # the two GPUs' scripted power near the start
    for device in (gpu0, gpu1):
        span_s = device["window_end_unix_s"] - device["window_start_unix_s"]
        assert span_s == pytest.approx(window_s, abs=0.05)
        assert device["adjusted_energy_j"] == pytest.approx(
            device["energy_j"] - baseline["per_device_w"][device["device"]] * span_s
        )
    assert energy["adjusted_energy_j"] == pytest.approx(
        gpu0["adjusted_energy_j"] + gpu1["adjusted_energy_j"]
    )

    # Throttling: per device, never summed; idle is not throttling.
    window1 = timeline[(timeline.device == scenario.uuid(1)) & (timeline.phase == "window")]
    start = scenario.start_epoch_s
    expected_s = overlap_s(
        THROTTLES, window1.t_unix_s.min() - start, window1.t_unix_s.max() - start
    )
    assert expected_s > 0
    edges = 2 * sum(
        1 for i in THROTTLES if overlap_s([i], *(window1.t_unix_s.agg(["min", "max"]) - start))
    )
    assert gpu1["throttle_s"] == pytest.approx(expected_s, abs=0.15 * edges + 0.1)
    assert gpu1["throttle_reasons"] == ["hw_thermal"]
    assert gpu0["throttle_s"] == 0 and gpu0["throttle_reasons"] == []
    assert gpu1["max_temperature_c"] > 40

    warnings = result["warnings"]
    assert any(w.startswith(f"{scenario.uuid(1)}: persistence mode is off") for w in warnings)
    assert not any(w.startswith(f"{scenario.uuid(0)}: persistence") for w in warnings)
    assert any(w.startswith(f"{scenario.uuid(1)}: throttled") for w in warnings)
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
zeus.begin_window("w", sync_execution=False)
ours.begin_window()
time.sleep(3.0)
energy = ours.end_window()
measurement = zeus.end_window("w", sync_execution=False)
sampler.stop()
print(json.dumps({"ours": energy.per_device[0].energy_j, "zeus": measurement.gpu_energy[0]}))
"""


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("zeus") is None, reason="zeus is in the dev extra"
)
def test_nvml_counter_agrees_with_zeus_on_one_window(fake_nvml_env):
    scenario = FakeScenario(devices=[FakeDevice(power_w=[(0, 150.0), (60, 350.0)])])
    out = run_python(ZEUS_AND_OURS, fake_nvml_env(scenario), timeout=120)
    assert out["ours"] == pytest.approx(out["zeus"], rel=0.005)


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

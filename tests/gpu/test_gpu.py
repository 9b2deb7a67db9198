"""On a real NVIDIA GPU only (make gpu-check): the energy sources agree; one GPU per rank.

Everywhere else these skip with the reason (tests/gpu/probe.py): the hardware they check is
absent, and the fake NVML's agreement is tested in tests/integration/test_nvml_meter.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.gpu.probe import gpu_reason

REASON = gpu_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

ONE_WINDOW = """
import json, time, torch
from zeus.monitor import ZeusMonitor
from llenergymeasure.devices.counter import CounterMeter
from llenergymeasure.devices.nvml import NvmlSource
from llenergymeasure.devices.sampler import Sampler

zeus = ZeusMonitor(gpu_indices=[0], cpu_indices=[])
source = NvmlSource()
sampler = Sampler(source, 0.1)
sampler.start()
ours = CounterMeter("nvml", source, sampler)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
zeus.begin_window("w")
ours.begin_window()
end = time.perf_counter() + 8.0
while time.perf_counter() < end:
    a = (a @ a).clamp_(-1, 1)
torch.cuda.synchronize()
energy = ours.end_window()
zeus_j = zeus.end_window("w").gpu_energy[0]
sampler.stop()
d = energy.per_device[0]
print(json.dumps({"counter": d.energy_j, "polled": d.polled_energy_j, "zeus": zeus_j,
                  "method": d.method, "samples": d.samples}))
"""


def test_counter_polling_and_zeus_agree_on_one_busy_window():
    pytest.importorskip("zeus", reason="zeus is in the dev extra")
    done = subprocess.run(
        [sys.executable, "-c", ONE_WINDOW], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(out)  # in the gpu-check log: what was seen
    assert out["method"] == "nvml_counter", "a Volta or newer GPU has the energy counter"
    assert out["samples"] >= 60
    assert out["counter"] > 8.0 * 50, "a matmul loop draws well above 50 W"
    assert out["counter"] == pytest.approx(out["zeus"], rel=0.02), "the same counter"
    assert out["polled"] == pytest.approx(out["counter"], rel=0.10), "polling vs counter"


def test_two_processes_meter_one_gpu_each(tmp_path, embedded_model):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip(f"{torch.cuda.device_count()} GPU: a 2-process run needs 2")
    from llenergymeasure.config import plan_campaign
    from tests.gpu import one_gpu_per_rank
    from tests.llem import llem_run

    (run,) = plan_campaign(one_gpu_per_rank.campaign("cuda"), "g.yaml").runs.values()
    result = llem_run(run, tmp_path)
    print(one_gpu_per_rank.check(result, tmp_path / "run"))  # in the gpu-check log

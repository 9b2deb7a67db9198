"""The GPU suite's one-GPU-per-rank body (tests/gpu/one_gpu_per_rank.py), here on the fake
NVML's two GPUs: a CPU run metered by NVML gives each rank one GPU, as CUDA runs do."""

from __future__ import annotations

import pytest

from llenergymeasure.config import plan_campaign
from tests.fakes.nvml import FakeDevice, FakeScenario
from tests.gpu import one_gpu_per_rank
from tests.llem import llem_run

pytest_plugins = ["tests.fakes.nvml.fixtures"]


@pytest.mark.slow
def test_two_processes_meter_one_fake_gpu_each(tmp_path, embedded_model, fake_nvml_env):
    scenario = FakeScenario(devices=[FakeDevice(power_w=120.0), FakeDevice(power_w=80.0)])
    (run,) = plan_campaign(one_gpu_per_rank.campaign("cpu"), "g.yaml").runs.values()
    # CUDA enumerates the second GPU first: rank 0's "0" is NVML's GPU 1, as the driver says
    env = {**fake_nvml_env(scenario), "CUDA_VISIBLE_DEVICES": "0,1", "FAKE_CUDA_ORDER": "1,0"}
    result = llem_run(run, tmp_path, env)
    rank0, rank1 = one_gpu_per_rank.check(result, tmp_path / "run")
    assert (rank0, rank1) == (scenario.uuid(1), scenario.uuid(0))

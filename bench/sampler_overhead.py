"""Sampler overhead at 10 Hz against the fake NVML (two GPUs), and its effect on throughput.

1. CPU time the sampler costs per second of wall time (process CPU while the main thread
   sleeps; target < 1 % of one core).
2. Throughput of a measured run with meter `nvml` (sampler on, 10 Hz) vs a bare
   `model.generate` loop on the same batches, interleaved in one process.

Runs itself in a child process whose pynvml loads tests/fakes/nvml (built with gcc).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]


def child() -> None:
    from overhead import transformers_bench

    from llenergymeasure.devices.nvml import NvmlSource
    from llenergymeasure.devices.sampler import Sampler

    sampler = Sampler(NvmlSource(), interval_s=0.1)
    wall_s, cpu0 = 10.0, time.process_time()
    sampler.start()
    time.sleep(wall_s)
    sampler.stop()
    cpu_s = time.process_time() - cpu0
    reads = len(sampler.samples) // 2
    print(f"sampler at 10 Hz, 2 fake GPUs: {reads} reads in {wall_s:.0f} s, CPU {cpu_s:.3f} s")
    print(f"sampler CPU per wall second: {cpu_s / wall_s * 100:.2f} % of one core (target < 1 %)")

    measurement = {"meter": "nvml", "baseline_s": 0, "warmup_batches": 1}
    transformers_bench(3, measurement, name="transformers, nvml sampler on")


def main() -> None:
    from tests.fakes.nvml import (
        FakeDevice,
        FakeScenario,
        build_fake_nvml,
        subprocess_env,
        write_scenario,
    )

    work = Path(tempfile.mkdtemp(prefix="llem-bench-"))
    lib = build_fake_nvml(work)
    scenario = FakeScenario(
        devices=[FakeDevice(power_w=[(0, 100.0), (60, 300.0)]), FakeDevice(energy_counter=False)]
    )
    env = subprocess_env(lib, write_scenario(work / "scenario.txt", scenario))
    env.setdefault("LLEM_MODELS_DIR", str(REPO / "resources/models"))
    subprocess.run([sys.executable, __file__, "--child"], env=env, check=True, cwd=REPO)


if __name__ == "__main__":
    child() if "--child" in sys.argv else main()

"""Other processes on the run's GPUs, listed through the real pynvml from the fake NVML.

The fake lists each GPU's compute processes from its scenario (`process PID|self MIB`);
which of them are the run's own is the code's decision from the process tree the test
builds: the run itself, an engine worker it started, and processes that are not its own.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from llenergymeasure.config import plan_campaign
from tests.fakes.nvml import FakeDevice, FakeScenario, Process, run_python
from tests.llem import llem_run

pytest_plugins = ["tests.fakes.nvml.fixtures"]
LATE_S = 2.5  # the fake lists the late process from this long after the scenario's epoch

WATCH = """
import json, os, subprocess, time
from tests.fakes.nvml import FakeDevice, FakeScenario, Process, write_scenario
from llenergymeasure.devices.nvml import NvmlSource
from llenergymeasure.measure.gpu_processes import GpuProcessWatch
worker = subprocess.Popen(["sleep", "60"])  # the run's own engine worker: a descendant
start = time.time()
processes = [
    Process("self", 2048),
    Process(worker.pid, 512),
    Process(FOREIGN, 300),
    Process(GONE, 100, LATE_S, 1e6),
]
devices = [FakeDevice(processes=processes), FakeDevice()]
scenario = FakeScenario(start_epoch_s=start, devices=devices)
write_scenario(os.environ["FAKE_NVML_SCENARIO"], scenario)  # re-read at nvmlInit
watch = GpuProcessWatch(NvmlSource(), "warn", 0.2, separate_pid_namespace=SEPARATE)
watch.before_window()
t_before = time.time() - start
watch.start()
while time.time() - start < LATE_S + 0.5:
    time.sleep(0.1)
check = watch.stop()
worker.kill()
print(json.dumps({"t_before": t_before, "check": check.model_dump(mode="json")}))
"""


def unused_pid() -> int:
    """A PID no process can have: above the kernel's pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


@pytest.mark.parametrize("separate", [False, True])
def test_foreign_processes_are_told_from_the_runs_own(fake_nvml_env, separate):
    foreign = subprocess.Popen(["sleep", "60"])  # not a descendant of the run
    gone = unused_pid()  # a PID this namespace cannot see
    code = (
        WATCH.replace("FOREIGN", str(foreign.pid))
        .replace("GONE", str(gone))
        .replace("LATE_S", repr(LATE_S))
        .replace("SEPARATE", repr(separate))
    )
    try:
        out = run_python(code, fake_nvml_env(FakeScenario(devices=[FakeDevice()])))
    finally:
        foreign.kill()
    check, gpu0 = out["check"], FakeScenario(devices=[FakeDevice()]).uuid(0)
    assert check["checked"] and check["method"] == "nvmlDeviceGetComputeRunningProcesses"
    assert check["checks"] >= 2, "one list before the window, at least one at its end"
    by_pid = {p["pid"]: p for p in check["foreign"]}
    # the run itself and its worker are its own; the other sleep is not
    sleeper = by_pid.pop(foreign.pid)
    assert (sleeper["name"], sleeper["device"], sleeper["used_memory_mb"]) == ("sleep", gpu0, 300)
    assert sleeper["before_window"] and sleeper["during_window"]
    if separate:  # NVML's host PIDs cannot be matched in a container's own PID namespace
        assert by_pid == {} and check["unattributed_pids"] == [gone]
    else:
        late = by_pid.pop(gone)
        assert by_pid == {} and check["unattributed_pids"] == []
        assert late["name"] is None and late["during_window"]
        assert late["before_window"] == (out["t_before"] >= LATE_S)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["warn", "fail"])
def test_a_foreign_process_is_recorded_or_fails_the_run(
    tmp_path, embedded_model, fake_nvml_env, policy
):
    campaign = {
        "name": "shared-gpu",
        "models": ["smollm2-135m"],
        "settings": {"batch_size": 2, "num_prompts": 2, "max_new_tokens": 4},
        "measurement": {
            "meter": "nvml",
            "baseline_s": 0,
            "cooldown_max_s": 0,
            "warmup_batches": 1,
            "foreign_processes": policy,
        },
    }
    (config,) = plan_campaign(campaign, "c.yaml").runs.values()
    foreign = subprocess.Popen(["sleep", "300"])
    scenario = FakeScenario(devices=[FakeDevice(processes=[Process(foreign.pid, 700)])])
    try:
        result = llem_run(config, tmp_path, fake_nvml_env(scenario))
    finally:
        foreign.kill()
    line = f"pid {foreign.pid} (sleep) on {scenario.uuid(0)}, 700 MiB, before"
    if policy == "warn":
        assert result["status"] == "succeeded"
        (seen,) = result["gpu_processes"]["foreign"]
        assert (seen["pid"], seen["used_memory_mb"]) == (foreign.pid, 700)
        assert any(line in w for w in result["warnings"])
    else:
        assert result["status"] == "failed" and result["failure_class"] == "foreign_process"
        assert "\n" not in result["message"]
        assert line in result["message"]

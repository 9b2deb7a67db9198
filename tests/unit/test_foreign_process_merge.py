"""Which processes are the run's own, and the ranks' process lists merged."""

from __future__ import annotations

from llenergymeasure.measure.gpu_processes import describe, merge, process_tree
from llenergymeasure.results.models import ForeignProcess, GpuProcessCheck


def test_the_run_is_its_root_and_every_descendant():
    parents = {1: 0, 100: 1, 101: 100, 102: 101, 103: 100, 200: 1, 201: 200}
    assert process_tree(100, parents) == {100, 101, 102, 103}
    assert process_tree(201, parents) == {201}


def seen(pid: int, before: bool, during: bool, mb: float | None, t: float) -> ForeignProcess:
    return ForeignProcess(
        pid=pid,
        device="GPU-a",
        name="python3",
        used_memory_mb=mb,
        before_window=before,
        during_window=during,
        first_seen_unix_s=t,
        last_seen_unix_s=t + 1,
    )


def check(*foreign: ForeignProcess, unattributed: list[int] | None = None) -> GpuProcessCheck:
    return GpuProcessCheck(
        policy="warn",
        checked=True,
        method="nvmlDeviceGetComputeRunningProcesses",
        interval_s=1.0,
        checks=3,
        foreign=list(foreign),
        unattributed_pids=unattributed or [],
    )


def test_ranks_sharing_a_gpu_report_each_foreign_process_once():
    rank0 = check(seen(7, True, False, 100.0, 10.0), unattributed=[9])
    rank1 = check(seen(7, False, True, 300.0, 12.0), seen(8, False, True, None, 13.0))
    merged = merge([rank0, rank1])
    assert merged is not None and merged.checks == 6 and merged.unattributed_pids == [9]
    first, second = merged.foreign
    assert (first.pid, first.before_window, first.during_window) == (7, True, True)
    assert (first.used_memory_mb, first.first_seen_unix_s, first.last_seen_unix_s) == (
        300.0,
        10.0,
        13.0,
    )
    assert second.pid == 8
    assert describe([first]) == "pid 7 (python3) on GPU-a, 300 MiB, before and during the window"


def test_no_rank_could_list_processes():
    unlisted = GpuProcessCheck(policy="fail", checked=False, null_reason="no NVML")
    assert merge([None, None]) is None
    assert merge([unlisted, None]) == unlisted

"""Other processes on the run's GPUs, listed before and during the window.

Another job's kernels on the same GPU add their energy to the run's counter, and no idle
baseline removes it. NVML lists each GPU's compute processes by host PID; a process is
the run's own when it descends from the run's `llem run` (engine workers and ranks
included), foreign otherwise. Inside a container with its own PID namespace (Podman,
Docker) NVML's host PIDs cannot be matched to this namespace's: such a PID is recorded as
unattributed, never as foreign.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from llenergymeasure.devices.base import DeviceSource
from llenergymeasure.errors import LlemError
from llenergymeasure.results.models import ForeignProcess, GpuProcessCheck

RUN_PID_ENV = "LLEM_RUN_PID"  # the `llem run` whose process tree is the run (ranks inherit it)
METHOD = "nvmlDeviceGetComputeRunningProcesses"
CHECK_INTERVAL_S = 1.0
PROC = Path("/proc")
Policy = Literal["warn", "fail"]


class ForeignProcessError(LlemError):
    """`measurement.foreign_processes: fail` and a foreign process used the run's GPUs."""


def run_root_pid() -> int:
    """The PID whose process tree is this run: $LLEM_RUN_PID (set for ranks), else ours."""
    return int(os.environ.get(RUN_PID_ENV, os.getpid()))


def parent_pids(proc: Path = PROC) -> dict[int, int]:
    """Every visible process's parent, from /proc/<pid>/stat."""
    parents = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold blanks and parentheses
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def process_tree(root: int, parents: dict[int, int]) -> set[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def own_pid_namespace() -> bool:
    """Whether this process runs in a container with its own PID namespace."""
    return Path("/run/.containerenv").exists() or Path("/.dockerenv").exists()


def _command_name(pid: int) -> str | None:
    try:
        return (PROC / str(pid) / "comm").read_text().strip() or None
    except OSError:
        return None


class GpuProcessWatch:
    """Lists the compute processes on the run's GPUs: once before the window, then during it."""

    def __init__(
        self,
        source: DeviceSource | None,
        policy: Policy,
        interval_s: float = CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        separate_pid_namespace: bool | None = None,
    ) -> None:
        """``separate_pid_namespace``: None detects it (:func:`own_pid_namespace`)."""
        self.source, self.policy, self.interval_s, self.clock = source, policy, interval_s, clock
        self._root = run_root_pid()
        self._separate_namespace = (
            own_pid_namespace() if separate_pid_namespace is None else separate_pid_namespace
        )
        self._foreign: dict[tuple[int, str], ForeignProcess] = {}
        self._unattributed: set[int] = set()
        self._checks = 0
        self._listable = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def before_window(self) -> None:
        """The check right before the window.

        Raises:
            ForeignProcessError: Under `fail`, when a foreign process is on a GPU.
        """
        self._check(before=True)
        self.raise_if_failed()

    def start(self) -> None:
        """Check every `interval_s` during the window, in a background thread."""
        if self.source is None or not self._listable:
            return
        self._thread = threading.Thread(target=self._loop, name="gpu-processes", daemon=True)
        self._thread.start()

    def stop(self) -> GpuProcessCheck:
        """One last check at the window's end; what was seen."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._check(before=False)
        return self.record()

    def record(self) -> GpuProcessCheck:
        """What the checks so far found."""
        if self.source is None or not self._listable:
            return GpuProcessCheck(
                policy=self.policy,
                checked=False,
                null_reason="the energy meter cannot list the processes on its devices",
            )
        with self._lock:
            return GpuProcessCheck(
                policy=self.policy,
                checked=True,
                method=METHOD,
                interval_s=self.interval_s,
                checks=self._checks,
                foreign=sorted(self._foreign.values(), key=lambda p: (p.device, p.pid)),
                unattributed_pids=sorted(self._unattributed),
            )

    def raise_if_failed(self) -> None:
        """Raises ForeignProcessError under `fail` when a foreign process was seen."""
        found = self.record().foreign
        if self.policy == "fail" and found:
            raise ForeignProcessError(
                "measurement.foreign_processes is fail and the run's GPUs had other "
                f"processes: {describe(found)}"
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._check(before=False)

    def _check(self, before: bool) -> None:
        listed = self.source.compute_processes() if self.source is not None else None
        if listed is None:
            self._listable = False
            return
        now = self.clock()
        own: set[int] | None = None
        with self._lock:
            self._checks += 1
            for device, processes in listed.items():
                for pid, used_mb in processes:
                    if pid == os.getpid():
                        continue
                    if own is None:
                        own = process_tree(self._root, parent_pids())
                    if pid in own:
                        continue
                    if self._separate_namespace and not (PROC / str(pid)).exists():
                        self._unattributed.add(pid)
                        continue
                    self._note(pid, device, used_mb, now, before)

    def _note(self, pid: int, device: str, used_mb: float | None, now: float, before: bool) -> None:
        seen = self._foreign.get((pid, device))
        if seen is None:
            self._foreign[(pid, device)] = ForeignProcess(
                pid=pid,
                device=device,
                name=_command_name(pid),
                used_memory_mb=used_mb,
                before_window=before,
                during_window=not before,
                first_seen_unix_s=now,
                last_seen_unix_s=now,
            )
            return
        peak = max((m for m in (seen.used_memory_mb, used_mb) if m is not None), default=None)
        seen.used_memory_mb = peak
        seen.last_seen_unix_s = now
        seen.before_window = seen.before_window or before
        seen.during_window = seen.during_window or not before


def describe(found: list[ForeignProcess]) -> str:
    """One line naming each foreign process."""
    parts = []
    for p in found:
        name = f" ({p.name})" if p.name else ""
        memory = "" if p.used_memory_mb is None else f", {p.used_memory_mb:.0f} MiB"
        when = " and ".join(
            w for w, seen in (("before", p.before_window), ("during", p.during_window)) if seen
        )
        parts.append(f"pid {p.pid}{name} on {p.device}{memory}, {when} the window")
    return "; ".join(parts)


def merge(checks: list[GpuProcessCheck | None]) -> GpuProcessCheck | None:
    """The ranks' checks as one: every foreign process any rank saw (once per GPU)."""
    present = [c for c in checks if c is not None]
    if not present:
        return None
    checked = [c for c in present if c.checked]
    if not checked:
        return present[0]
    foreign: dict[tuple[int, str], ForeignProcess] = {}
    for p in (p for c in checked for p in c.foreign):
        seen = foreign.get((p.pid, p.device))
        foreign[(p.pid, p.device)] = p if seen is None else _union(seen, p)
    return checked[0].model_copy(
        update={
            "checks": sum(c.checks for c in checked),
            "foreign": sorted(foreign.values(), key=lambda p: (p.device, p.pid)),
            "unattributed_pids": sorted({pid for c in checked for pid in c.unattributed_pids}),
        }
    )


def _union(a: ForeignProcess, b: ForeignProcess) -> ForeignProcess:
    memory = [m for m in (a.used_memory_mb, b.used_memory_mb) if m is not None]
    return a.model_copy(
        update={
            "used_memory_mb": max(memory) if memory else None,
            "before_window": a.before_window or b.before_window,
            "during_window": a.during_window or b.during_window,
            "first_seen_unix_s": min(a.first_seen_unix_s, b.first_seen_unix_s),
            "last_seen_unix_s": max(a.last_seen_unix_s, b.last_seen_unix_s),
        }
    )

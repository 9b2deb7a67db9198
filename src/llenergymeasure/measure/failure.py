"""Failed runs as records: classify the failure, bound the run's time, write the record."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import get_args

from llenergymeasure import environment
from llenergymeasure.config.loader import config_hash, configuration_id, run_id
from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.errors import (
    BackendError,
    ConfigError,
    ContainerError,
    DeviceSettingError,
    LlemError,
    MeterError,
)
from llenergymeasure.measure.gpu_processes import ForeignProcessError
from llenergymeasure.measure.progress import Progress
from llenergymeasure.measure.slurm_time import (
    MIN_STOP_MARGIN_S,
    QUERY_AT_SIGNAL_TIMEOUT_S,
    sigterm_cause,
    slurm_end_time_s,
    slurm_time_left_s,
    stop_margin_s,
)
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import FailureClass, FailureRecord
from llenergymeasure.results.timeseries import write_timeseries

log = logging.getLogger(__name__)

OOM_PATTERNS = (
    "out of memory",  # torch.OutOfMemoryError, CUDA and vLLM/TensorRT-LLM messages
    "can't allocate memory",  # torch's CPU allocator under a memory limit
    "cannot allocate memory",
    "no available memory for the cache blocks",  # vLLM: KV cache does not fit
)
UNSUPPORTED_PATTERNS = (
    "rejected the engine settings",
    "does not accept engine setting",
    "not supported",
    "unsupported",
    "is larger than the maximum",  # vLLM: context longer than max_model_len
)


class RunInterrupted(LlemError):
    """The run was stopped from outside its own code (a time bound, SLURM's signal)."""

    def __init__(self, failure_class: FailureClass, message: str) -> None:
        self.failure_class = failure_class
        super().__init__(message)


class Terminated(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """SIGTERM outside SLURM, or a cancelled SLURM job's: unwind, but record nothing."""


def terminate_on_sigterm() -> None:
    """Make SIGTERM unwind the run (finally blocks run) instead of killing it on the spot."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Terminated("SIGTERM")

    signal.signal(signal.SIGTERM, on_term)


class RankFailed(LlemError):
    """A rank of a multi-process run failed; carries that rank's own class and phase."""

    def __init__(self, failure_class: FailureClass, message: str, phase: str) -> None:
        self.failure_class = failure_class
        self.phase = phase
        super().__init__(message)


def one_line(error: BaseException) -> str:
    """The error's type and first line of message, at most 500 characters."""
    text = str(error).strip()
    first = next((line for line in text.splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first}"[:500] if first else type(error).__name__


BY_TYPE: tuple[tuple[type[BaseException], FailureClass], ...] = (
    (ContainerError, "container"),
    (ForeignProcessError, "foreign_process"),
)


def classify(error: BaseException) -> FailureClass:
    """Which kind of failure an exception is (out of memory recognised by its message)."""
    if isinstance(error, RunInterrupted | RankFailed):
        return error.failure_class
    text = str(error).lower()
    for kind, failure_class in BY_TYPE:
        if isinstance(error, kind):
            return failure_class
    out_of_memory = isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
    if out_of_memory or any(p in text for p in OOM_PATTERNS):
        return "out_of_memory"
    if isinstance(error, ConfigError | DeviceSettingError) or any(
        p in text for p in UNSUPPORTED_PATTERNS
    ):
        return "unsupported_config"
    if isinstance(error, BackendError | MeterError):
        return "engine_error"
    return "internal"


def _deadline_s(max_run_s: float | None, left_s: float | None) -> tuple[float | None, str]:
    """The run's own time bound and where it comes from."""
    bounds: list[tuple[float, str]] = []
    if max_run_s is not None:
        bounds.append((max_run_s, f"measurement.max_run_s = {max_run_s:g} s"))
    if left_s is not None:
        margin_s = stop_margin_s(left_s)  # time to stop cleanly and record
        bounds.append(
            (
                max(1.0, left_s - margin_s),
                f"the SLURM job's time limit ({left_s:.0f} s left at the start, stopped "
                f"{margin_s:.0f} s early to record it)",
            )
        )
    if not bounds:
        return None, ""
    return min(bounds)


def _slurm_sigterm(grace_s: float) -> BaseException:
    """What SLURM's SIGTERM is, asked at the signal: a timeout to record, or a cancellation."""
    now_s = time.time()
    end_s = slurm_end_time_s(now_s, timeout_s=QUERY_AT_SIGNAL_TIMEOUT_S)
    if end_s is not None and sigterm_cause(end_s, now_s, grace_s) == "timeout":
        left_s = end_s - now_s
        when = f"{-left_s:.0f} s after it" if left_s <= 0 else f"{left_s:.0f} s before it"
        return RunInterrupted(
            "timeout",
            f"SIGTERM from SLURM at the job's time limit ({when}; the last {grace_s:.0f} s "
            "count as the limit)",
        )
    if end_s is None:
        return Terminated(
            "SIGTERM from SLURM with the job's time left not known (no answer from squeue or "
            "the environment): taken as cancelled or preempted"
        )
    return Terminated(
        f"SIGTERM from SLURM with the job's time left {end_s - now_s:.0f} s, more than the "
        f"{grace_s:.0f} s grace: cancelled or preempted"
    )


@contextmanager
def run_limits(max_run_s: float | None) -> Iterator[None]:
    """Bound the run: `max_run_s` and, under SLURM, the job's time limit and its SIGTERM.

    A bound raises RunInterrupted("timeout") in the run's main thread. Under SLURM a SIGTERM
    does the same only when the job's time is up (time left at the signal at most the stop
    margin, the grace); otherwise (scancel, preemption, time left unknown), and outside SLURM,
    it raises Terminated: the run unwinds (GPU settings are restored) and is not recorded, so
    the same command redoes it.
    """
    left_s = slurm_time_left_s() if os.environ.get("SLURM_JOB_ID") else None
    deadline_s, source = _deadline_s(max_run_s, left_s)
    grace_s = MIN_STOP_MARGIN_S if left_s is None else stop_margin_s(left_s)

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise RunInterrupted("timeout", f"stopped after {deadline_s:g} s by {source}")

    def on_term(signum: int, frame: FrameType | None) -> None:
        # One signal decides; a repeat (SLURM signals every process of the step) must not
        # cut the unwinding short, GPU settings' restore included.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _slurm_sigterm(grace_s)

    previous_alarm = signal.signal(signal.SIGALRM, on_alarm)
    previous_term = signal.getsignal(signal.SIGTERM)
    if os.environ.get("SLURM_JOB_ID"):
        signal.signal(signal.SIGTERM, on_term)
    else:
        terminate_on_sigterm()
    if deadline_s is not None:
        log.info("run bounded to %.0f s by %s", deadline_s, source)
        signal.setitimer(signal.ITIMER_REAL, deadline_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_alarm)
        signal.signal(signal.SIGTERM, previous_term)


def failure_record(
    config: ExperimentConfig, progress: Progress, error: BaseException, log_path: Path | None
) -> FailureRecord:
    """The record of a failed run: class, one-line message, phase, what was known."""
    phase = error.phase if isinstance(error, RankFailed) else progress.phase
    message = str(error) if isinstance(error, RunInterrupted | RankFailed) else one_line(error)
    return FailureRecord(
        run_id=run_id(config),
        configuration_id=configuration_id(config),
        config_hash=config_hash(config),
        config=config,
        failure_class=classify(error),
        message=message,
        phase=phase,
        failed_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        elapsed_s=progress.elapsed_s(),
        timings=dict(progress.timings),
        environment=environment.collect(config.measurement.device),
        log=None if log_path is None else str(log_path),
    )


def write_failure(out_dir: Path, record: FailureRecord) -> None:
    """Write the record as the run's result.json, and an empty timeline beside it (atomic)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_timeseries(out_dir / "timeseries.parquet", record.run_id, [], 0.0)
    write_model_atomic(out_dir / "result.json", record)


FAILURE_CLASSES: tuple[str, ...] = get_args(FailureClass)

"""The engine's own view of its batch: one scheduler sample per engine step.

vLLM's scheduler knows, at every step, how many requests it runs and how many wait, how full
its KV cache is and how many requests it preempted; token events only let us infer the
running batch. A backend that can report these keeps them in a `SchedulerLog` (Unix time,
the clock of the power timeline), and the session stores them in timeseries.parquet (device
``engine:<backend>``) and summarises them per run (`measure.engine_view`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SchedulerSample:
    """The scheduler's state after one engine step (timeseries.parquet columns by name)."""

    device: str
    t_s: float
    running_reqs: int
    waiting_reqs: int
    kv_cache_usage: float | None
    preempted_reqs: int


@dataclass
class SchedulerLog:
    """The samples of one engine, appended from its output loop.

    Attributes:
        source: How the samples were obtained, in words.
        device: The timeline's row key, ``engine:<backend>``.
    """

    source: str
    device: str
    samples: list[SchedulerSample] = field(default_factory=list)

    def record(
        self,
        running_reqs: int,
        waiting_reqs: int,
        kv_cache_usage: float | None,
        preempted_reqs: int,
        t_s: float | None = None,
    ) -> None:
        """Append one step's state (at `t_s`, Unix seconds; default now)."""
        self.samples.append(
            SchedulerSample(
                device=self.device,
                t_s=time.time() if t_s is None else t_s,
                running_reqs=running_reqs,
                waiting_reqs=waiting_reqs,
                kv_cache_usage=kv_cache_usage,
                preempted_reqs=preempted_reqs,
            )
        )


def scheduler_log(backend: object) -> SchedulerLog | None:
    """A backend's `scheduler_log` (None where it keeps none)."""
    log = getattr(backend, "scheduler_log", None)
    return log if isinstance(log, SchedulerLog) else None


@dataclass(frozen=True)
class TaggedSchedulerSample:
    """A scheduler sample and the session phase it fell in (for timeseries.parquet)."""

    phase: str
    sample: SchedulerSample


def tagged_samples(
    log: SchedulerLog, start_unix_s: float, end_unix_s: float
) -> list[TaggedSchedulerSample]:
    """The log's samples tagged warmup (before the window), window, or post (after it)."""
    return [
        TaggedSchedulerSample(
            "warmup" if s.t_s < start_unix_s else "window" if s.t_s <= end_unix_s else "post", s
        )
        for s in log.samples
    ]

"""Where a run is in its session, so a failure can say in which phase it happened."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    """The session's current phase and the durations known so far (seconds).

    Attributes:
        phase: start | load | cooldown | baseline | warmup | window | finish (| ranks).
        timings: Durations of the phases that completed, e.g. ``model_load_s``.
        started_s: `time.perf_counter()` when the run began.
        detail: Where inside the phase (e.g. "batch 2 of at most 5"), for a live display.
    """

    phase: str = "start"
    detail: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    started_s: float = field(default_factory=time.perf_counter)

    def elapsed_s(self) -> float:
        """Seconds since the run began."""
        return time.perf_counter() - self.started_s

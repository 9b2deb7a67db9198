"""Where a run is in its session, so a failure can say in which phase it happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Progress:
    """The session's current phase and the durations known so far (seconds).

    Attributes:
        phase: start | load | cooldown | baseline | warmup | window | finish (| ranks).
        timings: Durations of the phases that completed, e.g. ``model_load_s``.
        started_s: `time.perf_counter()` when the run began.
        detail: Where inside the phase (e.g. "batch 2 of at most 5"), for a live display.
        on_change: Called after every change of `phase` or `detail` (a live display draws
            each one, however briefly it lasts).
    """

    phase: str = "start"
    detail: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    started_s: float = field(default_factory=time.perf_counter)
    on_change: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        listener = self.__dict__.get("on_change")
        if name in ("phase", "detail") and listener is not None:
            listener()

    def elapsed_s(self) -> float:
        """Seconds since the run began."""
        return time.perf_counter() - self.started_s

"""Background sampler: a device source read every `interval_s`, each sample tagged with a phase."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from llenergymeasure.devices.base import DeviceSample, DeviceSource
from llenergymeasure.errors import MeterError

log = logging.getLogger(__name__)
MIN_RECOMMENDED_INTERVAL_S = 0.05


@dataclass(frozen=True)
class TaggedSample:
    """A sample and the session phase it was taken in."""

    phase: str
    sample: DeviceSample


class Sampler:
    """Reads a source on a background thread; `mark` takes an exact sample on demand.

    Args:
        source: The devices to read (None: the sampler records nothing).
        interval_s: Period of the background reads.
    """

    def __init__(self, source: DeviceSource | None, interval_s: float) -> None:
        self.source = source
        self.interval_s = interval_s
        self.phase = "idle"
        self.samples: list[TaggedSample] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval_s < MIN_RECOMMENDED_INTERVAL_S:
            log.warning("sampling interval %.3f s is below 50 ms: expect overhead", interval_s)

    def start(self) -> None:
        """Start background sampling (no-op without a source)."""
        if self.source is None:
            return
        self._thread = threading.Thread(target=self._loop, name="llem-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_s = time.perf_counter()
        while not self._stop.is_set():
            self.mark()
            next_s += self.interval_s
            self._stop.wait(max(0.0, next_s - time.perf_counter()))

    def mark(self, phase: str | None = None) -> list[DeviceSample]:
        """Optionally switch phase, then read every device now and record it."""
        if self.source is None:
            return []
        with self._lock:
            if phase is not None:
                self.phase = phase
            try:
                samples = self.source.read()
            except MeterError as e:
                self.errors.append(str(e))
                return []
            self.samples.extend(TaggedSample(self.phase, s) for s in samples)
            return samples

    def stop(self) -> None:
        """Stop the thread and release the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.source is not None:
            self.source.close()

    def between(self, device: str, t0_s: float, t1_s: float) -> list[DeviceSample]:
        """Samples of `device` taken within [t0_s, t1_s], in time order."""
        with self._lock:
            found = [t.sample for t in self.samples if t.sample.device == device]
        return sorted((s for s in found if t0_s <= s.t_s <= t1_s), key=lambda s: s.t_s)

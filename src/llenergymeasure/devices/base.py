"""The energy meter abstraction (Zeus style): begin a window, end it, get energy with provenance."""

from __future__ import annotations

from abc import ABC, abstractmethod

from llenergymeasure.results.models import Energy


class EnergyMeter(ABC):
    """Measures the energy of one window; a meter is used for exactly one window."""

    method: str

    @abstractmethod
    def begin_window(self) -> None:
        """Start measuring."""

    @abstractmethod
    def end_window(self) -> Energy:
        """Stop measuring and return the window's energy with its provenance."""


class NullMeter(EnergyMeter):
    """Where nothing can be measured: energy is null with a reason, never 0."""

    method = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def begin_window(self) -> None:
        """Nothing to start."""

    def end_window(self) -> Energy:
        """A null energy carrying the reason."""
        return Energy(
            energy_j=None,
            null_reason=self.reason,
            method=self.method,
            confidence=None,
            interval_s=None,
            devices=[],
        )

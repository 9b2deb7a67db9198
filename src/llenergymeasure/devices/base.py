"""Energy meters in Zeus style: an abstract meter, device sources per vendor, a null meter."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from llenergymeasure.results.models import Energy


@dataclass(frozen=True)
class DeviceInfo:
    """One device a source can read.

    Attributes:
        device: Stable id: a GPU's UUID (``GPU-...``), ``rapl:package-0``, ...
        name: Human-readable model name.
        has_counter: Whether it exposes a cumulative energy counter.
        has_power: Whether it exposes a power reading (which one: ``power_field``).
        persistence_mode: NVIDIA persistence mode (None where not applicable).
        notes: Facts a reader of the result should know (e.g. MIG).
        power_field: The power reading ``read()`` polls, e.g. ``nvml_power_instant``
            (None where there is none, or the source has one kind only).
        nvml_index: A GPU's NVML index (PCI bus order on this machine; not an identity).
        cuda_index: A GPU's index among this process's CUDA devices (None: not known).
        identified_by: How the GPU this process uses was matched to its UUID.
    """

    device: str
    name: str
    has_counter: bool
    has_power: bool
    persistence_mode: bool | None = None
    notes: tuple[str, ...] = ()
    power_field: str | None = None
    nvml_index: int | None = None
    cuda_index: int | None = None
    identified_by: str | None = None


@dataclass(frozen=True)
class DeviceSample:
    """One reading of one device at one instant (unit in every name; None where unreadable)."""

    device: str
    t_s: float
    energy_j: float | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    memory_used_mb: float | None = None
    gpu_util_pct: float | None = None
    mem_util_pct: float | None = None
    throttle_reasons: int | None = None
    power_limit_w: float | None = None


class DeviceSource(ABC):
    """A vendor's devices, readable at any instant. Errors are translated into MeterError."""

    counter_method: str
    polling_method: str
    counter_period_s: float
    throttle_names: ClassVar[dict[int, str]] = {}

    @abstractmethod
    def devices(self) -> list[DeviceInfo]:
        """The devices this source covers."""

    @abstractmethod
    def read(self) -> list[DeviceSample]:
        """One sample per device, now. Energy counters are cumulative and wrap-corrected."""

    @abstractmethod
    def close(self) -> None:
        """Release the vendor library."""

    def compute_processes(self) -> dict[str, list[tuple[int, float | None]]] | None:
        """Each device's compute processes now, as (pid, GPU memory used in MiB or None).

        None: this source cannot list processes. A device that cannot be asked is absent.
        """
        return None

    def read_energy_j(self) -> dict[str, float | None]:
        """Every device's energy counter now (None: no counter); a source may read less.

        The counter-period probe calls this in a tight loop: a source that can read its
        counters alone (without the telemetry of ``read``) should override it.
        """
        return {s.device: s.energy_j for s in self.read()}


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

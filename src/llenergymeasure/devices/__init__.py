"""Energy meters and the factory that probes sources in order and says what it chose and why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices.base import DeviceSource, EnergyMeter, NullMeter
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.errors import MeterError
from llenergymeasure.results.models import MeterChoice

ORDER = {
    "auto": ("nvml", "rapl", "codecarbon"),
    "nvml": ("nvml",),
    "rapl": ("rapl",),
    "codecarbon": ("codecarbon",),
    "none": (),
}


@dataclass
class MeterSetup:
    """The chosen energy source: its device source (for the sampler) and a meter maker."""

    choice: MeterChoice
    source: DeviceSource | None
    make_meter: Callable[[Sampler], EnergyMeter]


def _open(name: str, measurement: MeasurementConfig, processes: int) -> MeterSetup:
    if name == "nvml":
        from llenergymeasure.devices.counter import CounterMeter
        from llenergymeasure.devices.nvml import NvmlSource

        nvml = NvmlSource()
        return MeterSetup(
            MeterChoice(requested="", chosen=name), nvml, lambda s: CounterMeter("nvml", nvml, s)
        )
    if name == "rapl":
        from llenergymeasure.devices.counter import CounterMeter
        from llenergymeasure.devices.rapl import RaplSource

        rapl = RaplSource()
        return MeterSetup(
            MeterChoice(requested="", chosen=name), rapl, lambda s: CounterMeter("rapl", rapl, s)
        )
    from llenergymeasure.devices.codecarbon import CodeCarbonMeter

    interval_s, country = measurement.codecarbon_interval_s, measurement.country_iso_code
    # Several ranks share the machine: each estimates the whole machine, counted once.
    mode = "machine" if processes > 1 else "process"
    CodeCarbonMeter(interval_s, country, mode)  # probe: raises MeterError where it cannot start
    return MeterSetup(
        MeterChoice(requested="", chosen=name),
        None,
        lambda _: CodeCarbonMeter(interval_s, country, mode),
    )


def select_meter(measurement: MeasurementConfig, processes: int = 1) -> MeterSetup:
    """Probe the requested energy sources in order; the first that opens is used.

    `auto` tries NVML (GPU runs only), then RAPL, then CodeCarbon's estimate. An explicitly
    requested source that cannot open is an error; `auto` records why each was refused.

    Raises:
        MeterError: If an explicitly requested source is unavailable.
    """
    requested = measurement.meter
    refused: dict[str, str] = {}
    for name in ORDER[requested]:
        if requested == "auto" and name == "nvml" and measurement.device != "cuda":
            refused[name] = "the run is on the CPU, not a GPU"
            continue
        try:
            setup = _open(name, measurement, processes)
        except MeterError as e:
            if requested != "auto":
                raise
            refused[name] = str(e)
            continue
        setup.choice = MeterChoice(requested=requested, chosen=name, refused=refused)
        return setup
    reason = (
        "energy not measured: meter 'none' was configured"
        if requested == "none"
        else "no energy source available: " + "; ".join(f"{k}: {v}" for k, v in refused.items())
    )
    return MeterSetup(
        MeterChoice(requested=requested, chosen="none", refused=refused),
        None,
        lambda _: NullMeter(reason),
    )


__all__ = ["EnergyMeter", "MeterSetup", "NullMeter", "select_meter"]

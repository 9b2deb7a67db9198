"""CodeCarbon's offline tracker as an energy meter (no network)."""

from __future__ import annotations

import logging
import time

from llenergymeasure.devices.base import EnergyMeter
from llenergymeasure.devices.carbon import J_PER_KWH
from llenergymeasure.errors import MeterError
from llenergymeasure.results.models import Energy


class CodeCarbonMeter(EnergyMeter):
    """Energy from `codecarbon.OfflineEmissionsTracker`.

    CodeCarbon reads RAPL/NVML counters where they exist, but always models RAM power
    (and, without RAPL, CPU power from load and TDP), so its total is labelled `estimated`.
    """

    method = "codecarbon"

    def __init__(
        self, interval_s: float, country_iso_code: str, tracking_mode: str = "process"
    ) -> None:
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self.interval_s = interval_s
        try:
            self.tracker = OfflineEmissionsTracker(
                country_iso_code=country_iso_code,
                measure_power_secs=interval_s,
                save_to_file=False,
                log_level="error",
                tracking_mode=tracking_mode,
                allow_multiple_runs=True,
            )
        except Exception as e:  # codecarbon raises bare exceptions on bad hosts
            raise MeterError(f"codecarbon could not start: {e}") from e
        self._start_s = 0.0

    def begin_window(self) -> None:
        """Start the tracker."""
        self._start_s = time.perf_counter()
        self.tracker.start()

    def end_window(self) -> Energy:
        """Stop the tracker and convert its kWh into joules."""
        self.tracker.stop()
        duration_s = time.perf_counter() - self._start_s
        data = self.tracker.final_emissions_data
        hardware = [str(h) for h in self.tracker._conf.get("hardware", [])]
        components = {
            "cpu_j": data.cpu_energy * J_PER_KWH,
            "ram_j": data.ram_energy * J_PER_KWH,
        }
        notes = [
            f"codecarbon {data.codecarbon_version} hardware: {', '.join(hardware)}",
            f"mean power: cpu {data.cpu_power:.1f} W, ram {data.ram_power:.1f} W (modelled)",
        ]
        if data.gpu_count and data.gpu_energy:
            components["gpu_j"] = data.gpu_energy * J_PER_KWH
        elif data.gpu_count:  # CodeCarbon's silent 0 on GPUs without an energy counter
            notes.append(
                "GPUs present but CodeCarbon reported 0 GPU energy: GPU energy is "
                "missing from energy_j, not zero"
            )
        return Energy(
            energy_j=data.energy_consumed * J_PER_KWH,
            method=self.method,
            confidence="estimated",
            interval_s=self.interval_s,
            devices=hardware,
            components_j=components,
            meter_duration_s=duration_s,
            notes=notes,
        )

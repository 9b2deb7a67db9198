"""Intel/AMD RAPL energy counters from the Linux powercap tree."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from llenergymeasure.devices.base import DeviceInfo, DeviceSample, DeviceSource
from llenergymeasure.errors import MeterError

POWERCAP_ROOT_ENV = "LLEM_POWERCAP_ROOT"
DEFAULT_ROOT = "/sys/class/powercap"


@dataclass
class _Zone:
    device: str
    path: Path
    max_range_uj: int
    last_raw_uj: int
    wraps: int = 0


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as e:
        raise MeterError(
            f"RAPL: permission denied reading {path}; since Linux 5.10 energy_uj is root-only: "
            f"run as root or `sudo chmod o+r {path.parent}/*/energy_uj {path}`"
        ) from e
    except (OSError, ValueError) as e:
        raise MeterError(f"RAPL: cannot read {path}: {e}") from e


class RaplSource(DeviceSource):
    """CPU package and DRAM zones of RAPL.

    Package zones already contain their `core`/`uncore` subzones, so only packages and
    DRAM are counted (no double counting); `psys` is skipped.
    """

    counter_method = "rapl"
    polling_method = "rapl"
    counter_period_s = 0.001  # RAPL updates about every millisecond

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.environ.get(POWERCAP_ROOT_ENV, DEFAULT_ROOT))
        self._zones = self._discover()
        if not self._zones:
            raise MeterError(f"RAPL: no intel-rapl/amd-rapl package zone under {self.root}")

    def _discover(self) -> list[_Zone]:
        if not self.root.is_dir():
            return []
        zones = []
        for path in sorted(self.root.glob("*-rapl:*")):
            if not (path / "name").is_file():
                continue
            name = (path / "name").read_text().strip()
            depth = path.name.count(":")
            is_package = depth == 1 and name.startswith("package")
            is_dram = name == "dram"
            if not (is_package or is_dram):
                continue
            parent = path.name.split(":")[1]
            device = f"rapl:{name}" if is_package else f"rapl:dram-{parent}"
            zones.append(
                _Zone(
                    device=device,
                    path=path / "energy_uj",
                    max_range_uj=_read_int(path / "max_energy_range_uj"),
                    last_raw_uj=_read_int(path / "energy_uj"),
                )
            )
        return zones

    def devices(self) -> list[DeviceInfo]:
        """Packages and DRAM zones."""
        return [
            DeviceInfo(device=z.device, name=z.device, has_counter=True, has_power=False)
            for z in self._zones
        ]

    def read(self) -> list[DeviceSample]:
        """Cumulative energy per zone since discovery, corrected for counter wraparound.

        Reads must come more often than one wrap period (minutes at full load); the
        sampler's 100 ms default guarantees it.
        """
        samples = []
        for zone in self._zones:
            raw = _read_int(zone.path)
            if raw < zone.last_raw_uj:
                zone.wraps += 1
            zone.last_raw_uj = raw
            total_uj = raw + zone.wraps * zone.max_range_uj
            samples.append(
                DeviceSample(device=zone.device, t_s=time.time(), energy_j=total_uj / 1e6)
            )
        return samples

    def close(self) -> None:
        """Nothing to release: files are opened per read."""

"""A fake Linux powercap tree (RAPL zones as sysfs lays them out) in a temporary directory."""

from __future__ import annotations

from pathlib import Path


class FakePowercap:
    """Zones are flat `intel-rapl:<pkg>[:<sub>]` directories like /sys/class/powercap.

    Args:
        root: Directory to build the tree in.
        max_energy_range_uj: Counter range before it wraps to 0.
    """

    def __init__(self, root: Path, max_energy_range_uj: int = 262_143_328_850) -> None:
        self.root = root
        self.max_energy_range_uj = max_energy_range_uj
        (root / "intel-rapl").mkdir(parents=True, exist_ok=True)  # the control type, not a zone

    def zone(self, zone_id: str, name: str, energy_uj: int = 0) -> Path:
        """Create zone `intel-rapl:<zone_id>` with `name` and a counter value."""
        path = self.root / f"intel-rapl:{zone_id}"
        path.mkdir(exist_ok=True)
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{self.max_energy_range_uj}\n")
        self.set(zone_id, energy_uj)
        return path

    def set(self, zone_id: str, energy_uj: int) -> None:
        """Set a zone's counter (wrapping like the hardware)."""
        value = energy_uj % self.max_energy_range_uj
        (self.root / f"intel-rapl:{zone_id}" / "energy_uj").write_text(f"{value}\n")

    def server(self) -> FakePowercap:
        """Two packages, each with core and uncore subzones, and one DRAM zone on package 0."""
        for pkg in ("0", "1"):
            self.zone(pkg, f"package-{pkg}", 1_000_000)
            self.zone(f"{pkg}:0", "core", 500_000)
            self.zone(f"{pkg}:1", "uncore", 100_000)
        self.zone("0:2", "dram", 2_000_000)
        return self

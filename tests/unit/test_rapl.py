"""RAPL through a fake powercap tree: zones, wraparound, permissions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from llenergymeasure.devices.counter import CounterMeter
from llenergymeasure.devices.rapl import RaplSource
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.errors import MeterError
from tests.fakes.powercap import FakePowercap


def test_packages_and_dram_counted_once_core_and_uncore_not(tmp_path):
    tree = FakePowercap(tmp_path).server()
    source = RaplSource(tmp_path)
    assert [d.device for d in source.devices()] == [
        "rapl:package-0",
        "rapl:dram-0",
        "rapl:package-1",
    ]
    sampler = Sampler(source, interval_s=10)  # no background reads: boundaries only
    meter = CounterMeter("rapl", source, sampler)
    meter.begin_window()
    tree.set("0", 1_000_000 + 30_000_000)  # +30 J
    tree.set("0:0", 500_000 + 20_000_000)  # core is inside package-0: must not add
    tree.set("1", 1_000_000 + 10_000_000)  # +10 J
    tree.set("0:2", 2_000_000 + 5_000_000)  # +5 J DRAM
    energy = meter.end_window()
    per_device = {d.device: d.energy_j for d in energy.per_device}
    assert per_device == pytest.approx(
        {"rapl:package-0": 30.0, "rapl:package-1": 10.0, "rapl:dram-0": 5.0}
    )
    assert energy.energy_j == pytest.approx(45.0)
    assert energy.confidence == "measured" and energy.method == "rapl"
    assert all(d.method == "rapl" for d in energy.per_device)


def test_counter_wraparound_uses_max_energy_range(tmp_path):
    tree = FakePowercap(tmp_path, max_energy_range_uj=100_000_000)
    tree.zone("0", "package-0", 99_000_000)
    source = RaplSource(tmp_path)
    sampler = Sampler(source, interval_s=10)
    meter = CounterMeter("rapl", source, sampler)
    meter.begin_window()
    tree.set("0", 99_000_000 + 3_000_000)  # wraps to 2_000_000
    sampler.mark()
    tree.set("0", 99_000_000 + 3_000_000 + 4_000_000)
    energy = meter.end_window()
    assert energy.energy_j == pytest.approx(7.0)


def test_no_zone_is_a_clear_error(tmp_path):
    with pytest.raises(MeterError, match="no intel-rapl/amd-rapl package zone under"):
        RaplSource(tmp_path)


# Root reads any file; drop the capabilities that let it, as an unprivileged user lacks them.
DROP_ROOT_READ = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root needs setpriv to drop"
)
def test_permission_error_names_the_file_and_the_fix(tmp_path):
    tree = FakePowercap(tmp_path)
    zone = tree.zone("0", "package-0", 5)
    os.chmod(zone / "energy_uj", 0o000)  # like energy_uj for non-root since Linux 5.10
    code = (
        "from llenergymeasure.devices.rapl import RaplSource\n"
        "from llenergymeasure.errors import MeterError\n"
        f"try:\n    RaplSource({str(tmp_path)!r})\nexcept MeterError as e:\n    print(e)\n"
    )
    prefix = DROP_ROOT_READ if os.geteuid() == 0 else []
    cmd = [*prefix, sys.executable, "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    message = out.stdout.strip()
    assert message.startswith(f"RAPL: permission denied reading {zone / 'energy_uj'}"), out.stderr
    assert "chmod o+r" in message

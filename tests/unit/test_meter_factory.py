"""The meter factory: `auto` fallbacks on this host and on fake RAPL trees."""

from __future__ import annotations

import pytest

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices import select_meter
from llenergymeasure.errors import MeterError
from tests.fakes.powercap import FakePowercap


@pytest.fixture
def no_hardware(monkeypatch, tmp_path):
    """This CI host: no NVIDIA driver, and an empty powercap tree."""
    monkeypatch.setenv("LLEM_POWERCAP_ROOT", str(tmp_path / "empty"))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)


def test_auto_on_a_cpu_host_without_counters_falls_back_to_codecarbon(no_hardware):
    setup = select_meter(MeasurementConfig(meter="auto", device="cuda"))
    assert setup.choice.chosen == "codecarbon"
    assert "libnvidia-ml.so.1 not found" in setup.choice.refused["nvml"]
    assert "no intel-rapl/amd-rapl package zone" in setup.choice.refused["rapl"]
    assert setup.source is None


def test_auto_on_cpu_runs_skips_nvml_with_a_reason(no_hardware):
    setup = select_meter(MeasurementConfig(meter="auto", device="cpu"))
    assert setup.choice.refused["nvml"] == "the run is on the CPU, not a GPU"
    assert setup.choice.chosen == "codecarbon"
    energy_meter = setup.make_meter(None)
    energy_meter.begin_window()
    energy = energy_meter.end_window()
    assert energy.method == "codecarbon" and energy.confidence == "estimated"
    assert energy.energy_j is not None and energy.energy_j > 0


def test_auto_picks_rapl_where_the_tree_exists(monkeypatch, tmp_path):
    FakePowercap(tmp_path).server()
    monkeypatch.setenv("LLEM_POWERCAP_ROOT", str(tmp_path))
    setup = select_meter(MeasurementConfig(meter="auto"))
    assert setup.choice.chosen == "rapl"
    assert [d.device for d in setup.source.devices()][0] == "rapl:package-0"


def test_an_explicit_meter_that_cannot_open_is_an_error(no_hardware):
    with pytest.raises(MeterError, match="RAPL"):
        select_meter(MeasurementConfig(meter="rapl"))


def test_meter_none_gives_null_energy_with_a_reason(no_hardware):
    setup = select_meter(MeasurementConfig(meter="none"))
    energy = setup.make_meter(None).end_window()
    assert energy.energy_j is None and energy.confidence is None
    assert "meter 'none'" in energy.null_reason

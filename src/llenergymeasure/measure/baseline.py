"""Cooldown to idle, then idle power over `baseline_s`, cached per host+devices with a TTL."""

from __future__ import annotations

import hashlib
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices import MeterSetup
from llenergymeasure.measure.sampler import Sampler
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import Baseline

SETTLE_W = 1.0  # power within this many watts of the previous second ...
SETTLE_C = 0.5  # ... and temperature within this many degrees: the device is idle


def _cache_path(cache_dir: Path, setup: MeterSetup, devices: list[str]) -> Path:
    key = hashlib.sha256("|".join(devices).encode()).hexdigest()[:10]
    return cache_dir / f"{socket.gethostname()}_{setup.choice.chosen}_{key}.json"


def cooldown(sampler: Sampler, max_s: float) -> float:
    """Wait (at most `max_s`) until every device's power and temperature stop falling.

    Compares one-second means; returns the seconds waited (0 without power telemetry).
    """
    if sampler.source is None or max_s <= 0:
        return 0.0
    sampler.phase = "cooldown"
    start = time.perf_counter()
    previous: tuple[float, float] | None = None
    while time.perf_counter() - start < max_s:
        t0 = time.time()
        time.sleep(1.0)
        power = [s.sample.power_w for s in sampler.samples[-200:] if s.sample.t_s >= t0]
        temps = [s.sample.temperature_c for s in sampler.samples[-200:] if s.sample.t_s >= t0]
        power_w = sum(p for p in power if p is not None) / max(1, len(power))
        temp_c = sum(t for t in temps if t is not None) / max(1, len(temps))
        if previous is not None and (
            abs(power_w - previous[0]) <= SETTLE_W and abs(temp_c - previous[1]) <= SETTLE_C
        ):
            break
        previous = (power_w, temp_c)
    return time.perf_counter() - start


def idle_baseline(
    setup: MeterSetup, sampler: Sampler, measurement: MeasurementConfig, cache_dir: Path | None
) -> Baseline | None:
    """Measure (or reuse) idle power. None when disabled (`baseline_s` 0) or nothing meters."""
    duration_s, ttl_s = measurement.baseline_s, measurement.baseline_ttl_s
    if duration_s <= 0 or setup.choice.chosen == "none":
        return None
    devices = [d.device for d in setup.source.devices()] if setup.source else ["codecarbon"]
    path = _cache_path(cache_dir, setup, devices) if cache_dir is not None else None
    if path is not None and path.exists() and ttl_s > 0:
        try:
            cached = Baseline.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            cached = None
        if cached is not None and cached.measured_at is not None:
            measured = datetime.fromisoformat(cached.measured_at)
            age_s = (datetime.now(UTC) - measured).total_seconds()
            if age_s <= ttl_s:
                return cached.model_copy(update={"cached": True, "age_s": age_s})
    cooldown_s = cooldown(sampler, max_s=measurement.cooldown_max_s)
    sampler.phase = "baseline"
    meter = setup.make_meter(sampler)
    meter.begin_window()
    time.sleep(duration_s)
    energy = meter.end_window()
    span_s = energy.meter_duration_s or duration_s
    per_device = {
        d.device: d.energy_j / span_s for d in energy.per_device if d.energy_j is not None
    }
    baseline = Baseline(
        idle_power_w=None if energy.energy_j is None else energy.energy_j / span_s,
        null_reason=energy.null_reason,
        per_device_w=per_device,
        method=energy.method,
        duration_s=span_s,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        age_s=0.0,
        cooldown_s=cooldown_s,
    )
    if path is not None and baseline.idle_power_w is not None:
        write_model_atomic(path, baseline)
    return baseline

"""Cooldown to idle before every run; idle power over `baseline_s`, cached with a TTL."""

from __future__ import annotations

import hashlib
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices import MeterSetup
from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import Baseline, Cooldown

SETTLE_W = 1.0  # power within this many watts of the previous second ...
SETTLE_C = 0.5  # ... and temperature within this many degrees: the device is idle


def _cache_path(cache_dir: Path, setup: MeterSetup, devices: list[str], variant: str) -> Path:
    key = hashlib.sha256("|".join([*devices, variant]).encode()).hexdigest()[:10]
    return cache_dir / f"{socket.gethostname()}_{setup.choice.chosen}_{key}.json"


def _second_mean(samples: list[DeviceSample]) -> tuple[float | None, float | None]:
    """Mean power (polled, else from the counter) and mean temperature of one device."""
    power = [s.power_w for s in samples if s.power_w is not None]
    counted = [s for s in samples if s.energy_j is not None]
    power_w: float | None = None
    if power:
        power_w = sum(power) / len(power)
    elif len(counted) >= 2 and counted[-1].t_s > counted[0].t_s:
        power_w = (counted[-1].energy_j - counted[0].energy_j) / (  # type: ignore[operator]
            counted[-1].t_s - counted[0].t_s
        )
    temps = [s.temperature_c for s in samples if s.temperature_c is not None]
    return power_w, (sum(temps) / len(temps) if temps else None)


def _settled(
    now: dict[str, tuple[float | None, float | None]],
    before: dict[str, tuple[float | None, float | None]],
) -> bool:
    """Every device's power and temperature moved less than the settle thresholds."""
    for device, (power_w, temp_c) in now.items():
        prev_w, prev_c = before.get(device, (None, None))
        if power_w is not None and (prev_w is None or abs(power_w - prev_w) > SETTLE_W):
            return False
        if temp_c is not None and (prev_c is None or abs(temp_c - prev_c) > SETTLE_C):
            return False
    return True


def cooldown(sampler: Sampler, max_s: float, meter: str) -> Cooldown:
    """Wait (at most `max_s`) until every device's power and temperature stop changing.

    Compares consecutive one-second means per device. Runs before every measured run,
    whether or not the idle baseline is cached.
    """
    if max_s <= 0:
        return Cooldown(
            cooldown_s=None, settled=None, max_s=max_s, null_reason="disabled (cooldown_max_s 0)"
        )
    if sampler.source is None:
        return Cooldown(
            cooldown_s=None,
            settled=None,
            max_s=max_s,
            null_reason=f"meter {meter!r} gives no device telemetry: idle cannot be observed",
        )
    devices = [d.device for d in sampler.source.devices()]
    sampler.phase = "cooldown"
    start = time.perf_counter()
    previous: dict[str, tuple[float | None, float | None]] | None = None
    while time.perf_counter() - start < max_s:
        t0 = time.time()
        time.sleep(1.0)
        means = {d: _second_mean(sampler.between(d, t0, time.time())) for d in devices}
        if all(p is None and c is None for p, c in means.values()):
            return Cooldown(
                cooldown_s=None,
                settled=None,
                max_s=max_s,
                null_reason="the devices report neither power nor temperature",
            )
        if previous is not None and _settled(means, previous):
            return Cooldown(cooldown_s=time.perf_counter() - start, settled=True, max_s=max_s)
        previous = means
    return Cooldown(cooldown_s=time.perf_counter() - start, settled=False, max_s=max_s)


def idle_baseline(
    setup: MeterSetup,
    sampler: Sampler,
    measurement: MeasurementConfig,
    cache_dir: Path | None,
    variant: str = "",
) -> Baseline | None:
    """Measure (or reuse) idle power of this process's devices.

    None when disabled (`baseline_s` 0) or nothing meters. The caller has cooled down first.
    `variant` names the device settings in force (a power limit, locked clocks): idle power
    depends on them, so each has its own cached baseline.
    """
    duration_s, ttl_s = measurement.baseline_s, measurement.baseline_ttl_s
    if duration_s <= 0 or setup.choice.chosen == "none":
        return None
    devices = [d.device for d in setup.source.devices()] if setup.source else ["codecarbon"]
    path = _cache_path(cache_dir, setup, devices, variant) if cache_dir is not None else None
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
    sampler.phase = "baseline"
    meter = setup.make_meter(sampler)
    start_unix_s = time.time()
    meter.begin_window()
    time.sleep(duration_s)
    energy = meter.end_window()
    end_unix_s = time.time()
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
        start_unix_s=min(
            (d.window_start_unix_s for d in energy.per_device if d.window_start_unix_s),
            default=start_unix_s,
        ),
        end_unix_s=max(
            (d.window_end_unix_s for d in energy.per_device if d.window_end_unix_s),
            default=end_unix_s,
        ),
        age_s=0.0,
    )
    if path is not None and baseline.idle_power_w is not None:
        write_model_atomic(path, baseline)
    return baseline

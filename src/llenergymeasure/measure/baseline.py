"""Cooldown to rest before every run; idle power over `baseline_s`, cached with a TTL."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from llenergymeasure.config.models import MeasurementConfig
from llenergymeasure.devices import MeterSetup
from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.measure.rest import at_rest, rest_bounds
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import Baseline, Cooldown

CHECK_S = 1.0  # how often the devices' last window is judged


def _cache_path(cache_dir: Path, setup: MeterSetup, devices: list[str], variant: str) -> Path:
    key = hashlib.sha256("|".join([*devices, variant]).encode()).hexdigest()[:10]
    return cache_dir / f"{socket.gethostname()}_{setup.choice.chosen}_{key}.json"


def _devices(setup: MeterSetup) -> list[str]:
    return [d.device for d in setup.source.devices()] if setup.source else ["codecarbon"]


def _read_cached(path: Path) -> Baseline | None:
    try:
        return Baseline.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None


def cached_idle_w(setup: MeterSetup, cache_dir: Path | None, variant: str = "") -> dict[str, float]:
    """Each device's idle power from the cached baseline, whatever its age.

    The baseline of this host, meter, device set and settings (`variant`): the level a
    cooldown waits for. Empty: none known yet.
    """
    if cache_dir is None or setup.choice.chosen == "none":
        return {}
    cached = _read_cached(_cache_path(cache_dir, setup, _devices(setup), variant))
    return dict(cached.per_device_w) if cached is not None else {}


def cooldown(
    sampler: Sampler, measurement: MeasurementConfig, meter: str, idle_w: Mapping[str, float]
) -> Cooldown:
    """Wait (at most `cooldown_max_s`) until every device is at rest (`measure.rest`).

    Every `CHECK_S` each device's samples since the wait began are judged over the last
    `cooldown_window_s`; `idle_w` holds the idle power known per device. Runs before every
    measured run, whether or not the idle baseline is cached.
    """
    max_s = measurement.cooldown_max_s
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
    bounds = rest_bounds(measurement)
    devices = [d.device for d in sampler.source.devices()]
    sampler.phase = "cooldown"
    start = time.perf_counter()
    since_s = time.time()
    while True:
        time.sleep(max(0.0, min(CHECK_S, max_s - (time.perf_counter() - start))))
        now_s = time.time()
        seen = {d: sampler.between(d, since_s, now_s) for d in devices}
        if not any(_telemetry(s) for samples in seen.values() for s in samples):
            return Cooldown(
                cooldown_s=None,
                settled=None,
                max_s=max_s,
                null_reason="the devices report neither power nor temperature",
            )
        verdicts = [at_rest(d, seen[d], now_s, bounds, idle_w.get(d)) for d in devices]
        waited_s = time.perf_counter() - start
        settled = all(v.settled for v in verdicts)
        if settled or waited_s >= max_s:
            return Cooldown(
                cooldown_s=waited_s, settled=settled, max_s=max_s, bounds=bounds, devices=verdicts
            )


def _telemetry(sample: DeviceSample) -> bool:
    return any(v is not None for v in (sample.power_w, sample.energy_j, sample.temperature_c))


def idle_baseline(
    setup: MeterSetup,
    sampler: Sampler,
    measurement: MeasurementConfig,
    cache_dir: Path | None,
    variant: str = "",
    *,
    store: bool = True,
) -> Baseline | None:
    """Measure (or reuse) idle power of this process's devices.

    None when disabled (`baseline_s` 0) or nothing meters. The caller has cooled down first.
    `variant` names the device settings in force (a power limit, locked clocks): idle power
    depends on them, so each has its own cached baseline. `store` False (the cooldown
    stopped before the devices came to rest): measured but not cached, so it never becomes
    the idle level later cooldowns wait for.
    """
    duration_s, ttl_s = measurement.baseline_s, measurement.baseline_ttl_s
    if duration_s <= 0 or setup.choice.chosen == "none":
        return None
    path = _cache_path(cache_dir, setup, _devices(setup), variant) if cache_dir else None
    if path is not None and path.exists() and ttl_s > 0:
        cached = _read_cached(path)
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
        per_device_std_w={
            d.device: d.power_std_w for d in energy.per_device if d.power_std_w is not None
        },
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
    if path is not None and store and baseline.idle_power_w is not None:
        write_model_atomic(path, baseline)
    return baseline

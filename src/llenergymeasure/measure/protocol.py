"""The measurement protocol of one run: load, cooldown, idle baseline, warmup, clean window."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from llenergymeasure.backends import create_backend
from llenergymeasure.backends.base import Backend, CacheState, PreparedPrompt, RequestTiming
from llenergymeasure.config.loader import run_id
from llenergymeasure.config.models import ExperimentConfig, MeasurementConfig
from llenergymeasure.devices import MeterSetup, select_meter
from llenergymeasure.devices.counter import probe_counter_periods
from llenergymeasure.devices.gpu_control import gpu_settings
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.measure import memory
from llenergymeasure.measure.baseline import cached_idle_w, cooldown, idle_baseline
from llenergymeasure.measure.gpu_processes import GpuProcessWatch
from llenergymeasure.measure.progress import Progress
from llenergymeasure.measure.warmup import warm_up
from llenergymeasure.results.models import (
    Baseline,
    Cooldown,
    CounterUpdatePeriod,
    Energy,
    GpuProcessCheck,
    GpuSettingsRecord,
    Warmup,
)

log = logging.getLogger(__name__)
OWN_GPUS_ENV = "LLEM_RANK_OWNS_GPUS"  # set by the launcher: this rank's GPUs are its own


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Loaded:
    """A run's engine, loaded, with its meter and sampler started and GPU settings applied."""

    backend: Backend
    setup: MeterSetup
    sampler: Sampler
    prompts: list[PreparedPrompt]
    model_load_s: float
    load_rss_mb: float | None
    load_device_mb: float | None
    gpu_settings: GpuSettingsRecord | None
    counter_periods: list[CounterUpdatePeriod]


@dataclass
class Observed(Loaded):
    """What one session observed, from the model load to the end of its window."""

    cooled: Cooldown
    baseline: Baseline | None
    warmup: Warmup
    cache: CacheState
    rss_reset_error: str | None
    started_at: str
    ended_at: str
    window_start_unix_s: float
    window_end_unix_s: float
    window_s: float
    window_perf_s: tuple[float, float]
    perf_to_unix_s: float
    passes: list[list[RequestTiming]]
    energy: Energy
    gpu_processes: GpuProcessCheck
    window_peak_rss_mb: float | None
    window_device_mb: float | None


def observe(
    config: ExperimentConfig,
    *,
    baseline_cache: Path | None,
    rank: int,
    world: int,
    barrier: Callable[[], None],
    progress: Progress,
) -> Observed:
    """Load, cool down, measure the idle baseline, warm up, then measure a clean window.

    Every rank loads, then all wait at a barrier; each cools down and measures the idle
    baseline of its own devices; all wait again before anyone warms up, and once more
    right before the windows start.
    """
    measurement = config.measurement
    progress.phase = "load"
    backend = create_backend(config)
    t_load = time.perf_counter()
    backend.load()
    model_load_s = progress.timings["model_load_s"] = time.perf_counter() - t_load
    load_rss_mb = memory.rss_mb()
    load_device_mb, _ = backend.device_memory_mb()
    prompts = backend.prepare_prompts()[rank::world]
    gpu = ExitStack()  # the GPU's settings, restored when the window is over (or on failure)
    progress.phase = "gpu_settings"
    try:
        uses_nvml = measurement.device == "cuda" or measurement.meter == "nvml"
        # GPUs shared by ranks are set (and restored) by rank 0 alone
        owner = world == 1 or rank == 0 or os.environ.get(OWN_GPUS_ENV) == "1"
        gpu_record = gpu.enter_context(
            gpu_settings(
                config.settings.gpu if owner else None, run_id(config), uses_nvml and owner
            )
        )
        setup = select_meter(measurement, world)
        # before the sampler starts: the probe reads the counters alone, as fast as it can
        counter_periods = probe_counter_periods(setup.source) if setup.source is not None else []
    except BaseException:
        gpu.close()
        backend.close()
        raise
    log.info("energy meter: %s (refused: %s)", setup.choice.chosen, setup.choice.refused or "-")
    sampler = Sampler(setup.source, measurement.sampling_interval_s)
    sampler.start()
    loaded = Loaded(
        backend=backend,
        setup=setup,
        sampler=sampler,
        prompts=prompts,
        model_load_s=model_load_s,
        load_rss_mb=load_rss_mb,
        load_device_mb=load_device_mb,
        gpu_settings=gpu_record,
        counter_periods=counter_periods,
    )
    try:
        return _protocol(config, loaded, baseline_cache, barrier, progress)
    except BaseException:
        backend.close()
        raise
    finally:
        sampler.stop()
        gpu.close()


def _protocol(
    config: ExperimentConfig,
    o: Loaded,
    baseline_cache: Path | None,
    barrier: Callable[[], None],
    progress: Progress,
) -> Observed:
    """Cooldown, idle baseline, warmup, caches reset, then the window."""
    measurement, backend, sampler, setup = config.measurement, o.backend, o.sampler, o.setup
    prompts = o.prompts
    barrier()  # every rank is loaded: nothing of this run heats the devices any more
    progress.phase = "cooldown"
    variant = config.settings.gpu.model_dump_json() if config.settings.gpu else ""
    idle_w = cached_idle_w(setup, baseline_cache, variant)
    cooled = cooldown(sampler, measurement, setup.choice.chosen, idle_w)
    if cooled.cooldown_s is not None:
        progress.timings["cooldown_s"] = cooled.cooldown_s
    progress.phase = "baseline"
    baseline = idle_baseline(
        setup, sampler, measurement, baseline_cache, variant, store=cooled.settled is not False
    )
    barrier()  # every rank's baseline is done before any rank warms up
    progress.phase = sampler.phase = "warmup"
    warmup = warm_up(backend, prompts, config.settings.batch_size, measurement, progress)
    progress.timings["warmup_s"] = warmup.duration_s
    cache = backend.reset_caches()
    backend.reset_peak_device_memory()
    rss_reset_error = memory.reset_peak_rss()
    meter = setup.make_meter(sampler)
    barrier()
    watch = GpuProcessWatch(setup.source, measurement.foreign_processes)
    watch.before_window()  # under `fail`, a foreign process stops the run here
    progress.phase = sampler.phase = "window"
    log.info("window: %d prompts, at least %g s", len(prompts), measurement.min_window_s)
    started_at = _now()
    window_start_unix_s = time.time()
    meter.begin_window()
    watch.start()
    t0 = time.perf_counter()
    perf_to_unix_s = time.time() - time.perf_counter()  # token times to the timeline's clock
    passes = _window(backend, prompts, t0, measurement, progress)
    t1 = time.perf_counter()
    window_s = t1 - t0
    window_end_unix_s = time.time()
    energy = meter.end_window()
    gpu_processes = watch.stop()
    watch.raise_if_failed()
    sampler.phase = "post"
    progress.phase, progress.detail = "finish", ""
    progress.timings["window_s"] = window_s
    return Observed(
        **vars(o),
        cooled=cooled,
        baseline=baseline,
        warmup=warmup,
        cache=cache,
        rss_reset_error=rss_reset_error,
        started_at=started_at,
        ended_at=_now(),
        window_start_unix_s=window_start_unix_s,
        window_end_unix_s=window_end_unix_s,
        window_s=window_s,
        window_perf_s=(t0, t1),
        perf_to_unix_s=perf_to_unix_s,
        passes=passes,
        energy=energy,
        gpu_processes=gpu_processes,
        window_peak_rss_mb=memory.peak_rss_mb(),
        window_device_mb=backend.device_memory_mb()[1],
    )


def _window(
    backend: Backend,
    prompts: list[PreparedPrompt],
    t0: float,
    measurement: MeasurementConfig,
    progress: Progress,
) -> list[list[RequestTiming]]:
    """Generate the prompt set, again and again until the window lasts `min_window_s`.

    Caches are reset between passes, so a pass never reuses the previous pass's prefills.
    """
    progress.detail = f"pass 1: {len(prompts)} prompts"
    passes = [backend.run(prompts)]
    while (
        time.perf_counter() - t0 < measurement.min_window_s
        and len(passes) < measurement.max_window_passes
    ):
        backend.reset_caches()
        progress.detail = f"pass {len(passes) + 1}: {len(prompts)} prompts (min_window_s)"
        passes.append(backend.run(prompts))
    return passes

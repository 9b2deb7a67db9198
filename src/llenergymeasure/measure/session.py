"""One measurement session: load, cooldown, idle baseline, warm up, clean window, write."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llenergymeasure import environment
from llenergymeasure.backends import create_backend
from llenergymeasure.backends.base import Backend, CacheState, PreparedPrompt, RequestTiming
from llenergymeasure.config.loader import config_hash, configuration_id, run_id
from llenergymeasure.config.models import ExperimentConfig, MeasurementConfig
from llenergymeasure.devices import MeterSetup, select_meter
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.measure import memory
from llenergymeasure.measure.baseline import cooldown, idle_baseline
from llenergymeasure.measure.efficiency import normalised_metrics
from llenergymeasure.measure.energy import adjust_for_idle, with_facility
from llenergymeasure.measure.flops import run_flops
from llenergymeasure.measure.latency import latency_summary, request_result
from llenergymeasure.measure.precision import precision_for
from llenergymeasure.measure.progress import Progress
from llenergymeasure.measure.quality import window_warnings
from llenergymeasure.measure.warmup import warm_up
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import (
    Baseline,
    CacheRecord,
    Cooldown,
    Energy,
    Flops,
    FlopsResult,
    Memory,
    PrecisionMetadata,
    RequestResult,
    RunResult,
    Throughput,
    Timeseries,
    Timing,
    TokenCounts,
    Warmup,
)
from llenergymeasure.results.timeseries import write_timeseries

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Observed:
    """What one session observed, from the model load to the end of its window."""

    backend: Backend
    setup: MeterSetup
    sampler: Sampler
    prompts: list[PreparedPrompt]
    model_load_s: float
    load_rss_mb: float | None
    load_device_mb: float | None
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
    passes: list[list[RequestTiming]]
    energy: Energy
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
    setup = select_meter(measurement, world)
    log.info("energy meter: %s (refused: %s)", setup.choice.chosen, setup.choice.refused or "-")
    sampler = Sampler(setup.source, measurement.sampling_interval_s)
    sampler.start()
    try:
        barrier()  # every rank is loaded: nothing of this run heats the devices any more
        progress.phase = "cooldown"
        cooled = cooldown(sampler, measurement.cooldown_max_s, setup.choice.chosen)
        if cooled.cooldown_s is not None:
            progress.timings["cooldown_s"] = cooled.cooldown_s
        progress.phase = "baseline"
        baseline = idle_baseline(setup, sampler, measurement, baseline_cache)
        barrier()  # every rank's baseline is done before any rank warms up
        progress.phase = sampler.phase = "warmup"
        warmup = warm_up(backend, prompts, config.settings.batch_size, measurement)
        progress.timings["warmup_s"] = warmup.duration_s
        cache = backend.reset_caches()
        backend.reset_peak_device_memory()
        rss_reset_error = memory.reset_peak_rss()
        meter = setup.make_meter(sampler)
        barrier()
        progress.phase = sampler.phase = "window"
        log.info("window: %d prompts, at least %g s", len(prompts), measurement.min_window_s)
        started_at = _now()
        window_start_unix_s = time.time()
        meter.begin_window()
        t0 = time.perf_counter()
        passes = _window(backend, prompts, t0, measurement)
        window_s = time.perf_counter() - t0
        window_end_unix_s = time.time()
        energy = meter.end_window()
        sampler.phase = "post"
        progress.phase = "finish"
        progress.timings["window_s"] = window_s
        return Observed(
            backend=backend,
            setup=setup,
            sampler=sampler,
            prompts=prompts,
            model_load_s=model_load_s,
            load_rss_mb=load_rss_mb,
            load_device_mb=load_device_mb,
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
            passes=passes,
            energy=energy,
            window_peak_rss_mb=memory.peak_rss_mb(),
            window_device_mb=backend.device_memory_mb()[1],
        )
    except BaseException:
        backend.close()
        raise
    finally:
        sampler.stop()


def measure(
    config: ExperimentConfig,
    *,
    out_dir: Path | None = None,
    baseline_cache: Path | None = None,
    calflops_profile: Path | None = None,
    rank: int = 0,
    world: int = 1,
    sync: Callable[[], None] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Measure one run (or one rank of it) end to end.

    Args:
        config: The resolved run.
        out_dir: The run's directory; rank 0 writes timeseries.parquet there (None: nothing).
        baseline_cache: Directory caching idle baselines across a campaign's runs.
        calflops_profile: calflops counts of this model (`llem flops-profile`), if any.
        rank: This process's rank in a multi-process run; it measures prompts[rank::world].
        world: Number of ranks.
        sync: Barrier across ranks.
        progress: Updated with the current phase, for a failure record.
    """
    settings, measurement = config.settings, config.measurement
    rid = run_id(config)
    _gap(measurement.gap_s)
    progress = progress if progress is not None else Progress()
    o = observe(
        config,
        baseline_cache=baseline_cache,
        rank=rank,
        world=world,
        barrier=sync or (lambda: None),
        progress=progress,
    )
    model_config, config_error = _model_config(o.backend)
    baseline = o.baseline
    energy = o.energy.model_copy(update={"meter_choice": o.setup.choice, "baseline": baseline})
    energy = adjust_for_idle(
        energy,
        baseline.per_device_w if baseline else {},
        baseline.idle_power_w if baseline else None,
        o.window_s,
    )
    energy = with_facility(energy, measurement)
    requests = [request_result(t, n) for n, timings in enumerate(o.passes) for t in timings]
    output_tokens = sum(r.output_tokens for r in requests)
    input_tokens = sum(r.input_tokens for r in requests)
    engine_quantization = settings.vllm.quantization if settings.vllm else None
    precision = precision_for(settings.dtype, settings.quantization, engine_quantization)
    flops = _guarded_flops(model_config, config_error, requests, precision, calflops_profile)
    return RunResult(
        run_id=rid,
        configuration_id=configuration_id(config),
        config_hash=config_hash(config),
        config=config,
        timing=Timing(
            started_at=o.started_at,
            ended_at=o.ended_at,
            window_s=o.window_s,
            window_passes=len(o.passes),
            model_load_s=o.model_load_s,
            warmup_s=o.warmup.duration_s,
            warmup_batches=o.warmup.batches,
            window_start_unix_s=o.window_start_unix_s,
            window_end_unix_s=o.window_end_unix_s,
            cooldown=o.cooled,
            warmup=o.warmup,
        ),
        tokens=TokenCounts(
            num_requests=len(requests),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            truncated_prompts=sum(p.truncated for p in o.prompts) * len(o.passes),
        ),
        throughput=Throughput(
            output_tokens_per_s=output_tokens / o.window_s,
            total_tokens_per_s=(input_tokens + output_tokens) / o.window_s,
        ),
        latency=latency_summary(requests),
        energy=energy,
        energy_per_output_token_j=_per(energy.energy_j, output_tokens),
        adjusted_energy_per_output_token_j=_per(energy.adjusted_energy_j, output_tokens),
        energy_per_output_token_null_reason=energy.null_reason,
        timeseries=_timeseries(
            o.sampler,
            o.setup.choice.chosen,
            out_dir if rank == 0 else None,
            rid,
            o.window_start_unix_s,
        ),
        precision=precision,
        flops=flops,
        normalised=normalised_metrics(output_tokens, o.window_s, energy, flops, precision),
        memory=_memory(o, measurement.device),
        cache=CacheRecord(
            prefix_caching=o.cache.prefix_caching,
            reset_before_window=o.cache.reset,
            window_cached_prompt_tokens=_cached_tokens(requests),
            window_prompt_tokens=input_tokens,
            note=o.cache.note,
        ),
        environment={**environment.collect(measurement.device), "backend": o.backend.versions()},
        warnings=_warnings(o, energy),
        requests=requests,
    )


def _warnings(o: Observed, energy: Energy) -> list[str]:
    warnings = window_warnings(energy, o.sampler, o.setup.source, o.window_s)
    if energy.adjusted_null_reason and o.baseline is not None:
        warnings.append(f"adjusted energy is null: {energy.adjusted_null_reason}")
    if o.warmup.converged is False:
        warnings.append(f"warmup {o.warmup.note}")
    if o.cooled.settled is False:
        warnings.append(f"cooldown stopped at {o.cooled.max_s:g} s before the devices settled")
    return warnings


def _model_config(backend: Backend) -> tuple[Any, str | None]:
    """The model's config for FLOPs, or why it could not be read; the backend is closed."""
    try:
        return backend.model_config(), None
    except Exception as e:  # a config we cannot read costs FLOPs, never the measured run
        return None, f"{type(e).__name__}: {e}"
    finally:
        backend.close()


def _window(
    backend: Backend, prompts: list[PreparedPrompt], t0: float, measurement: MeasurementConfig
) -> list[list[RequestTiming]]:
    """Generate the prompt set, again and again until the window lasts `min_window_s`.

    Caches are reset between passes, so a pass never reuses the previous pass's prefills.
    """
    passes = [backend.run(prompts)]
    while (
        time.perf_counter() - t0 < measurement.min_window_s
        and len(passes) < measurement.max_window_passes
    ):
        backend.reset_caches()
        passes.append(backend.run(prompts))
    return passes


def _cached_tokens(requests: list[RequestResult]) -> int | None:
    counts = [r.cached_prompt_tokens for r in requests]
    return None if any(c is None for c in counts) else sum(c or 0 for c in counts)


def _guarded_flops(
    model_config: Any,
    config_error: str | None,
    requests: list[RequestResult],
    precision: PrecisionMetadata,
    calflops_profile: Path | None,
) -> Flops:
    """FLOPs of the run, or null with the reason: counting never costs the measured run."""
    reason = None if config_error is None else f"the model config could not be read: {config_error}"
    if reason is None:
        try:
            return run_flops(model_config, requests, precision.compute, calflops_profile)
        except Exception as e:  # noqa: BLE001 - any failure of the count becomes its reason
            reason = f"FLOPs could not be counted: {type(e).__name__}: {e}"
    log.warning("%s", reason)
    return Flops(
        primary=FlopsResult(
            value=None,
            method="architecture",
            confidence=None,
            precision=precision.compute,
            null_reason=reason,
        )
    )


def _gap(gap_s: float) -> None:
    if gap_s:
        log.info("gap: pausing %.1f s before this run", gap_s)
        time.sleep(gap_s)


def _timeseries(
    sampler: Sampler, meter: str, out_dir: Path | None, rid: str, window_start_unix_s: float
) -> Timeseries:
    timeseries = Timeseries(
        path=None,
        samples=len(sampler.samples),
        interval_s=sampler.interval_s if sampler.source else None,
        null_reason=None if sampler.source else f"meter {meter!r} has no power timeline",
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_timeseries(out_dir / "timeseries.parquet", rid, sampler.samples, window_start_unix_s)
        timeseries.path = "timeseries.parquet"
    return timeseries


def _memory(o: Observed, device: str) -> Memory:
    if o.window_device_mb is not None:
        reason = None
    elif device == "cpu":
        reason = "no accelerator: run on CPU"
    else:
        reason = f"{o.backend.name}: the engine's memory is not visible from this process"
    return Memory(
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        load_rss_mb=o.load_rss_mb,
        window_peak_rss_mb=None if o.rss_reset_error else o.window_peak_rss_mb,
        window_rss_null_reason=o.rss_reset_error,
        load_device_allocated_mb=o.load_device_mb,
        peak_device_allocated_mb=o.window_device_mb,
        device_null_reason=reason,
        rss_scope="this process"
        if o.backend.name != "vllm"
        else "this process only: vLLM's engine processes are not included",
    )


def _per(energy_j: float | None, tokens: int) -> float | None:
    return energy_j / tokens if energy_j is not None and tokens else None


def run(
    config: ExperimentConfig,
    out_dir: Path,
    baseline_cache: Path | None = None,
    calflops_profile: Path | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Measure one run and write `out_dir/result.json` (and timeseries.parquet) atomically."""
    result = measure(
        config,
        out_dir=out_dir,
        baseline_cache=baseline_cache,
        calflops_profile=calflops_profile,
        progress=progress,
    )
    write_model_atomic(out_dir / "result.json", result)
    return result

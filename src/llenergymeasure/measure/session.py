"""One measurement session: load, cooldown, idle baseline, warm up, clean window, write."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llenergymeasure import environment
from llenergymeasure.backends.base import Backend, engine_facts
from llenergymeasure.backends.engine_stats import scheduler_log, tagged_samples
from llenergymeasure.config.loader import config_hash, configuration_id, run_id
from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.measure.breakdown import Breakdown, energy_breakdown, window_timeline
from llenergymeasure.measure.efficiency import normalised_metrics
from llenergymeasure.measure.energy import adjust_for_idle, with_facility
from llenergymeasure.measure.engine_view import (
    TENSORRT_REASON,
    running_points,
    scheduler_view,
    static_view,
)
from llenergymeasure.measure.flops import null_flops, run_flops
from llenergymeasure.measure.gpu_processes import describe
from llenergymeasure.measure.latency import latency_summary, request_result
from llenergymeasure.measure.precision import precision_for
from llenergymeasure.measure.progress import Progress
from llenergymeasure.measure.protocol import Observed, observe
from llenergymeasure.measure.quality import window_warnings
from llenergymeasure.measure.uncertainty import request_budget, with_budget
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import (
    CacheRecord,
    Energy,
    Flops,
    Memory,
    PrecisionMetadata,
    RequestResult,
    RunResult,
    Throughput,
    Timeseries,
    Timing,
    TokenCounts,
)
from llenergymeasure.results.phase_models import EngineView
from llenergymeasure.results.timeseries import write_timeseries
from llenergymeasure.results.validity import with_verdict

log = logging.getLogger(__name__)


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
        out_dir: The run's directory; rank 0 writes timeseries.parquet there, another rank
            process_<rank>.timeseries.parquet (None: nothing).
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
    measured = [p.period_s for p in o.counter_periods if p.period_s is not None]
    energy = o.energy.model_copy(
        update={
            "meter_choice": o.setup.choice,
            "baseline": baseline,
            "counter_update_period_s": max(measured) if measured else None,
            "counter_update_periods": o.counter_periods,
        }
    )
    energy = adjust_for_idle(
        energy,
        baseline.per_device_w if baseline else {},
        baseline.idle_power_w if baseline else None,
        o.window_s,
    )
    energy = with_facility(energy, measurement)
    energy = with_budget(
        energy,
        o.counter_periods,
        baseline.per_device_std_w if baseline else {},
        o.window_s,
    )
    requests = [request_result(t, n) for n, timings in enumerate(o.passes) for t in timings]
    output_tokens = sum(r.output_tokens for r in requests)
    breakdown = _breakdown(config, o, energy, output_tokens)
    requests = _with_energy(requests, breakdown, energy)
    input_tokens = sum(r.input_tokens for r in requests)
    engine_quantization = settings.vllm.quantization if settings.vllm else None
    trt_quantization = settings.tensorrt.quantization if settings.tensorrt else None
    precision = precision_for(
        settings.dtype, settings.quantization, engine_quantization, trt_quantization
    )
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
        energy_per_output_token_uncertainty_j=_per(energy.energy_uncertainty_j, output_tokens),
        energy_per_output_token_null_reason=energy.null_reason,
        timeseries=_timeseries(o, out_dir, rid, name=timeseries_name(rank)),
        engine_view=_engine_view(config, o),
        precision=precision,
        flops=flops,
        normalised=normalised_metrics(output_tokens, o.window_s, energy, flops, precision),
        memory=_memory(o, measurement.device),
        gpu_settings=o.gpu_settings,
        cache=CacheRecord(
            prefix_caching=o.cache.prefix_caching,
            reset_before_window=o.cache.reset,
            window_cached_prompt_tokens=_cached_tokens(requests),
            window_prompt_tokens=input_tokens,
            note=o.cache.note,
        ),
        environment=_environment(measurement.device, o.backend),
        warnings=_warnings(o, energy),
        phases=breakdown.phases,
        steady_state=breakdown.steady,
        gpu_processes=o.gpu_processes,
        requests=requests,
    )


def _engine_view(config: ExperimentConfig, o: Observed) -> EngineView:
    log = scheduler_log(o.backend)
    if log is not None:
        return scheduler_view(
            log, o.window_start_unix_s, o.window_end_unix_s, config.settings.batch_size
        )
    if config.backend == "transformers":
        return static_view(o.passes, config.settings.batch_size)
    return EngineView(source=config.backend, null_reason=TENSORRT_REASON)


def _breakdown(config: ExperimentConfig, o: Observed, energy: Energy, tokens: int) -> Breakdown:
    """Phase split, steady state and per-request energy of the window."""
    timeline, reason = window_timeline(energy, o.sampler, o.setup.source, o.setup.choice.chosen)
    return energy_breakdown(
        backend=config.backend,
        max_num_seqs=config.settings.batch_size,
        passes=o.passes,
        window_perf_s=o.window_perf_s,
        perf_to_unix_s=o.perf_to_unix_s,
        window_start_unix_s=o.window_start_unix_s,
        energy=energy,
        timeline=timeline,
        timeline_null_reason=reason,
        output_tokens=tokens,
        engine_running=running_points(scheduler_log(o.backend), -o.perf_to_unix_s),
    )


def _with_energy(
    requests: list[RequestResult], breakdown: Breakdown, energy: Energy
) -> list[RequestResult]:
    """Each request with its share of the window energy and budget, or null with the reason."""
    out = []
    for r in requests:
        energy_j = breakdown.request_energy_j.get((r.pass_index, r.index))
        reason = breakdown.request_null_reason or (
            "the request yielded no token" if energy_j is None else None
        )
        update = {
            "energy_j": energy_j,
            "energy_null_reason": reason,
            "energy_uncertainty_j": request_budget(energy_j, energy)
            if energy_j is not None
            else None,
        }
        out.append(r.model_copy(update=update))
    return out


def _warnings(o: Observed, energy: Energy) -> list[str]:
    warnings = window_warnings(energy, o.sampler, o.setup.source, o.window_s)
    if energy.adjusted_null_reason and o.baseline is not None:
        warnings.append(f"adjusted energy is null: {energy.adjusted_null_reason}")
    if o.warmup.converged is False:
        warnings.append(f"warmup {o.warmup.note}")
    if o.gpu_processes.foreign:
        warnings.append(
            f"other processes used the run's GPUs: {describe(o.gpu_processes.foreign)}"
        )
    if o.cooled.settled is False:
        warnings.append(f"cooldown stopped at {o.cooled.max_s:g} s before the devices settled")
    return warnings


def _environment(device: str, backend: Backend) -> dict[str, Any]:
    """Where the run ran, the backend's versions and, where it has them, its engine facts."""
    found = {**environment.collect(device), "backend": backend.versions()}
    facts = engine_facts(backend)
    return {**found, "engine": facts} if facts else found


def _model_config(backend: Backend) -> tuple[Any, str | None]:
    """The model's config for FLOPs, or why it could not be read; the backend is closed."""
    try:
        return backend.model_config(), None
    except Exception as e:  # a config we cannot read costs FLOPs, never the measured run
        return None, f"{type(e).__name__}: {e}"
    finally:
        backend.close()


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
    """FLOPs of the run, or null with the reason: counting never costs the measured run.

    `run_flops` itself never raises; this adds the case where the config was not readable.
    """
    if config_error is None:
        return run_flops(model_config, requests, precision.compute, calflops_profile)
    reason = f"the model config could not be read: {config_error}"
    log.warning("%s", reason)
    return null_flops(reason, precision.compute)


def _gap(gap_s: float) -> None:
    if gap_s:
        log.info("gap: pausing %.1f s before this run", gap_s)
        time.sleep(gap_s)


def timeseries_name(rank: int) -> str:
    """The timeline file of a rank: the run's for rank 0, its own for the others.

    The aggregation of a multi-process run reads every rank's (a device the ranks share
    and that has no energy counter is integrated from all their power samples).
    """
    return "timeseries.parquet" if rank == 0 else f"process_{rank}.timeseries.parquet"


def _timeseries(o: Observed, out_dir: Path | None, rid: str, *, name: str) -> Timeseries:
    """The devices' samples and the engine's scheduler steps, in one timeline file."""
    sampler, meter = o.sampler, o.setup.choice.chosen
    log = scheduler_log(o.backend)
    engine = tagged_samples(log, o.window_start_unix_s, o.window_end_unix_s) if log else []
    timeseries = Timeseries(
        path=None,
        samples=len(sampler.samples),
        interval_s=sampler.interval_s if sampler.source else None,
        null_reason=None if sampler.source else f"meter {meter!r} has no power timeline",
        engine_samples=len(engine),
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_timeseries(
            out_dir / name, rid, [*sampler.samples, *engine], o.window_start_unix_s
        )
        timeseries.path = name
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
        rss_scope=ENGINE_PROCESSES.get(o.backend.name, "this process"),
    )


ENGINE_PROCESSES = {
    "vllm": "this process only: vLLM's engine processes are not included",
    "tensorrt": "this process only: TensorRT-LLM's executor worker processes are not included",
}


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
    result = with_verdict(result)
    write_model_atomic(out_dir / "result.json", result)
    return result

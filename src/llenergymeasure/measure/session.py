"""One measurement session: load, idle baseline, warm up, measure a window, write atomically."""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from llenergymeasure import environment
from llenergymeasure.backends import create_backend
from llenergymeasure.config.loader import config_hash, configuration_id, run_id
from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.devices import select_meter
from llenergymeasure.measure.baseline import idle_baseline
from llenergymeasure.measure.efficiency import normalised_metrics
from llenergymeasure.measure.energy import finalize_energy
from llenergymeasure.measure.flops import run_flops
from llenergymeasure.measure.latency import latency_summary, request_result
from llenergymeasure.measure.precision import precision_for
from llenergymeasure.measure.quality import window_warnings
from llenergymeasure.measure.sampler import Sampler
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import (
    Memory,
    RunResult,
    Throughput,
    Timeseries,
    Timing,
    TokenCounts,
)
from llenergymeasure.results.timeseries import write_timeseries

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def measure(
    config: ExperimentConfig,
    *,
    out_dir: Path | None = None,
    baseline_cache: Path | None = None,
    calflops_profile: Path | None = None,
    rank: int = 0,
    world: int = 1,
    sync: Callable[[], None] | None = None,
) -> RunResult:
    """Measure one run (or one rank of it) end to end.

    Args:
        config: The resolved run.
        out_dir: The run's directory; rank 0 writes timeseries.parquet there (None: nothing).
        baseline_cache: Directory caching idle baselines across a campaign's runs.
        calflops_profile: calflops counts of this model (`llem flops-profile`), if any.
        rank: This process's rank in a multi-process run; it measures prompts[rank::world].
        world: Number of ranks.
        sync: Barrier across ranks, called right before the window starts.
    """
    settings, measurement = config.settings, config.measurement
    rid = run_id(config)
    _gap(measurement.gap_s)
    backend = create_backend(config)
    t_load = time.perf_counter()
    backend.load()
    model_load_s = time.perf_counter() - t_load
    prompts = backend.prepare_prompts()[rank::world]
    warmup_prompts = prompts[: measurement.warmup_batches * settings.batch_size]

    setup = select_meter(measurement, world)
    log.info("energy meter: %s (refused: %s)", setup.choice.chosen, setup.choice.refused or "-")
    sampler = Sampler(setup.source, measurement.sampling_interval_s)
    sampler.start()
    try:
        # One idle baseline per run: rank 0's covers the devices every rank meters.
        baseline = idle_baseline(setup, sampler, measurement, baseline_cache) if rank == 0 else None
        sampler.phase = "warmup"
        t_warm = time.perf_counter()
        if warmup_prompts:
            backend.run(warmup_prompts)
        warmup_s = time.perf_counter() - t_warm

        meter = setup.make_meter(sampler)
        if sync is not None:
            sync()
        sampler.phase = "window"
        started_at = _now()
        window_start_unix_s = time.time()
        meter.begin_window()
        t0 = time.perf_counter()
        timings = backend.run(prompts)
        window_s = time.perf_counter() - t0
        window_end_unix_s = time.time()
        energy = meter.end_window()
        sampler.phase = "post"
        ended_at = _now()
        model_config = backend.model_config()
    finally:
        sampler.stop()
        backend.close()

    energy = finalize_energy(energy, baseline, window_s, measurement, setup.choice)
    requests = [request_result(t) for t in timings]
    output_tokens = sum(r.output_tokens for r in requests)
    input_tokens = sum(r.input_tokens for r in requests)
    warnings = window_warnings(energy, sampler, setup.source, window_s)
    engine_quantization = settings.vllm.quantization if settings.vllm else None
    precision = precision_for(settings.dtype, settings.quantization, engine_quantization)
    flops = run_flops(model_config, requests, precision.compute, calflops_profile)
    timeseries = _timeseries(
        sampler, setup.choice.chosen, out_dir if rank == 0 else None, rid, window_start_unix_s
    )
    return RunResult(
        run_id=rid,
        configuration_id=configuration_id(config),
        config_hash=config_hash(config),
        config=config,
        timing=Timing(
            started_at=started_at,
            ended_at=ended_at,
            window_s=window_s,
            model_load_s=model_load_s,
            warmup_s=warmup_s,
            warmup_batches=measurement.warmup_batches,
            window_start_unix_s=window_start_unix_s,
            window_end_unix_s=window_end_unix_s,
        ),
        tokens=TokenCounts(
            num_requests=len(requests),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            truncated_prompts=sum(p.truncated for p in prompts),
        ),
        throughput=Throughput(
            output_tokens_per_s=output_tokens / window_s,
            total_tokens_per_s=(input_tokens + output_tokens) / window_s,
        ),
        latency=latency_summary(requests),
        energy=energy,
        energy_per_output_token_j=_per(energy.energy_j, output_tokens),
        adjusted_energy_per_output_token_j=_per(energy.adjusted_energy_j, output_tokens),
        energy_per_output_token_null_reason=energy.null_reason,
        timeseries=timeseries,
        precision=precision,
        flops=flops,
        normalised=normalised_metrics(output_tokens, window_s, energy, flops, precision),
        memory=_memory(backend.name, measurement.device, backend.peak_device_memory_mb()),
        environment={**environment.collect(measurement.device), "backend": backend.versions()},
        warnings=warnings,
        requests=requests,
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


def _memory(backend: str, device: str, device_mb: float | None) -> Memory:
    if device_mb is not None:
        reason = None
    elif device == "cpu":
        reason = "no accelerator: run on CPU"
    else:
        reason = f"{backend}: the engine's memory is not visible from this process"
    return Memory(
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_device_allocated_mb=device_mb,
        device_null_reason=reason,
        rss_scope="this process"
        if backend != "vllm"
        else "this process only: vLLM's engine processes are not included",
    )


def _per(energy_j: float | None, tokens: int) -> float | None:
    return energy_j / tokens if energy_j is not None and tokens else None


def run(
    config: ExperimentConfig,
    out_dir: Path,
    baseline_cache: Path | None = None,
    calflops_profile: Path | None = None,
) -> RunResult:
    """Measure one run and write `out_dir/result.json` (and timeseries.parquet) atomically."""
    result = measure(
        config, out_dir=out_dir, baseline_cache=baseline_cache, calflops_profile=calflops_profile
    )
    write_model_atomic(out_dir / "result.json", result)
    return result

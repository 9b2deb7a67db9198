"""One measurement session: load, warm up, measure a window, summarise, write atomically."""

from __future__ import annotations

import logging
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

from llenergymeasure import environment
from llenergymeasure.backends import create_backend
from llenergymeasure.config.loader import config_hash, run_id
from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.devices import create_meter
from llenergymeasure.measure.latency import latency_summary, request_result
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import (
    Memory,
    RunResult,
    Throughput,
    Timing,
    TokenCounts,
)

log = logging.getLogger(__name__)

SHORT_WINDOW_S = 5.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def measure(config: ExperimentConfig) -> RunResult:
    """Measure one run end to end and return its result (nothing written)."""
    settings = config.settings
    backend = create_backend(config)
    t_load = time.perf_counter()
    backend.load()
    model_load_s = time.perf_counter() - t_load
    prompts = backend.prepare_prompts()
    batches = [
        prompts[i : i + settings.batch_size] for i in range(0, len(prompts), settings.batch_size)
    ]

    warmup_batches = config.measurement.warmup_batches
    t_warm = time.perf_counter()
    for i in range(warmup_batches):
        backend.generate(batches[i % len(batches)], batch_index=-1, first_index=-1)
    warmup_s = time.perf_counter() - t_warm
    log.info("loaded in %.1f s, warmed up in %.1f s", model_load_s, warmup_s)

    meter = create_meter(config.measurement)
    started_at = _now()
    meter.begin_window()
    t0 = time.perf_counter()
    timings = []
    for batch_index, batch in enumerate(batches):
        timings += backend.generate(
            batch, batch_index, first_index=batch_index * settings.batch_size
        )
    window_s = time.perf_counter() - t0
    energy = meter.end_window()
    ended_at = _now()

    requests = [request_result(t) for t in timings]
    output_tokens = sum(r.output_tokens for r in requests)
    input_tokens = sum(r.input_tokens for r in requests)
    warnings = []
    if window_s < SHORT_WINDOW_S:
        warnings.append(
            f"measurement window {window_s:.2f} s is under {SHORT_WINDOW_S:.0f} s: "
            "energy is dominated by meter resolution; use more prompts"
        )
    if energy.confidence == "estimated":
        warnings.append(
            f"energy is estimated ({energy.method}), not measured by a hardware counter"
        )
    per_token = energy.energy_j / output_tokens if energy.energy_j is not None else None
    device_mb = backend.peak_device_memory_mb()
    return RunResult(
        run_id=run_id(config),
        config_hash=config_hash(config),
        config=config,
        timing=Timing(
            started_at=started_at,
            ended_at=ended_at,
            window_s=window_s,
            model_load_s=model_load_s,
            warmup_s=warmup_s,
            warmup_batches=warmup_batches,
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
        energy_per_output_token_j=per_token,
        energy_per_output_token_null_reason=None if per_token is not None else energy.null_reason,
        memory=Memory(
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            peak_device_allocated_mb=device_mb,
            device_null_reason=None
            if device_mb is not None
            else "no accelerator: the run was on CPU",
        ),
        environment={
            **environment.collect(config.measurement.device),
            "backend": backend.versions(),
        },
        warnings=warnings,
        requests=requests,
    )


def run(config: ExperimentConfig, out_dir: Path) -> RunResult:
    """Measure one run and write `out_dir/result.json` atomically."""
    result = measure(config)
    write_model_atomic(out_dir / "result.json", result)
    return result

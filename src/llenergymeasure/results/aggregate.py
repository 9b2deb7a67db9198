"""Fold the ranks of a multi-process run (process_<rank>.json) into one result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llenergymeasure.measure.efficiency import normalised_metrics
from llenergymeasure.measure.latency import latency_summary
from llenergymeasure.results.models import (
    DeviceEnergy,
    Energy,
    Flops,
    FlopsResult,
    ProcessSummary,
    RunResult,
    Throughput,
    TokenCounts,
)

MIN_OVERLAP = 0.5


def window_overlap(results: Sequence[RunResult]) -> float:
    """Shared fraction of the ranks' windows: common span / total span (1 = identical)."""
    starts = [r.timing.window_start_unix_s for r in results]
    ends = [r.timing.window_end_unix_s for r in results]
    total = max(ends) - min(starts)
    return max(0.0, min(ends) - max(starts)) / total if total > 0 else 1.0


def _device_union(readings: list[DeviceEnergy]) -> DeviceEnergy:
    """One device seen by several ranks: counted once, over the union of their windows."""
    timed = [d for d in readings if d.window_start_unix_s is not None]
    widest = max(
        timed or readings, key=lambda d: (d.window_end_unix_s or 0) - (d.window_start_unix_s or 0)
    )
    begins = [d.counter_begin_j for d in readings if d.counter_begin_j is not None]
    ends = [d.counter_end_j for d in readings if d.counter_end_j is not None]
    throttles = [d.throttle_s for d in readings if d.throttle_s is not None]
    temps = [d.max_temperature_c for d in readings if d.max_temperature_c is not None]
    update: dict[str, Any] = {
        "throttle_s": max(throttles) if throttles else None,
        "throttle_reasons": sorted({r for d in readings for r in d.throttle_reasons}),
        "max_temperature_c": max(temps) if temps else None,
        "window_start_unix_s": min((d.window_start_unix_s for d in timed), default=None),
        "window_end_unix_s": max((d.window_end_unix_s or 0 for d in timed), default=None),
        "idle_power_w": None,
        "adjusted_energy_j": None,
    }
    if len(begins) == len(readings) and len(ends) == len(readings):
        update |= {
            "energy_j": max(ends) - min(begins),
            "counter_begin_j": min(begins),
            "counter_end_j": max(ends),
        }
        note = f"seen by {len(readings)} ranks: counter from the earliest start to the latest end"
    else:
        note = f"seen by {len(readings)} ranks: the widest rank window is reported (no counter)"
    update["notes"] = [*widest.notes, note]
    return widest.model_copy(update=update)


def aggregate_energy(results: Sequence[RunResult], span_s: float) -> Energy:
    """Energy per unique device (never summed across ranks sharing it)."""
    first = results[0].energy
    if first.per_device:
        by_device: dict[str, list[DeviceEnergy]] = {}
        for r in results:
            for d in r.energy.per_device:
                by_device.setdefault(d.device, []).append(d)
        devices = [_device_union(readings) for readings in by_device.values()]
        unknown = [d for d in devices if d.energy_j is None]
        total = None if unknown else sum(d.energy_j or 0.0 for d in devices)
        energy = first.model_copy(
            update={
                "per_device": devices,
                "energy_j": total,
                "devices": [f"{d.device} ({d.name})" for d in devices],
                "meter_duration_s": span_s,
            }
        )
    else:  # one machine-level estimate per rank (codecarbon): the widest is the machine's
        widest = max(
            results, key=lambda r: r.timing.window_end_unix_s - r.timing.window_start_unix_s
        )
        energy = widest.energy.model_copy(
            update={
                "notes": [
                    *widest.energy.notes,
                    f"{len(results)} ranks on one machine: the widest rank's machine estimate",
                ]
            }
        )
    baseline = results[0].energy.baseline
    if energy.energy_j is not None and baseline is not None and baseline.idle_power_w is not None:
        energy = energy.model_copy(
            update={
                "adjusted_energy_j": max(0.0, energy.energy_j - baseline.idle_power_w * span_s),
                "facility_energy_j": energy.energy_j * energy.pue,
            }
        )
    return energy


def _sum_flops(results: Sequence[RunResult]) -> Flops | None:
    if any(r.flops is None for r in results):
        return None

    def total(pick: int) -> FlopsResult:
        parts = [([r.flops.primary, *r.flops.alternatives])[pick] for r in results]  # type: ignore[union-attr]
        values = [p.value for p in parts]
        value = None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]
        return parts[0].model_copy(update={"value": value})

    alternatives = len(results[0].flops.alternatives)  # type: ignore[union-attr]
    return Flops(primary=total(0), alternatives=[total(i + 1) for i in range(alternatives)])


def aggregate(results: Sequence[RunResult], files: Sequence[str]) -> RunResult:
    """The run's result from its ranks' results (ranks in order)."""
    world = len(results)
    start = min(r.timing.window_start_unix_s for r in results)
    end = max(r.timing.window_end_unix_s for r in results)
    span_s = end - start
    requests = sorted(
        (
            req.model_copy(update={"index": rank + req.index * world})
            for rank, r in enumerate(results)
            for req in r.requests
        ),
        key=lambda req: req.index,
    )
    output_tokens = sum(r.tokens.output_tokens for r in results)
    input_tokens = sum(r.tokens.input_tokens for r in results)
    energy = aggregate_energy(results, span_s)
    overlap = window_overlap(results)
    warnings = [f"rank {rank}: {w}" for rank, r in enumerate(results) for w in r.warnings]
    if overlap < MIN_OVERLAP:
        warnings.insert(
            0,
            f"the ranks' windows overlap only {overlap:.0%}: they did not run "
            "concurrently, so wall-span throughput understates them",
        )
    first = results[0]
    flops = _sum_flops(results)
    per_token = energy.energy_j / output_tokens if energy.energy_j is not None else None
    return first.model_copy(
        update={
            "timing": first.timing.model_copy(
                update={
                    "window_s": span_s,
                    "window_start_unix_s": start,
                    "window_end_unix_s": end,
                    "started_at": min(r.timing.started_at for r in results),
                    "ended_at": max(r.timing.ended_at for r in results),
                }
            ),
            "tokens": TokenCounts(
                num_requests=len(requests),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                truncated_prompts=sum(r.tokens.truncated_prompts for r in results),
            ),
            "throughput": Throughput(
                output_tokens_per_s=output_tokens / span_s,
                total_tokens_per_s=(input_tokens + output_tokens) / span_s,
            ),
            "latency": latency_summary(requests),
            "energy": energy,
            "energy_per_output_token_j": per_token,
            "adjusted_energy_per_output_token_j": (
                energy.adjusted_energy_j / output_tokens
                if energy.adjusted_energy_j is not None
                else None
            ),
            "flops": flops,
            "normalised": normalised_metrics(output_tokens, span_s, energy, flops, first.precision)
            if flops is not None and first.precision is not None
            else None,
            "memory": first.memory.model_copy(
                update={
                    "peak_rss_mb": max(r.memory.peak_rss_mb for r in results),
                    "rss_scope": f"the largest of {world} ranks",
                }
            ),
            "warnings": warnings,
            "processes": [
                ProcessSummary(
                    rank=rank,
                    file=files[rank],
                    window_start_unix_s=r.timing.window_start_unix_s,
                    window_end_unix_s=r.timing.window_end_unix_s,
                    output_tokens=r.tokens.output_tokens,
                    energy_j=r.energy.energy_j,
                )
                for rank, r in enumerate(results)
            ],
            "requests": requests,
        }
    )

"""Fold the ranks of a multi-process run (process_<rank>.json) into one result."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.measure.efficiency import normalised_metrics
from llenergymeasure.measure.energy import adjust_for_idle, with_facility
from llenergymeasure.measure.gpu_processes import merge as merge_gpu_processes
from llenergymeasure.measure.latency import latency_summary
from llenergymeasure.measure.shared_devices import device_union, machine_union
from llenergymeasure.measure.uncertainty import with_budget
from llenergymeasure.results.models import (
    Baseline,
    Cooldown,
    CooldownDevice,
    DeviceEnergy,
    Energy,
    Flops,
    FlopsResult,
    ProcessSummary,
    RunResult,
    Throughput,
    TokenCounts,
)
from llenergymeasure.results.phase_models import EngineView

MIN_OVERLAP = 0.5
NO_PHASES = (
    "multi-process run: each rank's phase split and request energies (over its own "
    "timeline) are in its process_<rank>.json; they are not combined, since ranks may share "
    "devices"
)


def window_overlap(results: Sequence[RunResult]) -> float:
    """Shared fraction of the ranks' windows: common span / total span (1 = identical)."""
    starts = [r.timing.window_start_unix_s for r in results]
    ends = [r.timing.window_end_unix_s for r in results]
    total = max(ends) - min(starts)
    return max(0.0, min(ends) - max(starts)) / total if total > 0 else 1.0


def merged_baseline(results: Sequence[RunResult]) -> Baseline | None:
    """Every rank's idle baseline of its own devices, as one (a device once, lowest rank)."""
    baselines = [r.energy.baseline for r in results if r.energy.baseline is not None]
    if not baselines:
        return None
    per_device: dict[str, float] = {}
    per_device_std: dict[str, float] = {}
    for b in baselines:
        for device, power_w in b.per_device_w.items():
            per_device.setdefault(device, power_w)
        for device, std_w in b.per_device_std_w.items():
            per_device_std.setdefault(device, std_w)
    first = baselines[0]
    unknown = [b for b in baselines if b.idle_power_w is None]
    return first.model_copy(
        update={
            "per_device_w": per_device,
            "per_device_std_w": per_device_std,
            "idle_power_w": sum(per_device.values()) if per_device else first.idle_power_w,
            "null_reason": unknown[0].null_reason if unknown else None,
            "cached": all(b.cached for b in baselines),
            "duration_s": max(b.duration_s for b in baselines),
        }
    )


def aggregate_energy(
    results: Sequence[RunResult], span_s: float, samples: Sequence[DeviceSample] = ()
) -> Energy:
    """Energy per unique device (never summed across ranks sharing it), adjusted per device.

    A device several ranks share is measured over the union of their windows
    (`shared_devices.device_union`), and so is a machine-level estimate
    (`shared_devices.machine_union`). Each device's idle power comes from the baseline of
    a rank that meters it and is subtracted over the same union; adjusted energy, facility
    energy and emissions are recomputed from the aggregated values.

    Args:
        results: The ranks' results, in rank order.
        span_s: The union of the ranks' windows (s).
        samples: Every rank's device samples (its timeline); a device without an energy
            counter that several ranks share is integrated from them.
    """
    first = results[0].energy
    if first.per_device:
        by_device: dict[str, list[DeviceEnergy]] = {}
        for r in results:
            for d in r.energy.per_device:
                by_device.setdefault(d.device, []).append(d)
        devices = [device_union(readings, samples) for readings in by_device.values()]
        unknown = [d for d in devices if d.energy_j is None]
        total = None if unknown else sum(d.energy_j or 0.0 for d in devices)
        energy = first.model_copy(
            update={
                "per_device": devices,
                "energy_j": total,
                "null_reason": (
                    "; ".join(f"{d.device}: {d.null_reason}" for d in unknown) if unknown else None
                ),
                "confidence": first.confidence if total is not None else None,
                "devices": [f"{d.device} ({d.name})" for d in devices],
                "meter_duration_s": span_s,
            }
        )
        baseline = merged_baseline(results)
    else:  # one machine-level estimate per rank (codecarbon): the machine's, over the union
        energy = machine_union(
            [r.energy for r in results],
            [(r.timing.window_start_unix_s, r.timing.window_end_unix_s) for r in results],
        )
        baseline = energy.baseline
    energy = energy.model_copy(update={"baseline": baseline})
    energy = adjust_for_idle(
        energy,
        baseline.per_device_w if baseline else {},
        baseline.idle_power_w if baseline else None,
        span_s,
    )
    energy = with_facility(energy, results[0].config.measurement)
    periods = [p for r in results for p in r.energy.counter_update_periods]
    return with_budget(energy, periods, baseline.per_device_std_w if baseline else {}, span_s)


def _fold_cooldowns(results: Sequence[RunResult]) -> Cooldown | None:
    """The ranks waited for each other: one cooldown, as long as the longest rank's.

    Settled only if every rank's was; each device's last window, an unsettled one first
    where ranks share a device.
    """
    records = [r.timing.cooldown for r in results if r.timing.cooldown is not None]
    timed = [c for c in records if c.cooldown_s is not None]
    if not timed:
        return records[0] if records else None
    devices: dict[str, CooldownDevice] = {}
    for d in sorted((d for c in timed for d in c.devices), key=lambda d: d.settled):
        devices.setdefault(d.device, d)
    return max(timed, key=lambda c: c.cooldown_s or 0.0).model_copy(
        update={
            "settled": all(c.settled for c in timed),
            "devices": sorted(devices.values(), key=lambda d: d.device),
        }
    )


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


def _largest(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _total(values: Iterable[int | None]) -> int | None:
    items = list(values)
    return None if any(v is None for v in items) else sum(v or 0 for v in items)


def aggregate(
    results: Sequence[RunResult], files: Sequence[str], samples: Sequence[DeviceSample] = ()
) -> RunResult:
    """The run's result from its ranks' results (ranks in order) and their device samples."""
    world = len(results)
    start = min(r.timing.window_start_unix_s for r in results)
    end = max(r.timing.window_end_unix_s for r in results)
    span_s = end - start
    requests = sorted(
        (
            req.model_copy(
                update={
                    "index": rank + req.index * world,
                    "energy_j": None,
                    "energy_null_reason": NO_PHASES,
                }
            )
            for rank, r in enumerate(results)
            for req in r.requests
        ),
        key=lambda req: (req.pass_index, req.index),
    )
    output_tokens = sum(r.tokens.output_tokens for r in results)
    input_tokens = sum(r.tokens.input_tokens for r in results)
    energy = aggregate_energy(results, span_s, samples)
    overlap = window_overlap(results)
    warnings = [f"rank {rank}: {w}" for rank, r in enumerate(results) for w in r.warnings]
    if energy.adjusted_null_reason and energy.baseline is not None:
        warnings.append(f"adjusted energy is null: {energy.adjusted_null_reason}")
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
                    "cooldown": _fold_cooldowns(results),
                    "window_passes": max(r.timing.window_passes for r in results),
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
            "energy_per_output_token_uncertainty_j": (
                energy.energy_uncertainty_j / output_tokens
                if energy.energy_uncertainty_j is not None and output_tokens
                else None
            ),
            "engine_view": EngineView(
                source=first.engine_view.source if first.engine_view else first.config.backend,
                null_reason=f"multi-process run: each rank's view is in its process_<rank>"
                f".json ({world} ranks)",
            ),
            "flops": flops,
            "normalised": normalised_metrics(output_tokens, span_s, energy, flops, first.precision)
            if flops is not None and first.precision is not None
            else None,
            "memory": first.memory.model_copy(
                update={
                    "peak_rss_mb": max(r.memory.peak_rss_mb for r in results),
                    "window_peak_rss_mb": _largest(r.memory.window_peak_rss_mb for r in results),
                    "load_rss_mb": _largest(r.memory.load_rss_mb for r in results),
                    "rss_scope": f"the largest of {world} ranks",
                }
            ),
            "cache": first.cache.model_copy(
                update={
                    "window_cached_prompt_tokens": _total(
                        r.cache.window_cached_prompt_tokens if r.cache else None for r in results
                    ),
                    "window_prompt_tokens": input_tokens,
                }
            )
            if first.cache is not None
            else None,
            "warnings": warnings,
            "gpu_processes": merge_gpu_processes([r.gpu_processes for r in results]),
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
            "phases": None,
            "steady_state": None,
            "phases_null_reason": NO_PHASES,
        }
    )

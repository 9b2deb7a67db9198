"""Where the window's energy went: per phase, per request, and in the steady state.

The intervals come from the requests' token timestamps (`phases`), their energies from the
sampler's timeline (`energy_timeline`). Where the meter has no timeline (CodeCarbon, none)
every energy is null with that reason; times and token counts are still measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llenergymeasure.backends.base import RequestTiming
from llenergymeasure.devices.base import DeviceSource
from llenergymeasure.devices.sampler import Sampler
from llenergymeasure.measure.energy_timeline import EnergyTimeline, device_curve
from llenergymeasure.measure.phase_labels import StretchEnergy, phase_label, stretch_energy
from llenergymeasure.measure.phases import (
    STEP_MERGE_S,
    Interval,
    RequestKey,
    Timeline,
    merged_windows,
    phase_boundaries,
    split_window,
    stretches,
)
from llenergymeasure.measure.steady_state import CONTINUOUS_BACKENDS, steady_state
from llenergymeasure.measure.uncertainty import sub_window_parts
from llenergymeasure.results.budget import UncertaintyPart
from llenergymeasure.results.models import Energy
from llenergymeasure.results.phase_models import (
    PhaseEnergy,
    PhaseInterval,
    PhaseSplit,
    SteadyState,
)

REQUEST_ENERGY_METHOD = (
    "each interval between token events: its energy divided among the requests by the "
    "tokens each received at its end; idle gaps (no request in the engine) divided among "
    "all requests by their output tokens"
)


@dataclass(frozen=True)
class Breakdown:
    """The phase split, the steady state, and each request's energy.

    Attributes:
        phases: Prefill, decode and idle gaps of the window.
        steady: The steady state (null with its reason where it does not apply).
        request_energy_j: Energy per request key (absent: the request yielded no token).
        request_null_reason: Why every request's energy is null (None: they have one).
    """

    phases: PhaseSplit
    steady: SteadyState
    request_energy_j: dict[RequestKey, float]
    request_null_reason: str | None


def window_timeline(
    energy: Energy, sampler: Sampler, source: DeviceSource | None, meter: str
) -> tuple[EnergyTimeline | None, str | None]:
    """The window's energy timeline from the sampler, or None with the reason."""
    if source is None:
        if meter == "codecarbon":
            return None, (
                "meter 'codecarbon' has no power timeline: it gives one estimate for the "
                "whole window, so no interval of it can be given an energy"
            )
        return None, f"meter {meter!r} has no power timeline: {energy.null_reason}"
    if energy.energy_j is None:
        return None, f"the window's energy is null: {energy.null_reason}"
    infos = {info.device: info for info in source.devices()}
    periods = {p.device: p.used_s for p in energy.counter_update_periods}
    curves = []
    for device in energy.per_device:
        samples = sampler.between(
            device.device, device.window_start_unix_s or 0.0, device.window_end_unix_s or 0.0
        )
        curve = device_curve(
            device,
            infos.get(device.device),
            samples,
            sampler.interval_s,
            periods.get(device.device, source.counter_period_s),
        )
        if curve is None:
            return None, f"{device.device}: no counter or power samples in the window"
        curves.append(curve)
    if not curves:
        return None, "no device of the window has a timeline"
    return EnergyTimeline(tuple(curves)), None


def _stretch_parts(
    intervals: Sequence[Interval], timeline: EnergyTimeline, offset_s: float
) -> list[StretchEnergy]:
    """Each stretch's energy, measured and apportioned (edge stretches reach the window)."""
    runs = stretches(intervals)
    out = []
    for k, run in enumerate(runs):
        start_s, end_s = intervals[run.first].start_s, intervals[run.last].end_s
        out.append(
            stretch_energy(
                timeline,
                -np.inf if k == 0 else start_s + offset_s,
                np.inf if k == len(runs) - 1 else end_s + offset_s,
                end_s - start_s,
            )
        )
    return out


def _phase(
    name: str,
    intervals: Sequence[Interval],
    energies: np.ndarray | None,
    *,
    parts: Sequence[StretchEnergy] | None,
    uncertainty_j: float | None,
    input_tokens: int | None,
    energy: Energy,
) -> PhaseEnergy:
    chosen = [i for i, interval in enumerate(intervals) if interval.phase == name]
    tokens = sum(n for i in chosen for n in intervals[i].tokens.values())
    energy_j = float(energies[chosen].sum()) if energies is not None else None
    per = input_tokens if name == "prefill" else tokens if name == "decode" else 0
    mine = [p for p, s in zip(parts or [], stretches(intervals), strict=False) if s.phase == name]
    duration_s = sum(intervals[i].end_s - intervals[i].start_s for i in chosen)
    budget = sub_window_parts(energy, duration_s, uncertainty_j) if energy_j is not None else []
    return PhaseEnergy(
        duration_s=duration_s,
        stretches=sum(1 for s in stretches(intervals) if s.phase == name),
        energy_j=energy_j,
        energy_label=phase_label([p.label for p in mine]),
        measured_energy_j=sum(p.measured_j for p in mine) if parts is not None else None,
        apportioned_energy_j=sum(p.apportioned_j for p in mine) if parts is not None else None,
        alignment_uncertainty_j=uncertainty_j,
        energy_uncertainty_j=sum(p.bound_j for p in budget) if budget else None,
        uncertainty_parts=budget,
        output_tokens=tokens,
        input_tokens=input_tokens if name == "prefill" else None,
        energy_per_token_j=energy_j / per if energy_j is not None and per else None,
    )


def _request_energy(intervals: Sequence[Interval], energies: np.ndarray) -> dict[RequestKey, float]:
    """Each interval's energy divided by tokens received; idle gaps by output tokens."""
    shares: dict[RequestKey, float] = {}
    totals: dict[RequestKey, int] = {}
    idle_j = 0.0
    for interval, e in zip(intervals, energies, strict=True):
        delivered = sum(interval.tokens.values())
        if not delivered:
            idle_j += float(e)
            continue
        for key, n in interval.tokens.items():
            shares[key] = shares.get(key, 0.0) + float(e) * n / delivered
            totals[key] = totals.get(key, 0) + n
    all_tokens = sum(totals.values())
    for key, n in totals.items():
        shares[key] += idle_j * n / all_tokens
    return shares


def _uncertainty(
    intervals: Sequence[Interval], timeline: EnergyTimeline, offset_s: float
) -> dict[str, float]:
    out = {}
    for name, times in phase_boundaries(intervals).items():
        spans = merged_windows([t + offset_s for t in times], timeline.resolution_s / 2)
        if not spans:
            out[name] = 0.0
            continue
        lows, highs = np.array(spans).T
        out[name] = float((timeline.at(highs) - timeline.at(lows)).sum())
    return out


def _stretch_alignment_j(
    timeline: EnergyTimeline, start_unix_s: float, end_unix_s: float, edges: tuple[bool, bool]
) -> float:
    """Energy within half a resolution of a stretch's inner boundaries (not the window's)."""
    half_s = timeline.resolution_s / 2
    total = 0.0
    for t, at_edge in ((start_unix_s, edges[0]), (end_unix_s, edges[1])):
        if not at_edge:
            total += timeline.between(t - half_s, t + half_s)
    return total


def _stored(
    intervals: Sequence[Interval],
    energies: np.ndarray | None,
    parts: Sequence[StretchEnergy] | None,
    to_window_s: float,
    budget: tuple[EnergyTimeline, Energy, float] | None,
) -> list[PhaseInterval]:
    """The stretches; `budget` (timeline, window energy, perf-to-unix offset) adds budgets."""
    out = []
    runs = stretches(intervals)
    for k, s in enumerate(runs):
        part = intervals[s.first : s.last + 1]
        split = parts[k] if parts is not None else None
        parts_of: list[UncertaintyPart] = []
        if budget is not None and energies is not None:
            timeline, energy, offset_s = budget
            alignment_j = _stretch_alignment_j(
                timeline,
                part[0].start_s + offset_s,
                part[-1].end_s + offset_s,
                (k == 0, k == len(runs) - 1),
            )
            parts_of = sub_window_parts(energy, part[-1].end_s - part[0].start_s, alignment_j)
        out.append(
            PhaseInterval(
                phase=s.phase,  # type: ignore[arg-type]
                start_t_window_s=part[0].start_s + to_window_s,
                end_t_window_s=part[-1].end_s + to_window_s,
                energy_j=float(energies[s.first : s.last + 1].sum())
                if energies is not None
                else None,
                energy_label=split.label if split else None,
                measured_energy_j=split.measured_j if split else None,
                apportioned_energy_j=split.apportioned_j if split else None,
                energy_uncertainty_j=sum(p.bound_j for p in parts_of) if parts_of else None,
                uncertainty_parts=parts_of,
                output_tokens=sum(n for i in part for n in i.tokens.values()),
            )
        )
    return out


def _notes(split: Timeline, backend: str, passes: Sequence[Sequence[RequestTiming]]) -> list[str]:
    notes = []
    cached = sum(t.cached_prompt_tokens or 0 for ts in passes for t in ts)
    if cached:
        notes.append(
            f"{cached} prompt tokens were served from the prefix cache: prefill energy per "
            "input token counts them as prefilled"
        )
    if backend in CONTINUOUS_BACKENDS:
        notes.append(
            "continuous batching: a step that delivers a first token is prefill even when it "
            "also decodes other requests (mixed_prefill_steps); a prompt prefilled in chunks "
            "over several steps counts as decode until its last chunk"
        )
    if any(not t.token_times_s for ts in passes for t in ts):
        notes.append("requests that yielded no token are in no interval and have no energy")
    return notes


def energy_breakdown(
    *,
    backend: str,
    max_num_seqs: int,
    passes: Sequence[Sequence[RequestTiming]],
    window_perf_s: tuple[float, float],
    perf_to_unix_s: float,
    window_start_unix_s: float,
    energy: Energy,
    timeline: EnergyTimeline | None,
    timeline_null_reason: str | None,
    output_tokens: int,
    engine_running: Sequence[tuple[float, float]] = (),
) -> Breakdown:
    """Split the window into phases and allocate its energy to phases and requests.

    Args:
        backend: The run's backend.
        max_num_seqs: Batch capacity (transformers: the static batch size).
        passes: The window's requests, pass by pass (perf_counter clock).
        window_perf_s: Window start and end on that clock.
        perf_to_unix_s: Unix time minus perf_counter time.
        window_start_unix_s: The run's window start (the timeline's t_window_s = 0).
        energy: The window's energy.
        timeline: Its energy timeline (None: the meter has none).
        timeline_null_reason: Why there is none.
        output_tokens: Output tokens of the window.
        engine_running: The engine's running count per step (perf_counter clock), if any.
    """
    split = split_window(passes, *window_perf_s)
    intervals = split.intervals
    energies = None
    parts = None
    uncertainty: dict[str, float] = {}
    if timeline is not None:
        bounds = np.array([i.start_s for i in intervals] + [intervals[-1].end_s]) + perf_to_unix_s
        bounds[0], bounds[-1] = -np.inf, np.inf  # the edge gaps reach the boundary samples
        energies = np.diff(timeline.at(bounds))
        parts = _stretch_parts(intervals, timeline, perf_to_unix_s)
        uncertainty = _uncertainty(intervals, timeline, perf_to_unix_s)
    to_window_s = perf_to_unix_s - window_start_unix_s
    phases = {
        name: _phase(
            name,
            intervals,
            energies,
            parts=parts,
            uncertainty_j=uncertainty.get(name),
            input_tokens=split.input_tokens if name == "prefill" else None,
            energy=energy,
        )
        for name in ("prefill", "decode", "idle")
    }
    mixed = [i for i in intervals if i.mixed]
    total_j = float(energies.sum()) if energies is not None else None
    request_j = _request_energy(intervals, energies) if energies is not None else {}
    result = PhaseSplit(
        method="token_events" if backend in CONTINUOUS_BACKENDS else "static_batches",
        energy_method=timeline.method if timeline is not None else None,
        energy_null_reason=timeline_null_reason if timeline is None else None,
        resolution_s=timeline.resolution_s if timeline is not None else None,
        counter_update_period_s=timeline.counter_period_s if timeline is not None else None,
        apportioned_method=timeline.apportion if timeline is not None else None,
        window_energy_j=energy.energy_j,
        prefill=phases["prefill"],
        decode=phases["decode"],
        idle=phases["idle"],
        conservation_error_j=total_j - energy.energy_j
        if total_j is not None and energy.energy_j is not None
        else None,
        mixed_prefill_steps=len(mixed),
        mixed_prefill_s=sum(i.end_s - i.start_s for i in mixed),
        step_merge_s=STEP_MERGE_S,
        request_energy_method=REQUEST_ENERGY_METHOD,
        request_energy_total_j=sum(request_j.values()) if energies is not None else None,
        intervals=_stored(
            intervals,
            energies,
            parts,
            to_window_s,
            (timeline, energy, perf_to_unix_s) if timeline is not None else None,
        ),
        notes=_notes(split, backend, passes),
    )

    def between(a_s: float, b_s: float) -> float:
        assert timeline is not None
        return timeline.between(a_s + perf_to_unix_s, b_s + perf_to_unix_s)

    whole = (
        energy.energy_j / output_tokens if energy.energy_j is not None and output_tokens else None
    )
    steady = steady_state(
        backend=backend,
        max_num_seqs=max_num_seqs,
        requests_per_pass=len(passes[0]) if passes else 0,
        timeline=split,
        energy_between=between if timeline is not None else None,
        energy_null_reason=timeline_null_reason,
        to_window_s=lambda t: t + to_window_s,
        window_energy_per_output_token_j=whole,
        engine_running=engine_running,
    )
    if timeline is not None and steady.energy_j is not None and steady.duration_s:
        mean_w = steady.energy_j / steady.duration_s
        budget = sub_window_parts(
            energy,
            steady.duration_s,
            steady.windows * timeline.resolution_s * mean_w,
            f"mean power {mean_w:.4g} W x half a timeline resolution ({timeline.resolution_s:.3g}"
            f" s) at each of its {2 * steady.windows} boundaries",
        )
        steady = steady.model_copy(
            update={
                "energy_uncertainty_j": sum(p.bound_j for p in budget),
                "uncertainty_parts": budget,
            }
        )
    return Breakdown(
        phases=result,
        steady=steady,
        request_energy_j=request_j,
        request_null_reason=timeline_null_reason if timeline is None else None,
    )

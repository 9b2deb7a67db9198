"""The validity verdict of a run: each rule of `analysis.validity` judged on its record."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from llenergymeasure.config.validity import ReasonCode, ValidityRules
from llenergymeasure.results.models import DeviceEnergy, RunResult, Validity, ValidityReason

Finding = tuple[ReasonCode, str | None, str | None]
"""(code, broken: the message when the rule is broken, not_judged: why it cannot be decided)."""


def judge(result: RunResult, rules: ValidityRules) -> Validity:
    """Judge one succeeded run under `rules` (the cascade needs the campaign: `cascade`)."""
    broken: list[ValidityReason] = []
    waived: list[ValidityReason] = []
    not_judged: list[ValidityReason] = []
    for code, message, undecided in _findings(result, rules):
        if message is not None:
            (waived if code in rules.waive else broken).append(
                ValidityReason(code=code, message=message)
            )
        elif undecided is not None:
            not_judged.append(ValidityReason(code=code, message=undecided))
    return Validity(
        valid=not broken, invalid_reasons=broken, waived=waived, not_judged=not_judged, rules=rules
    )


def _findings(r: RunResult, rules: ValidityRules) -> Iterator[Finding]:
    yield from _window(r, rules)
    yield from _steady_state(r, rules)
    yield from _protocol(r, rules)
    yield from _energy(r)
    for d in r.energy.per_device:
        yield from _device(d, r, rules)
    yield from _processes(r, rules)
    yield from _cache(r, rules)


def _window(r: RunResult, rules: ValidityRules) -> Iterator[Finding]:
    window_s = r.timing.window_s
    if window_s < rules.min_window_s:
        message = f"window {window_s:.2f} s < min_window_s {rules.min_window_s:g} s"
        yield "window_short", message, None


def _steady_state(r: RunResult, rules: ValidityRules) -> Iterator[Finding]:
    steady = r.steady_state
    if steady is None or r.config.backend == "transformers":
        return  # static batches: no continuous batching to judge
    if steady.duration_s is None:
        yield from _never_full(r, steady.max_num_seqs, rules)
        return
    if steady.duration_s < rules.min_steady_state_s:
        yield (
            "steady_state_short",
            f"steady state {steady.duration_s:.1f} s < min_steady_state_s "
            f"{rules.min_steady_state_s:g} s",
            None,
        )
    if steady.saturation is not None and steady.saturation < rules.min_saturation:
        yield (
            "steady_state_unsaturated",
            f"mean running batch {steady.mean_running or 0:.2f} of max_num_seqs "
            f"{steady.max_num_seqs} = {steady.saturation:.0%} < min_saturation "
            f"{rules.min_saturation:.0%}"
            + (f" ({steady.saturation_source})" if steady.saturation_source else ""),
            None,
        )


def _never_full(r: RunResult, max_num_seqs: int | None, rules: ValidityRules) -> Iterator[Finding]:
    """No steady state: a pass too small to fill the batch is unsaturated by construction."""
    if not max_num_seqs:
        return
    view = r.engine_view
    if view is not None and view.samples and view.saturation is not None:
        if view.saturation < rules.min_saturation:
            yield (
                "steady_state_unsaturated",
                f"no steady state; the engine's mean running batch {view.mean_running or 0:.2f}"
                f" of max_num_seqs {max_num_seqs} = {view.saturation:.0%} < min_saturation "
                f"{rules.min_saturation:.0%} (engine_scheduler)",
                None,
            )
        return
    per_pass = r.tokens.num_requests / max(r.timing.window_passes, 1)
    if per_pass < rules.min_saturation * max_num_seqs:
        yield (
            "steady_state_unsaturated",
            f"{per_pass:g} requests per pass for max_num_seqs {max_num_seqs}: the running "
            f"batch never exceeds {per_pass / max_num_seqs:.0%} < min_saturation "
            f"{rules.min_saturation:.0%}",
            None,
        )
    else:
        yield "steady_state_unsaturated", None, "no steady state to judge saturation on"


def _protocol(r: RunResult, rules: ValidityRules) -> Iterator[Finding]:
    warmup, cooldown = r.timing.warmup, r.timing.cooldown
    if rules.require_warmup_converged and warmup is not None:
        if warmup.converged is False:
            yield (
                "warmup_not_converged",
                f"warmup stopped after {warmup.batches} batches with CV "
                f"{warmup.final_cv if warmup.final_cv is not None else float('nan'):.3f} "
                f">= {warmup.cv_threshold:g}",
                None,
            )
        elif warmup.converged is None and warmup.batches > 0:
            yield "warmup_not_converged", None, warmup.note or "warmup stability not judged"
    if rules.require_cooldown_settled and cooldown is not None and cooldown.max_s > 0:
        if cooldown.settled is False:
            unsettled = [d.device for d in cooldown.devices if not d.settled]
            yield (
                "cooldown_unsettled",
                f"not at rest after the longest cooldown ({cooldown.max_s:g} s): "
                f"{', '.join(unsettled) or 'a device'}",
                None,
            )
        elif cooldown.settled is None:
            yield "cooldown_unsettled", None, cooldown.null_reason or "no telemetry to judge rest"


def _energy(r: RunResult) -> Iterator[Finding]:
    energy = r.energy
    if r.config.measurement.meter == "none":
        return  # no energy asked for: a latency-only run
    if energy.energy_j is None:
        yield "energy_missing", f"energy is null: {energy.null_reason}", None
    elif energy.confidence == "estimated":
        yield "energy_estimated", f"energy is estimated ({energy.method}), not measured", None


def _device(d: DeviceEnergy, r: RunResult, rules: ValidityRules) -> Iterator[Finding]:
    span_s = (
        d.window_end_unix_s - d.window_start_unix_s
        if d.window_end_unix_s is not None and d.window_start_unix_s is not None
        else r.timing.window_s
    )
    yield from _power(d, span_s, rules)
    yield from _coverage(d, span_s, r.energy.interval_s, rules)
    yield from _throttle(d, span_s, r, rules)


def _power(d: DeviceEnergy, span_s: float, rules: ValidityRules) -> Iterator[Finding]:
    if d.energy_j is None or span_s <= 0:
        return
    mean_w = d.energy_j / span_s
    if d.idle_power_w is not None and mean_w < d.idle_power_w:
        yield (
            "power_below_idle",
            f"{d.device}: mean power {mean_w:.1f} W < its idle {d.idle_power_w:.1f} W",
            None,
        )
    if d.power_limit_w is None:
        if d.device.startswith("GPU-"):
            yield "power_above_limit", None, f"{d.device}: no power limit read"
        return
    if mean_w > d.power_limit_w:
        yield (
            "power_above_limit",
            f"{d.device}: mean power {mean_w:.1f} W > its limit {d.power_limit_w:.0f} W",
            None,
        )
    bound_w = rules.max_sample_power_ratio * d.power_limit_w
    if d.max_power_w is not None and d.max_power_w > bound_w:
        yield (
            "power_sample_above_limit",
            f"{d.device}: a power sample of {d.max_power_w:.0f} W > "
            f"{rules.max_sample_power_ratio:g} x its limit {d.power_limit_w:.0f} W",
            None,
        )


def _coverage(
    d: DeviceEnergy, span_s: float, interval_s: float | None, rules: ValidityRules
) -> Iterator[Finding]:
    if d.power_field is None and d.method != "nvml_power_polling":
        return  # no polled power: nothing was expected at the sampling interval
    if not interval_s or span_s <= 0:
        yield "sampling_coverage_low", None, f"{d.device}: no sampling interval recorded"
        return
    expected = int(span_s / interval_s) + 1
    coverage = d.samples / expected
    if coverage < rules.min_sampling_coverage:
        yield (
            "sampling_coverage_low",
            f"{d.device}: {d.samples} power samples of {expected} expected every "
            f"{interval_s:g} s ({coverage:.0%} < {rules.min_sampling_coverage:.0%})",
            None,
        )


def _throttle(
    d: DeviceEnergy, span_s: float, r: RunResult, rules: ValidityRules
) -> Iterator[Finding]:
    if d.throttle_s is None or span_s <= 0:
        return
    reasons = set(d.throttle_reasons)
    gpu = r.config.settings.gpu
    if gpu is not None and gpu.power_limit_w is not None:
        reasons.discard("sw_power_cap")  # the limit the run asked for
    fraction = d.throttle_s / span_s
    if reasons and fraction > rules.max_throttle_fraction:
        yield (
            "throttled",
            f"{d.device}: throttled {d.throttle_s:.1f} s of {span_s:.1f} s ({fraction:.0%} > "
            f"{rules.max_throttle_fraction:.0%}; {', '.join(sorted(reasons))})",
            None,
        )


def _processes(r: RunResult, rules: ValidityRules) -> Iterator[Finding]:
    check = r.gpu_processes
    if rules.allow_foreign_processes or check is None:
        return
    if not check.checked:
        if r.config.measurement.device == "cuda":
            yield "foreign_processes", None, check.null_reason or "GPU processes not listed"
        return
    if check.foreign:
        pids = ", ".join(f"{p.pid} ({p.name or '?'}) on {p.device}" for p in check.foreign)
        yield "foreign_processes", f"other compute processes on the run's GPUs: {pids}", None


def _cache(r: RunResult, rules: ValidityRules) -> Iterator[Finding]:
    cache, vllm = r.cache, r.config.settings.vllm
    asked = vllm is not None and vllm.enable_prefix_caching is True
    if rules.allow_prefix_cache_hits or asked or cache is None:
        return
    hits = cache.window_cached_prompt_tokens
    if hits:
        yield (
            "prefix_cache_hits",
            f"{hits} of {cache.window_prompt_tokens} window prompt tokens came from a prefix "
            "cache the run did not ask for",
            None,
        )


def cascade(runs: Sequence[tuple[str, int, bool]]) -> dict[int, int]:
    """ML.ENERGY's stability cascade: which runs a smaller unstable batch makes invalid.

    Args:
        runs: (group, batch size, valid) of each judged run, where a group holds the
            configurations equal but for batch size.

    Returns:
        For each run (by position) of a group with an invalid run at a smaller batch size,
        the smallest such batch size.
    """
    smallest: dict[str, int] = {}
    for group, batch, valid in runs:
        if not valid:
            smallest[group] = min(batch, smallest.get(group, batch))
    return {
        i: smallest[group]
        for i, (group, batch, _) in enumerate(runs)
        if group in smallest and batch > smallest[group]
    }


def cascade_reason(smaller_batch: int) -> ValidityReason:
    """The reason a run gets from `cascade`."""
    return ValidityReason(
        code="unstable_smaller_batch",
        message=f"batch size {smaller_batch} of this configuration had an invalid run",
    )


def with_verdict(result: RunResult) -> RunResult:
    """The result with its verdict under the rules its configuration carries (else defaults)."""
    rules = result.config.validity or ValidityRules()
    return result.model_copy(update={"validity": judge(result, rules)})

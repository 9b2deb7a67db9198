"""Precision-normalised efficiency metrics of a run."""

from __future__ import annotations

from llenergymeasure.results.models import Energy, Flops, NormalisedMetrics, PrecisionMetadata


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def normalised_metrics(
    output_tokens: int,
    window_s: float,
    energy: Energy,
    flops: Flops,
    precision: PrecisionMetadata,
) -> NormalisedMetrics:
    """Tokens per joule, per effective PFLOP, per second per watt; FLOPs per token.

    Effective FLOPs are theoretical FLOPs scaled by the precision factor, a convention (see
    `precision.PRECISION_FACTOR_SOURCES`): `effective_flops_basis` says so in each result.
    """
    theoretical = flops.primary.value
    effective = None if theoretical is None else theoretical * precision.precision_factor
    basis = None
    if effective is not None:
        basis = (
            f"convention-scaled: theoretical_flops x precision_factor {precision.precision_factor}"
            f" for {precision.compute} compute ({precision.precision_factor_basis}, not measured)"
        )
    mean_power_w = _ratio(energy.energy_j, window_s)
    reasons = []
    if energy.confidence == "estimated":
        reasons.append(f"energy is estimated ({energy.method})")
    if energy.energy_j is None:
        reasons.append("energy is null")
    if flops.primary.confidence in ("low", None):
        reasons.append(f"FLOPs are {flops.primary.confidence or 'null'} ({flops.primary.method})")
    return NormalisedMetrics(
        tokens_per_joule=_ratio(output_tokens, energy.energy_j),
        tokens_per_joule_adjusted=_ratio(output_tokens, energy.adjusted_energy_j),
        tokens_per_second_per_watt=_ratio(_ratio(output_tokens, window_s), mean_power_w),
        flops_per_output_token=_ratio(theoretical, output_tokens),
        theoretical_flops=theoretical,
        effective_flops=effective,
        effective_flops_basis=basis,
        tokens_per_effective_pflop=_ratio(
            output_tokens, None if effective is None else effective / 1e15
        ),
        low_confidence=bool(reasons),
        low_confidence_reasons=reasons,
    )

"""The rules a run must pass to be valid (campaign key `analysis.validity`)."""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ReasonCode = Literal[
    "window_short",
    "steady_state_short",
    "steady_state_unsaturated",
    "warmup_not_converged",
    "cooldown_unsettled",
    "power_below_idle",
    "power_above_limit",
    "power_sample_above_limit",
    "sampling_coverage_low",
    "throttled",
    "foreign_processes",
    "prefix_cache_hits",
    "energy_estimated",
    "energy_missing",
    "unstable_smaller_batch",
]
"""One stable code per rule (`invalid_reasons` in result.json and runs.parquet)."""


class ValidityRules(BaseModel):
    """Thresholds of the validity verdict. Defaults follow ML.ENERGY's results validator.

    Not part of any run id: `llem validate` judges a campaign again under other thresholds
    without measuring anything.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_window_s: float = Field(
        5.0,
        ge=0,
        description="window_short: the measurement window is shorter (NVML's counter updates "
        "every ~100 ms: under 5 s its quantisation alone exceeds 2 %).",
    )
    min_steady_state_s: float = Field(
        30.0,
        ge=0,
        description="steady_state_short: a run with a steady state (continuous batching) "
        "holds it for less (ML.ENERGY: 30 s).",
    )
    min_saturation: float = Field(
        0.8,
        ge=0,
        le=1,
        description="steady_state_unsaturated: its mean running batch is under this share of "
        "max_num_seqs (ML.ENERGY: 80 %).",
    )
    require_warmup_converged: bool = Field(
        True, description="warmup_not_converged: the warmup stopped at its maximum unstable."
    )
    require_cooldown_settled: bool = Field(
        True, description="cooldown_unsettled: a device was not at rest when the run began."
    )
    max_sample_power_ratio: float = Field(
        1.7,
        gt=1,
        description="power_sample_above_limit: a polled power sample exceeds this multiple of "
        "the device's enforced power limit (ML.ENERGY: 1.7 x TDP). power_above_limit: the "
        "window's mean power exceeds the limit itself; power_below_idle: it is under the "
        "device's idle power.",
    )
    min_sampling_coverage: float = Field(
        0.75,
        ge=0,
        le=1,
        description="sampling_coverage_low: power samples received / expected from the "
        "sampling interval (ML.ENERGY: 75 % of its metrics collection).",
    )
    max_throttle_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="throttled: a device was throttled for more than this share of the window "
        "(sw_power_cap is accepted where the run set settings.gpu.power_limit_w).",
    )
    allow_foreign_processes: bool = Field(
        False, description="foreign_processes: another compute process shared the run's GPUs."
    )
    allow_prefix_cache_hits: bool = Field(
        False,
        description="prefix_cache_hits: window prompts were served from a prefix cache that "
        "the run did not ask for (settings.vllm.enable_prefix_caching unset or false).",
    )
    waive: list[ReasonCode] = Field(
        [],
        description="Codes recorded but not counted against validity, e.g. energy_estimated "
        "on a CPU-only machine where CodeCarbon's estimate is all there is.",
    )
    stability_cascade: bool = Field(
        False,
        description="unstable_smaller_batch: among configurations equal but for batch size, a "
        "larger batch of one whose smaller batch had an invalid run is invalid too "
        "(ML.ENERGY's cascade). Judged over the campaign, in the tables only.",
    )


def with_overrides(rules: ValidityRules, assignments: list[str]) -> ValidityRules:
    """`rules` with `key=value` assignments applied (values read as YAML, e.g. `waive=[a]`).

    Raises:
        ValueError: One line naming the key and the reason.
    """
    data = rules.model_dump()
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or key not in ValidityRules.model_fields:
            known = ", ".join(ValidityRules.model_fields)
            raise ValueError(f"{assignment!r}: expected KEY=VALUE with KEY one of {known}")
        data[key] = yaml.safe_load(value)
    try:
        return ValidityRules.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"analysis.validity.{key}: {first['msg']}") from None

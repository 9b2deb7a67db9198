"""Result models of where the window's energy went: phases, steady state (in result.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llenergymeasure.results.budget import UncertaintyPart

Phase = Literal["prefill", "decode", "idle"]
EnergyLabel = Literal["counter", "power", "apportioned"]
LABEL_DESCRIPTION = (
    "How the energy was obtained. counter (power on a device without a counter): at "
    "least one timeline resolution long and at least half its energy lies between "
    "readings inside it; apportioned: mostly (or wholly, with no two readings inside) "
    "divided out of counter steps that straddle its edges (see PhaseSplit."
    "apportioned_method), placed to within resolution_s."
)
STEADY_MIN_S = 20.0
"""A steady-state window shorter than this is flagged `short` (ML.ENERGY uses 20 s)."""
SATURATION_THRESHOLD = 0.85
"""A steady state whose mean running batch is below this share of max_num_seqs is flagged."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhaseInterval(_Strict):
    """One stretch of the window in one phase (consecutive intervals of a phase merged)."""

    phase: Phase
    start_t_window_s: float = Field(
        ..., description="Seconds since timing.window_start_unix_s (the timeline's t_window_s)."
    )
    end_t_window_s: float
    energy_j: float | None = Field(None, description="Energy of the stretch; null without one.")
    energy_label: EnergyLabel | None = Field(None, description=LABEL_DESCRIPTION)
    measured_energy_j: float | None = Field(
        None, description="Of energy_j, between the first and last reading inside it."
    )
    apportioned_energy_j: float | None = Field(
        None, description="The rest of energy_j: shares of steps straddling its edges."
    )
    energy_uncertainty_j: float | None = Field(
        None, description="Sensor budget of energy_j: the sum of uncertainty_parts' bounds."
    )
    uncertainty_parts: list[UncertaintyPart] = []
    output_tokens: int = Field(0, description="Output tokens delivered at its steps.")


class PhaseEnergy(_Strict):
    """Time, energy and tokens of one phase of the window."""

    duration_s: float = Field(..., description="Seconds of the window in this phase.")
    stretches: int = Field(..., description="Separate stretches of this phase.")
    energy_j: float | None = Field(None, description="Energy of the phase; null with the reason.")
    energy_label: Literal["counter", "power", "apportioned", "mixed"] | None = Field(
        None, description="Its stretches' energy_label where they agree, else mixed."
    )
    measured_energy_j: float | None = Field(
        None, description="Sum of its stretches' measured_energy_j."
    )
    apportioned_energy_j: float | None = Field(
        None, description="Sum of its stretches' apportioned_energy_j."
    )
    alignment_uncertainty_j: float | None = Field(
        None,
        description="Energy within half a timeline resolution of each of this phase's "
        "boundaries: inside it the power is interpolated, so it could belong to either side.",
    )
    energy_uncertainty_j: float | None = Field(
        None, description="Sensor budget of energy_j: the sum of uncertainty_parts' bounds."
    )
    uncertainty_parts: list[UncertaintyPart] = []
    output_tokens: int = Field(0, description="Output tokens delivered at this phase's steps.")
    input_tokens: int | None = Field(
        None, description="Prefill only: prompt tokens of the requests prefilled."
    )
    energy_per_token_j: float | None = Field(
        None,
        description="Prefill: per input (prompt) token; decode: per output token delivered "
        "in decode; idle: none.",
    )


class PhaseSplit(_Strict):
    """The window split into prefill, decode and idle gaps, with their energies.

    prefill + decode + idle = window, in time and in energy (`conservation_error_j`).
    """

    method: Literal["static_batches", "token_events"] = Field(
        ...,
        description="static_batches: batch submit to its first token is prefill, first to "
        "last token decode; token_events (continuous batching): each interval between "
        "consecutive token events is prefill when a request received its first token at "
        "its end, decode otherwise.",
    )
    energy_method: str | None = Field(
        None, description="How interval energies come from the timeline; null without one."
    )
    energy_null_reason: str | None = None
    resolution_s: float | None = Field(
        None,
        description="The timeline's resolution (the longer of the sampling interval and "
        "the counter update period): an apportioned energy is placed to within it.",
    )
    counter_update_period_s: float | None = Field(
        None,
        description="The counter update period the timeline used (energy."
        "counter_update_periods: measured at session start, else nominal); null without "
        "a counter.",
    )
    apportioned_method: str | None = Field(
        None, description="How energy between two readings is divided at a boundary."
    )
    window_energy_j: float | None = Field(None, description="The window's energy (energy_j).")
    prefill: PhaseEnergy
    decode: PhaseEnergy
    idle: PhaseEnergy = Field(..., description="Gaps with no request in the engine.")
    conservation_error_j: float | None = Field(
        None, description="prefill + decode + idle energy - window energy (J)."
    )
    mixed_prefill_steps: int = Field(
        0,
        description="Prefill intervals that also delivered decode tokens (continuous "
        "batching): counted as prefill, so prefill is an upper bound.",
    )
    mixed_prefill_s: float = Field(0.0, description="Seconds of those mixed intervals.")
    step_merge_s: float = Field(
        ..., description="Token arrivals closer than this are one engine step."
    )
    request_energy_method: str = Field(..., description="How energy_j per request is allocated.")
    request_energy_total_j: float | None = Field(
        None, description="Sum of the requests' energy_j (equals the window energy)."
    )
    intervals: list[PhaseInterval] = []
    notes: list[str] = []


class SteadyState(_Strict):
    """Continuous batching under load: from when the batch first fills to when it drains.

    The running batch counts a request from the start of the step that delivered its first
    token to its last token. Per pass over the prompts, the window runs from the first time
    the running batch reaches that pass's peak to the last time it falls from it; passes are
    summed.
    """

    null_reason: str | None = Field(None, description="Why there is no steady state.")
    max_num_seqs: int | None = None
    windows: int = Field(0, description="Steady-state windows (one per pass over the prompts).")
    duration_s: float | None = Field(None, description="Their total duration.")
    start_t_window_s: float | None = Field(None, description="Start of the first window.")
    end_t_window_s: float | None = Field(None, description="End of the last window.")
    peak_running: int | None = Field(None, description="Largest running batch seen.")
    mean_running: float | None = Field(
        None, description="Time-weighted mean running batch (from saturation_source)."
    )
    saturation: float | None = Field(None, description="mean_running / max_num_seqs.")
    saturation_source: Literal["engine_scheduler", "token_events"] | None = Field(
        None,
        description="engine_scheduler: the engine's own running count at each step inside "
        "the windows (vLLM); token_events: inferred from first and last tokens.",
    )
    token_events_mean_running: float | None = Field(
        None, description="The running batch inferred from token events, beside the engine's."
    )
    output_tokens: int | None = Field(None, description="Output tokens delivered inside it.")
    energy_j: float | None = None
    energy_null_reason: str | None = None
    energy_uncertainty_j: float | None = Field(
        None, description="Sensor budget of energy_j: the sum of uncertainty_parts' bounds."
    )
    uncertainty_parts: list[UncertaintyPart] = []
    energy_per_output_token_j: float | None = None
    window_energy_per_output_token_j: float | None = Field(
        None, description="The whole window's figure, beside it."
    )
    short: bool | None = Field(None, description="duration_s below min_duration_s.")
    unsaturated: bool | None = Field(None, description="saturation below the threshold.")
    min_duration_s: float = STEADY_MIN_S
    saturation_threshold: float = SATURATION_THRESHOLD


class EngineView(_Strict):
    """The engine's own view of the window: its scheduler's state step by step, summarised.

    Time-weighted means hold each step's state until the next step (the last until the
    window ends); the samples themselves are in timeseries.parquet (device ``engine:...``).
    """

    source: str = Field(..., description="Where the numbers come from.")
    null_reason: str | None = Field(None, description="Why there are no samples.")
    samples: int = Field(0, description="Engine steps recorded inside the window.")
    max_num_seqs: int | None = None
    mean_running: float | None = Field(None, description="Time-weighted mean running requests.")
    peak_running: int | None = None
    saturation: float | None = Field(None, description="mean_running / max_num_seqs.")
    mean_waiting: float | None = Field(None, description="Time-weighted mean waiting requests.")
    peak_waiting: int | None = None
    mean_kv_cache_usage: float | None = Field(
        None, description="Time-weighted mean KV-cache usage (0-1)."
    )
    peak_kv_cache_usage: float | None = None
    preemptions: int | None = Field(None, description="Requests preempted inside the window.")

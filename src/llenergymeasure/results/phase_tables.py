"""Table columns of the phase split and steady state (runs.parquet) and tables/phases.parquet."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from llenergymeasure.results.arrow_fields import arrow_fields
from llenergymeasure.results.budget import parts_text
from llenergymeasure.results.models import RequestResult, RunResult
from llenergymeasure.results.phase_models import PhaseInterval

PHASE_RUN_FIELDS = [
    pa.field("phase_method", pa.string()),
    pa.field("phase_energy_method", pa.string()),
    pa.field("phase_null_reason", pa.string()),  # why the phase energies are null
    pa.field("prefill_s", pa.float64()),
    pa.field("decode_s", pa.float64()),
    pa.field("idle_gap_s", pa.float64()),
    pa.field("prefill_energy_j", pa.float64()),
    pa.field("decode_energy_j", pa.float64()),
    pa.field("idle_gap_energy_j", pa.float64()),
    pa.field("prefill_energy_uncertainty_j", pa.float64()),  # sensor budget, with parts
    pa.field("decode_energy_uncertainty_j", pa.float64()),
    pa.field("idle_gap_energy_uncertainty_j", pa.float64()),
    pa.field("prefill_energy_uncertainty_parts", pa.string()),
    pa.field("decode_energy_uncertainty_parts", pa.string()),
    pa.field("idle_gap_energy_uncertainty_parts", pa.string()),
    pa.field("prefill_energy_label", pa.string()),  # counter | power | apportioned | mixed
    pa.field("decode_energy_label", pa.string()),
    pa.field("prefill_apportioned_energy_j", pa.float64()),
    pa.field("decode_apportioned_energy_j", pa.float64()),
    pa.field("phase_resolution_s", pa.float64()),
    pa.field("phase_counter_update_period_s", pa.float64()),
    pa.field("prefill_energy_per_input_token_j", pa.float64()),
    pa.field("decode_energy_per_output_token_j", pa.float64()),
    pa.field("phase_conservation_error_j", pa.float64()),
    pa.field("mixed_prefill_steps", pa.int64()),
    pa.field("request_energy_method", pa.string()),
    pa.field("steady_state_null_reason", pa.string()),
    pa.field("steady_state_s", pa.float64()),
    pa.field("steady_state_mean_running", pa.float64()),
    pa.field("steady_state_saturation", pa.float64()),
    pa.field("steady_state_output_tokens", pa.int64()),
    pa.field("steady_state_energy_j", pa.float64()),
    pa.field("steady_state_energy_uncertainty_j", pa.float64()),
    pa.field("steady_state_energy_uncertainty_parts", pa.string()),
    pa.field("steady_state_energy_per_output_token_j", pa.float64()),
    pa.field("steady_state_energy_null_reason", pa.string()),
    pa.field("steady_state_short", pa.bool_()),
    pa.field("steady_state_unsaturated", pa.bool_()),
    pa.field("steady_state_saturation_source", pa.string()),  # engine_scheduler | token_events
    pa.field("steady_state_token_events_mean_running", pa.float64()),
    # the engine's own view of the window (result.engine_view)
    pa.field("engine_view_source", pa.string()),
    pa.field("engine_view_null_reason", pa.string()),
    pa.field("engine_steps", pa.int64()),
    pa.field("engine_mean_running", pa.float64()),
    pa.field("engine_peak_running", pa.int64()),
    pa.field("engine_saturation", pa.float64()),
    pa.field("engine_mean_waiting", pa.float64()),
    pa.field("engine_peak_waiting", pa.int64()),
    pa.field("engine_mean_kv_cache_usage", pa.float64()),
    pa.field("engine_peak_kv_cache_usage", pa.float64()),
    pa.field("engine_preemptions", pa.int64()),
]
REQUEST_ENERGY_FIELDS = [
    pa.field("energy_j", pa.float64()),
    pa.field("energy_uncertainty_j", pa.float64()),  # its share of the window's budget
    pa.field("energy_method", pa.string()),
    pa.field("energy_null_reason", pa.string()),
]
PHASES_SCHEMA = pa.schema(
    [pa.field("run_id", pa.string(), nullable=False), *arrow_fields(PhaseInterval)]
)
"""tables/phases.parquet: one row per stretch of one phase of a run's window."""


def _old(result: RunResult) -> str:
    return (
        f"the result (schema {result.schema_version}) predates the phase split "
        "(schema 1.7): measure the run again"
    )


def phase_run_columns(result: RunResult) -> dict[str, Any]:
    """The phase and steady-state columns of a result's runs.parquet row."""
    phases, steady = result.phases, result.steady_state
    recorded = "phases" in result.model_fields_set  # null from 1.7 on, absent before
    null_reason = result.phases_null_reason or (None if recorded else _old(result))
    columns: dict[str, Any] = {
        "phase_null_reason": null_reason,
        "steady_state_null_reason": (steady.null_reason if steady else None) or null_reason,
    }
    if phases:
        prefill, decode, idle = phases.prefill, phases.decode, phases.idle
        columns |= {
            "phase_method": phases.method,
            "phase_energy_method": phases.energy_method,
            "phase_null_reason": phases.energy_null_reason,
            "prefill_s": prefill.duration_s,
            "decode_s": decode.duration_s,
            "idle_gap_s": idle.duration_s,
            "prefill_energy_j": prefill.energy_j,
            "decode_energy_j": decode.energy_j,
            "idle_gap_energy_j": idle.energy_j,
            "prefill_energy_uncertainty_j": prefill.energy_uncertainty_j,
            "decode_energy_uncertainty_j": decode.energy_uncertainty_j,
            "idle_gap_energy_uncertainty_j": idle.energy_uncertainty_j,
            "prefill_energy_uncertainty_parts": parts_text(prefill.uncertainty_parts),
            "decode_energy_uncertainty_parts": parts_text(decode.uncertainty_parts),
            "idle_gap_energy_uncertainty_parts": parts_text(idle.uncertainty_parts),
            "prefill_energy_label": prefill.energy_label,
            "decode_energy_label": decode.energy_label,
            "prefill_apportioned_energy_j": prefill.apportioned_energy_j,
            "decode_apportioned_energy_j": decode.apportioned_energy_j,
            "phase_resolution_s": phases.resolution_s,
            "phase_counter_update_period_s": phases.counter_update_period_s,
            "prefill_energy_per_input_token_j": prefill.energy_per_token_j,
            "decode_energy_per_output_token_j": decode.energy_per_token_j,
            "phase_conservation_error_j": phases.conservation_error_j,
            "mixed_prefill_steps": phases.mixed_prefill_steps,
            "request_energy_method": phases.request_energy_method,
        }
    if steady:
        columns |= {
            "steady_state_s": steady.duration_s,
            "steady_state_mean_running": steady.mean_running,
            "steady_state_saturation": steady.saturation,
            "steady_state_output_tokens": steady.output_tokens,
            "steady_state_energy_j": steady.energy_j,
            "steady_state_energy_uncertainty_j": steady.energy_uncertainty_j,
            "steady_state_energy_uncertainty_parts": parts_text(steady.uncertainty_parts),
            "steady_state_energy_per_output_token_j": steady.energy_per_output_token_j,
            "steady_state_energy_null_reason": steady.energy_null_reason,
            "steady_state_short": steady.short,
            "steady_state_unsaturated": steady.unsaturated,
            "steady_state_saturation_source": steady.saturation_source,
            "steady_state_token_events_mean_running": steady.token_events_mean_running,
        }
    if view := result.engine_view:
        columns |= {
            "engine_view_source": view.source,
            "engine_view_null_reason": view.null_reason,
            "engine_steps": view.samples,
            "engine_mean_running": view.mean_running,
            "engine_peak_running": view.peak_running,
            "engine_saturation": view.saturation,
            "engine_mean_waiting": view.mean_waiting,
            "engine_peak_waiting": view.peak_waiting,
            "engine_mean_kv_cache_usage": view.mean_kv_cache_usage,
            "engine_peak_kv_cache_usage": view.peak_kv_cache_usage,
            "engine_preemptions": view.preemptions,
        }
    else:
        columns["engine_view_null_reason"] = (
            f"the result (schema {result.schema_version}) predates the engine view (1.10)"
        )
    return columns


def request_energy_columns(result: RunResult, request: RequestResult) -> dict[str, Any]:
    """The energy columns of one latency.parquet row."""
    recorded = "energy_j" in request.model_fields_set  # from schema 1.7 on
    return {
        "energy_j": request.energy_j,
        "energy_uncertainty_j": request.energy_uncertainty_j,
        "energy_method": result.phases.request_energy_method if result.phases else None,
        "energy_null_reason": request.energy_null_reason if recorded else _old(result),
    }


def phase_rows(result: RunResult) -> Iterable[dict[str, Any]]:
    """tables/phases.parquet rows of a result (none for an older result)."""
    for interval in result.phases.intervals if result.phases else []:
        row = interval.model_dump()
        row["uncertainty_parts"] = parts_text(interval.uncertainty_parts)
        yield {"run_id": result.run_id, **row}

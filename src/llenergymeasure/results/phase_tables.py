"""Table columns of the phase split and steady state (runs.parquet) and tables/phases.parquet."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

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
    pa.field("prefill_energy_uncertainty_j", pa.float64()),
    pa.field("decode_energy_uncertainty_j", pa.float64()),
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
    pa.field("steady_state_energy_per_output_token_j", pa.float64()),
    pa.field("steady_state_energy_null_reason", pa.string()),
    pa.field("steady_state_short", pa.bool_()),
    pa.field("steady_state_unsaturated", pa.bool_()),
]
REQUEST_ENERGY_FIELDS = [
    pa.field("energy_j", pa.float64()),
    pa.field("energy_method", pa.string()),
    pa.field("energy_null_reason", pa.string()),
]
PHASES_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("phase", pa.string(), nullable=False),
        pa.field("start_t_window_s", pa.float64(), nullable=False),
        pa.field("end_t_window_s", pa.float64(), nullable=False),
        pa.field("energy_j", pa.float64()),
        pa.field("output_tokens", pa.int64()),
    ]
)
"""tables/phases.parquet: one row per stretch of one phase of a run's window."""


def _old(result: dict[str, Any]) -> str:
    return (
        f"the result (schema {result.get('schema_version')}) predates the phase split "
        "(schema 1.7): measure the run again"
    )


def phase_run_columns(result: dict[str, Any]) -> dict[str, Any]:
    """The phase and steady-state columns of a result's runs.parquet row."""
    phases = result.get("phases")
    steady = result.get("steady_state") or {}
    null_reason = result.get("phases_null_reason") or (None if "phases" in result else _old(result))
    columns: dict[str, Any] = {
        "phase_null_reason": null_reason,
        "steady_state_null_reason": steady.get("null_reason") or null_reason,
    }
    if phases:
        prefill, decode, idle = phases["prefill"], phases["decode"], phases["idle"]
        columns |= {
            "phase_method": phases["method"],
            "phase_energy_method": phases.get("energy_method"),
            "phase_null_reason": phases.get("energy_null_reason"),
            "prefill_s": prefill["duration_s"],
            "decode_s": decode["duration_s"],
            "idle_gap_s": idle["duration_s"],
            "prefill_energy_j": prefill.get("energy_j"),
            "decode_energy_j": decode.get("energy_j"),
            "idle_gap_energy_j": idle.get("energy_j"),
            "prefill_energy_uncertainty_j": prefill.get("alignment_uncertainty_j"),
            "decode_energy_uncertainty_j": decode.get("alignment_uncertainty_j"),
            "prefill_energy_per_input_token_j": prefill.get("energy_per_token_j"),
            "decode_energy_per_output_token_j": decode.get("energy_per_token_j"),
            "phase_conservation_error_j": phases.get("conservation_error_j"),
            "mixed_prefill_steps": phases.get("mixed_prefill_steps"),
            "request_energy_method": phases.get("request_energy_method"),
        }
    if steady:
        columns |= {
            "steady_state_s": steady.get("duration_s"),
            "steady_state_mean_running": steady.get("mean_running"),
            "steady_state_saturation": steady.get("saturation"),
            "steady_state_output_tokens": steady.get("output_tokens"),
            "steady_state_energy_j": steady.get("energy_j"),
            "steady_state_energy_per_output_token_j": steady.get("energy_per_output_token_j"),
            "steady_state_energy_null_reason": steady.get("energy_null_reason"),
            "steady_state_short": steady.get("short"),
            "steady_state_unsaturated": steady.get("unsaturated"),
        }
    return columns


def request_energy_columns(result: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The energy columns of one latency.parquet row."""
    phases = result.get("phases")
    reason = request.get("energy_null_reason")
    if "energy_j" not in request:
        reason = _old(result)
    return {
        "energy_j": request.get("energy_j"),
        "energy_method": phases.get("request_energy_method") if phases else None,
        "energy_null_reason": reason,
    }


def phase_rows(result: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """tables/phases.parquet rows of a result (none for a failure or an older result)."""
    for interval in (result.get("phases") or {}).get("intervals", []):
        yield {"run_id": result["run_id"], **interval}

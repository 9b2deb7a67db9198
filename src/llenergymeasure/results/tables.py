"""Campaign tables as Parquet with explicit pyarrow schemas (config axes as typed columns)."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llenergymeasure.config.models import Settings
from llenergymeasure.results.models import RunResult, Stats


def _arrow_type(annotation: Any) -> pa.DataType:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _arrow_type(args[0])
    if annotation is bool:
        return pa.bool_()
    if annotation is int:
        return pa.int64()
    if annotation is float:
        return pa.float64()
    return pa.string()  # str and Literal[...] of strings


SETTINGS_FIELDS = [
    pa.field(n, _arrow_type(f.annotation)) for n, f in Settings.model_fields.items() if n != "vllm"
]
VLLM_FIELDS = [
    pa.field("vllm_settings", pa.string()),  # the engine settings as JSON (vllm runs only)
    pa.field("vllm_arrival", pa.string()),
    pa.field("vllm_request_rate", pa.float64()),
]
STAT_NAMES = ("mean", "median", "p95", "p99")
NORMALISED = (
    "theoretical_flops",
    "effective_flops",
    "flops_per_output_token",
    "tokens_per_effective_pflop",
    "tokens_per_joule",
    "tokens_per_joule_adjusted",
    "tokens_per_second_per_watt",
)
LATENCY_QUANTITIES = ("ttft_s", "itl_s", "itl_trimmed_s", "request_latency_s")


def _stat_column(quantity: str, stat: str) -> str:
    return f"{quantity.removesuffix('_s')}_{stat}_s"


RUNS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("campaign", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_source", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("repeat", pa.int64()),
        *SETTINGS_FIELDS,
        *VLLM_FIELDS,
        pa.field("prompts_source", pa.string()),
        pa.field("device", pa.string()),
        pa.field("window_s", pa.float64()),
        pa.field("model_load_s", pa.float64()),
        pa.field("num_requests", pa.int64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("output_tokens_per_s", pa.float64()),
        pa.field("total_tokens_per_s", pa.float64()),
        *[
            pa.field(_stat_column(q, s), pa.float64())
            for q in LATENCY_QUANTITIES
            for s in STAT_NAMES
        ],
        pa.field("energy_j", pa.float64()),
        pa.field("energy_per_output_token_j", pa.float64()),
        pa.field("adjusted_energy_j", pa.float64()),
        pa.field("adjusted_energy_per_output_token_j", pa.float64()),
        pa.field("idle_power_w", pa.float64()),
        pa.field("facility_energy_j", pa.float64()),
        pa.field("energy_null_reason", pa.string()),
        pa.field("energy_method", pa.string()),
        pa.field("energy_confidence", pa.string()),
        pa.field("energy_interval_s", pa.float64()),
        pa.field("energy_devices", pa.list_(pa.string())),
        pa.field("emissions_kg", pa.float64()),
        pa.field("max_temperature_c", pa.float64()),
        pa.field("max_throttle_s", pa.float64()),
        pa.field("weights_precision", pa.string()),
        pa.field("compute_precision", pa.string()),
        pa.field("weight_bits", pa.int64()),
        pa.field("precision_factor", pa.float64()),
        pa.field("flops_method", pa.string()),
        pa.field("flops_confidence", pa.string()),
        pa.field("flops_architecture", pa.float64()),
        pa.field("flops_calflops", pa.float64()),
        pa.field("flops_parameter_estimate", pa.float64()),
        *[pa.field(name, pa.float64()) for name in NORMALISED],
        pa.field("low_confidence", pa.bool_()),
        pa.field("peak_rss_mb", pa.float64()),
        pa.field("peak_device_allocated_mb", pa.float64()),
        pa.field("started_at", pa.timestamp("ms", tz="UTC")),
        pa.field("host", pa.string()),
        pa.field("git_commit", pa.string()),
        pa.field("config_hash", pa.string()),
        pa.field("schema_version", pa.string()),
        pa.field("warnings", pa.list_(pa.string())),
    ]
)

LATENCY_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("request_index", pa.int64()),
        pa.field("batch_index", pa.int64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("stopped_by_eos", pa.bool_()),
        pa.field("queue_s", pa.float64()),
        pa.field("ttft_s", pa.float64()),
        pa.field("latency_s", pa.float64()),
        pa.field("itl_s", pa.list_(pa.float64())),
    ]
)


def _stat(stats: Stats | None, name: str) -> float | None:
    return None if stats is None else float(getattr(stats, name))


def run_row(result: RunResult) -> dict[str, Any]:
    """One runs.parquet row of a result."""
    cfg = result.config
    baseline = result.energy.baseline
    engine = cfg.settings.vllm
    per_device = result.energy.per_device
    temperatures = [d.max_temperature_c for d in per_device if d.max_temperature_c is not None]
    throttles = [d.throttle_s for d in per_device if d.throttle_s is not None]
    row: dict[str, Any] = {
        "run_id": result.run_id,
        "campaign": cfg.campaign,
        "model": cfg.model.name,
        "model_source": cfg.model.source,
        "backend": cfg.backend,
        "repeat": cfg.repeat,
        **cfg.settings.model_dump(exclude={"vllm"}),
        "vllm_settings": engine.model_dump_json() if engine else None,
        "vllm_arrival": engine.arrival if engine else None,
        "vllm_request_rate": engine.request_rate if engine else None,
        "prompts_source": cfg.prompts.source,
        "device": cfg.measurement.device,
        "window_s": result.timing.window_s,
        "model_load_s": result.timing.model_load_s,
        "num_requests": result.tokens.num_requests,
        "input_tokens": result.tokens.input_tokens,
        "output_tokens": result.tokens.output_tokens,
        "output_tokens_per_s": result.throughput.output_tokens_per_s,
        "total_tokens_per_s": result.throughput.total_tokens_per_s,
        "energy_j": result.energy.energy_j,
        "energy_per_output_token_j": result.energy_per_output_token_j,
        "adjusted_energy_j": result.energy.adjusted_energy_j,
        "adjusted_energy_per_output_token_j": result.adjusted_energy_per_output_token_j,
        "idle_power_w": baseline.idle_power_w if baseline else None,
        "facility_energy_j": result.energy.facility_energy_j,
        "energy_devices": result.energy.devices,
        "max_temperature_c": max(temperatures) if temperatures else None,
        "max_throttle_s": max(throttles) if throttles else None,
        "energy_null_reason": result.energy.null_reason,
        "energy_method": result.energy.method,
        "energy_confidence": result.energy.confidence,
        "energy_interval_s": result.energy.interval_s,
        "emissions_kg": result.energy.emissions_kg,
        "peak_rss_mb": result.memory.peak_rss_mb,
        "peak_device_allocated_mb": result.memory.peak_device_allocated_mb,
        "started_at": result.timing.started_at,
        "host": result.environment.get("host"),
        "git_commit": (result.environment.get("git") or {}).get("commit"),
        "config_hash": result.config_hash,
        "schema_version": result.schema_version,
        "warnings": result.warnings,
    }
    row.update(_efficiency_columns(result))
    for quantity in LATENCY_QUANTITIES:
        for stat in STAT_NAMES:
            row[_stat_column(quantity, stat)] = _stat(getattr(result.latency, quantity), stat)
    return row


def _efficiency_columns(result: RunResult) -> dict[str, Any]:
    precision, flops, normalised = result.precision, result.flops, result.normalised
    by_method = {}
    if flops is not None:
        by_method = {f.method: f.value for f in [flops.primary, *flops.alternatives]}
    return {
        "weights_precision": precision.weights if precision else None,
        "compute_precision": precision.compute if precision else None,
        "weight_bits": precision.weight_bits if precision else None,
        "precision_factor": precision.precision_factor if precision else None,
        "flops_method": flops.primary.method if flops else None,
        "flops_confidence": flops.primary.confidence if flops else None,
        "flops_architecture": by_method.get("architecture"),
        "flops_calflops": by_method.get("calflops"),
        "flops_parameter_estimate": by_method.get("parameter_estimate"),
        **{name: getattr(normalised, name) if normalised else None for name in NORMALISED},
        "low_confidence": normalised.low_confidence if normalised else None,
    }


def latency_rows(result: RunResult) -> Iterable[dict[str, Any]]:
    """latency.parquet rows of a result: one per request."""
    for r in result.requests:
        yield {
            "run_id": result.run_id,
            "request_index": r.index,
            "batch_index": r.batch_index,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "stopped_by_eos": r.stopped_by_eos,
            "queue_s": r.queue_s,
            "ttft_s": r.ttft_s,
            "latency_s": r.latency_s,
            "itl_s": r.itl_s,
        }


def _write_table(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=schema.names)
    if "started_at" in frame:
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def build_tables(result_paths: Iterable[Path], out_dir: Path) -> dict[str, Path]:
    """Read result.json files and write runs.parquet and latency.parquet into `out_dir`."""
    results = [RunResult.model_validate_json(Path(p).read_bytes()) for p in result_paths]
    results.sort(key=lambda r: (r.config.model.name, r.config.backend, r.run_id))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"runs": out_dir / "runs.parquet", "latency": out_dir / "latency.parquet"}
    _write_table([run_row(r) for r in results], RUNS_SCHEMA, paths["runs"])
    _write_table(
        [row for r in results for row in latency_rows(r)], LATENCY_SCHEMA, paths["latency"]
    )
    return paths

"""Campaign tables as Parquet with explicit pyarrow schemas (config axes as typed columns)."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from llenergymeasure.config.loader import hash_config_data
from llenergymeasure.config.models import Settings
from llenergymeasure.errors import LlemError
from llenergymeasure.results.models import SCHEMA_VERSION
from llenergymeasure.results.phase_tables import (
    PHASE_RUN_FIELDS,
    PHASES_SCHEMA,
    REQUEST_ENERGY_FIELDS,
    phase_rows,
    phase_run_columns,
    request_energy_columns,
)
from llenergymeasure.results.timeseries import TIMESERIES_SCHEMA


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
    pa.field(n, _arrow_type(f.annotation))
    for n, f in Settings.model_fields.items()
    if n not in ("vllm", "tensorrt", "gpu")
]
VLLM_FIELDS = [
    pa.field("vllm_settings", pa.string()),  # the engine settings as JSON (vllm runs only)
    pa.field("vllm_arrival", pa.string()),
    pa.field("vllm_request_rate", pa.float64()),
]
TENSORRT_FIELDS = [
    pa.field("tensorrt_settings", pa.string()),  # TensorRT-LLM settings as JSON (tensorrt only)
]
GPU_FIELDS = [  # requested GPU operating point (settings.gpu), a configuration axis
    pa.field("gpu_settings", pa.string()),
    pa.field("power_limit_w", pa.float64()),
    pa.field("sm_clocks_mhz", pa.string()),
    pa.field("memory_clocks_mhz", pa.string()),
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
LATENCY_QUANTITIES = (
    "ttft_s",
    "service_ttft_s",
    "queue_s",
    "itl_s",
    "itl_trimmed_s",
    "request_latency_s",
)


def _stat_column(quantity: str, stat: str) -> str:
    return f"{quantity.removesuffix('_s')}_{stat}_s"


RUNS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("configuration_id", pa.string(), nullable=False),
        pa.field("campaign", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_source", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("repeat", pa.int64()),
        pa.field("status", pa.string()),
        pa.field("failure_class", pa.string()),
        pa.field("failure_message", pa.string()),
        pa.field("failure_phase", pa.string()),
        pa.field("log", pa.string()),
        *SETTINGS_FIELDS,
        *VLLM_FIELDS,
        *TENSORRT_FIELDS,
        *GPU_FIELDS,
        pa.field("applied_power_limit_w", pa.float64()),
        pa.field("applied_sm_clock_mhz", pa.float64()),
        pa.field("applied_memory_clock_mhz", pa.float64()),
        pa.field("gpu_settings_restored", pa.bool_()),
        pa.field("prompts_source", pa.string()),
        pa.field("device", pa.string()),
        pa.field("window_s", pa.float64()),
        pa.field("window_passes", pa.int64()),
        pa.field("model_load_s", pa.float64()),
        pa.field("cooldown_s", pa.float64()),
        pa.field("cooldown_settled", pa.bool_()),
        pa.field("cooldown_null_reason", pa.string()),
        pa.field("warmup_batches", pa.int64()),
        pa.field("warmup_converged", pa.bool_()),
        pa.field("warmup_final_cv", pa.float64()),
        pa.field("prefix_caching", pa.bool_()),
        pa.field("window_cached_prompt_tokens", pa.int64()),
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
        pa.field("itl_excluded_intervals", pa.int64()),
        pa.field("zero_token_requests", pa.int64()),
        pa.field("energy_j", pa.float64()),
        pa.field("energy_per_output_token_j", pa.float64()),
        pa.field("adjusted_energy_j", pa.float64()),
        pa.field("adjusted_energy_per_output_token_j", pa.float64()),
        pa.field("adjusted_null_reason", pa.string()),
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
        pa.field("load_rss_mb", pa.float64()),
        pa.field("window_peak_rss_mb", pa.float64()),
        pa.field("load_device_allocated_mb", pa.float64()),
        pa.field("peak_device_allocated_mb", pa.float64()),
        pa.field("started_at", pa.timestamp("ms", tz="UTC")),
        pa.field("host", pa.string()),
        pa.field("git_commit", pa.string()),
        pa.field("container_runtime", pa.string()),
        pa.field("container_image", pa.string()),
        pa.field("container_image_id", pa.string()),
        pa.field("container_digest", pa.string()),
        pa.field("config_hash", pa.string()),
        pa.field("schema_version", pa.string()),
        pa.field("warnings", pa.list_(pa.string())),
        *PHASE_RUN_FIELDS,
    ]
)

LATENCY_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("request_index", pa.int64()),
        pa.field("pass_index", pa.int64()),
        pa.field("batch_index", pa.int64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("stopped_by_eos", pa.bool_()),
        pa.field("queue_s", pa.float64()),
        pa.field("ttft_s", pa.float64()),
        pa.field("service_ttft_s", pa.float64()),
        pa.field("latency_s", pa.float64()),
        pa.field("itl_s", pa.list_(pa.float64())),
        pa.field("itl_excluded", pa.int64()),
        pa.field("cached_prompt_tokens", pa.int64()),
        pa.field("null_reason", pa.string()),
        # the engine's own durations, on its clock (tensorrt), never mixed with llem's
        pa.field("engine_queue_s", pa.float64()),
        pa.field("engine_ttft_s", pa.float64()),
        *REQUEST_ENERGY_FIELDS,
    ]
)


def _get(data: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if data is None:
            return None
        data = data.get(key)
    return data


def _config_columns(result: dict[str, Any]) -> dict[str, Any]:
    """The run's identity and configuration axes (shared by results and failure records)."""
    cfg = result["config"]
    settings = cfg["settings"]
    engine = settings.get("vllm")
    return {
        "run_id": result["run_id"],
        "configuration_id": result.get("configuration_id")
        or hash_config_data({**cfg, "repeat": 0})[:12],  # results before schema 1.3
        "campaign": cfg["campaign"],
        "model": cfg["model"]["name"],
        "model_source": cfg["model"]["source"],
        "backend": cfg["backend"],
        "repeat": cfg["repeat"],
        **{field.name: settings.get(field.name) for field in SETTINGS_FIELDS},
        "vllm_settings": json.dumps(engine, sort_keys=True) if engine else None,
        "vllm_arrival": _get(engine, "arrival"),
        "vllm_request_rate": _get(engine, "request_rate"),
        "tensorrt_settings": (
            json.dumps(settings["tensorrt"], sort_keys=True) if settings.get("tensorrt") else None
        ),
        **_gpu_columns(settings.get("gpu")),
        "prompts_source": cfg["prompts"]["source"],
        "device": cfg["measurement"]["device"],
        "host": _get(result, "environment", "host"),
        "git_commit": _get(result, "environment", "git", "commit"),
        # "none": on the host; results written before containers were recorded: null
        "container_runtime": _get(result, "environment", "container", "runtime"),
        "container_image": _get(result, "environment", "container", "image"),
        "container_image_id": _get(result, "environment", "container", "image_id"),
        "container_digest": _get(result, "environment", "container", "digest"),
        "config_hash": result["config_hash"],
        "schema_version": result["schema_version"],
    }


def _clocks(value: Any) -> str | None:
    if value is None:
        return None
    low, high = (value, value) if isinstance(value, int) else value
    return f"{low}-{high}"


def _gpu_columns(gpu: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "gpu_settings": json.dumps(gpu, sort_keys=True) if gpu else None,
        "power_limit_w": _get(gpu, "power_limit_w"),
        "sm_clocks_mhz": _clocks(_get(gpu, "sm_clocks_mhz")),
        "memory_clocks_mhz": _clocks(_get(gpu, "memory_clocks_mhz")),
    }


def _applied(result: dict[str, Any]) -> dict[str, Any]:
    """What the GPUs ran under (read back); the lowest across the run's GPUs."""
    devices = _get(result, "gpu_settings", "devices") or []

    def lowest(key: str) -> float | None:
        values = [d[key] for d in devices if d.get(key) is not None]
        return min(values) if values else None

    return {
        "applied_power_limit_w": lowest("power_limit_w_applied"),
        "applied_sm_clock_mhz": lowest("sm_clock_mhz_read"),
        "applied_memory_clock_mhz": lowest("memory_clock_mhz_read"),
        "gpu_settings_restored": all(d.get("restored") for d in devices) if devices else None,
    }


def failure_row(record: dict[str, Any]) -> dict[str, Any]:
    """runs.parquet row of a failure record: its class and message; every metric null."""
    return {
        **_config_columns(record),
        "status": "failed",
        "failure_class": record["failure_class"],
        "failure_message": record["message"],
        "failure_phase": record["phase"],
        "log": record.get("log"),
        "model_load_s": _get(record, "timings", "model_load_s"),
        "cooldown_s": _get(record, "timings", "cooldown_s"),
        "started_at": datetime.fromisoformat(record["failed_at"]),
        "warnings": [],
    }


def run_row(result: dict[str, Any]) -> dict[str, Any]:
    """One runs.parquet row of a result (read as plain JSON: fast at 10,000 runs)."""
    if result.get("status") == "failed":
        return failure_row(result)
    energy = result["energy"]
    per_device = energy.get("per_device") or []
    temperatures = [
        d["max_temperature_c"] for d in per_device if d.get("max_temperature_c") is not None
    ]
    throttles = [d["throttle_s"] for d in per_device if d.get("throttle_s") is not None]
    row: dict[str, Any] = {
        **_config_columns(result),
        **_applied(result),
        "status": "succeeded",
        "window_s": result["timing"]["window_s"],
        "window_passes": result["timing"].get("window_passes", 1),
        "model_load_s": result["timing"]["model_load_s"],
        "cooldown_s": _get(result, "timing", "cooldown", "cooldown_s"),
        "cooldown_settled": _get(result, "timing", "cooldown", "settled"),
        "cooldown_null_reason": _get(result, "timing", "cooldown", "null_reason"),
        "warmup_batches": result["timing"]["warmup_batches"],
        "warmup_converged": _get(result, "timing", "warmup", "converged"),
        "warmup_final_cv": _get(result, "timing", "warmup", "final_cv"),
        "prefix_caching": _get(result, "cache", "prefix_caching"),
        "window_cached_prompt_tokens": _get(result, "cache", "window_cached_prompt_tokens"),
        "itl_excluded_intervals": _get(result, "latency", "itl_excluded_intervals"),
        "zero_token_requests": _get(result, "latency", "zero_token_requests"),
        "num_requests": result["tokens"]["num_requests"],
        "input_tokens": result["tokens"]["input_tokens"],
        "output_tokens": result["tokens"]["output_tokens"],
        "output_tokens_per_s": result["throughput"]["output_tokens_per_s"],
        "total_tokens_per_s": result["throughput"]["total_tokens_per_s"],
        "energy_j": energy["energy_j"],
        "energy_per_output_token_j": result["energy_per_output_token_j"],
        "adjusted_energy_j": energy.get("adjusted_energy_j"),
        "adjusted_energy_per_output_token_j": result.get("adjusted_energy_per_output_token_j"),
        "adjusted_null_reason": energy.get("adjusted_null_reason"),
        "idle_power_w": _get(energy, "baseline", "idle_power_w"),
        "facility_energy_j": energy.get("facility_energy_j"),
        "energy_devices": energy["devices"],
        "max_temperature_c": max(temperatures) if temperatures else None,
        "max_throttle_s": max(throttles) if throttles else None,
        "energy_null_reason": energy.get("null_reason"),
        "energy_method": energy["method"],
        "energy_confidence": energy["confidence"],
        "energy_interval_s": energy["interval_s"],
        "emissions_kg": energy.get("emissions_kg"),
        "peak_rss_mb": result["memory"]["peak_rss_mb"],
        "load_rss_mb": result["memory"].get("load_rss_mb"),
        "window_peak_rss_mb": result["memory"].get("window_peak_rss_mb"),
        "load_device_allocated_mb": result["memory"].get("load_device_allocated_mb"),
        "peak_device_allocated_mb": result["memory"].get("peak_device_allocated_mb"),
        "started_at": datetime.fromisoformat(result["timing"]["started_at"]),
        "warnings": result.get("warnings", []),
    }
    row.update(_efficiency_columns(result))
    row.update(phase_run_columns(result))
    latency = result["latency"]
    for quantity in LATENCY_QUANTITIES:
        for stat in STAT_NAMES:
            row[_stat_column(quantity, stat)] = _get(latency, quantity, stat)
    return row


def _efficiency_columns(result: dict[str, Any]) -> dict[str, Any]:
    precision, flops, normalised = (result.get(k) for k in ("precision", "flops", "normalised"))
    by_method = {}
    if flops:
        by_method = {f["method"]: f["value"] for f in [flops["primary"], *flops["alternatives"]]}
    return {
        "weights_precision": _get(precision, "weights"),
        "compute_precision": _get(precision, "compute"),
        "weight_bits": _get(precision, "weight_bits"),
        "precision_factor": _get(precision, "precision_factor"),
        "flops_method": _get(flops, "primary", "method"),
        "flops_confidence": _get(flops, "primary", "confidence"),
        "flops_architecture": by_method.get("architecture"),
        "flops_calflops": by_method.get("calflops"),
        "flops_parameter_estimate": by_method.get("parameter_estimate"),
        **{name: _get(normalised, name) for name in NORMALISED},
        "low_confidence": _get(normalised, "low_confidence"),
    }


def latency_rows(result: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """latency.parquet rows of a result: one per request (none for a failure record)."""
    for r in result.get("requests", []):
        yield {
            "run_id": result["run_id"],
            "request_index": r["index"],
            "pass_index": r.get("pass_index", 0),
            "batch_index": r["batch_index"],
            "input_tokens": r["input_tokens"],
            "output_tokens": r["output_tokens"],
            "stopped_by_eos": r["stopped_by_eos"],
            "queue_s": r["queue_s"],
            "ttft_s": r["ttft_s"],
            "service_ttft_s": r.get("service_ttft_s"),
            "latency_s": r["latency_s"],
            "itl_s": r["itl_s"],
            "itl_excluded": r.get("itl_excluded", 0),
            "cached_prompt_tokens": r.get("cached_prompt_tokens"),
            "null_reason": r.get("null_reason"),
            "engine_queue_s": _get(r, "engine_timing", "queue_s"),
            "engine_ttft_s": _get(r, "engine_timing", "ttft_s"),
            **request_energy_columns(result, r),
        }


def _write_table(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_result(path: Path) -> dict[str, Any]:
    """A result.json as plain data, checked to be of this schema's major version."""
    try:
        result = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise LlemError(f"{path}: not a readable result: {e}") from e
    major = SCHEMA_VERSION.split(".")[0]
    if str(result.get("schema_version", "")).split(".")[0] != major:
        raise LlemError(
            f"{path}: schema_version {result.get('schema_version')!r} is not {major}.x; "
            "re-run it or build its tables with the llem version that wrote it"
        )
    return result


def build_tables(result_paths: list[Path], out_dir: Path) -> dict[str, Path]:
    """Write runs.parquet, latency.parquet, timeseries.parquet and phases.parquet.

    Args:
        result_paths: The runs' result.json files (their timeseries.parquet lie beside them).
        out_dir: The campaign's tables directory.
    """
    # Stream: keep only the rows, not 10,000 parsed results (the GC would walk them all).
    run_rows: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    for path in result_paths:
        result = read_result(path)
        run_rows.append(run_row(result))
        latency.extend(latency_rows(result))
        phases.extend(phase_rows(result))
    run_rows.sort(key=lambda r: (r["model"], r["backend"], r["run_id"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "runs": out_dir / "runs.parquet",
        "latency": out_dir / "latency.parquet",
        "timeseries": out_dir / "timeseries.parquet",
        "phases": out_dir / "phases.parquet",
    }
    runs = pa.Table.from_pylist(run_rows, schema=RUNS_SCHEMA)
    _write_table(runs, paths["runs"])
    timelines = [
        pq.read_table(Path(p).parent / "timeseries.parquet", schema=TIMESERIES_SCHEMA)
        for p in result_paths
        if (Path(p).parent / "timeseries.parquet").exists()
    ]
    combined = pa.concat_tables(timelines) if timelines else TIMESERIES_SCHEMA.empty_table()
    _write_table(combined, paths["timeseries"])
    _write_table(pa.Table.from_pylist(latency, schema=LATENCY_SCHEMA), paths["latency"])
    _write_table(pa.Table.from_pylist(phases, schema=PHASES_SCHEMA), paths["phases"])
    return paths

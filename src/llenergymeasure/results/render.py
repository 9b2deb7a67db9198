"""Readable terminal views of a run and of the campaign tables (rich)."""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table

from llenergymeasure.results.models import FailureRecord, RunResult, Stats

RUN_COLUMNS = {
    "model": "model",
    "backend": "backend",
    "batch_size": "batch",
    "dtype": "dtype",
    "quantization": "quant",
    "repeat": "rep",
    "failure_class": "failed",
    "output_tokens": "out tok",
    "output_tokens_per_s": "tok/s",
    "ttft_median_s": "TTFT p50 s",
    "itl_median_s": "ITL p50 s",
    "energy_per_output_token_j": "J/tok",
    "energy_confidence": "energy",
}
SUMMARY_COLUMNS = {
    "model": "model",
    "backend": "backend",
    "batch_size": "batch",
    "dtype": "dtype",
    "quantization": "quant",
    "repeats": "n",
    "energy_per_output_token_j_mean": "J/tok mean",
    "energy_per_output_token_j_ci_low": "CI low",
    "energy_per_output_token_j_ci_high": "CI high",
    "energy_per_output_token_j_cv": "CV",
    "energy_per_output_token_j_ci_method": "CI method",
    "ci_confidence": "CI level",
    "output_tokens_per_s_mean": "tok/s",
    "high_variance": "high var",
    "meets_slo": "meets SLO",
}


def cell(value: object) -> str:
    """A table cell: 4 significant digits, null for missing values."""
    if isinstance(value, float):
        return "null" if math.isnan(value) else f"{value:.4g}"
    return "null" if value is None else str(value)


def _cell(row: pd.Series, column: str) -> str:
    if column == "failure_class":  # a succeeded run has no failure: not "null"
        value = row.get(column)
        return "-" if value is None or pd.isna(value) else str(value)
    return cell(row.get(column))


def table_view(frame: pd.DataFrame, title: str) -> Table:
    """runs.parquet or summary.parquet as a table."""
    columns = SUMMARY_COLUMNS if "repeats" in frame.columns else RUN_COLUMNS
    table = Table(title=title)
    for name in columns.values():
        table.add_column(name, justify="right")
    for _, row in frame.iterrows():
        table.add_row(*[_cell(row, c) for c in columns])
    return table


def _stats(stats: Stats | None) -> str:
    if stats is None:
        return "null"
    return f"median {stats.median:.4g}, p95 {stats.p95:.4g}, mean {stats.mean:.4g} (n={stats.n})"


def _protocol(result: RunResult) -> str:
    """Cooldown, warmup and cache state of a run, in one line."""
    timing, parts = result.timing, []
    if timing.cooldown is not None:
        c = timing.cooldown
        parts.append(
            f"cooldown null ({c.null_reason})"
            if c.cooldown_s is None
            else f"cooldown {c.cooldown_s:.1f} s ({'settled' if c.settled else 'not settled'})"
        )
    if timing.warmup is not None:
        parts.append(f"warmup {timing.warmup.batches} batches: {timing.warmup.note}")
    if result.cache is not None:
        hits = result.cache.window_cached_prompt_tokens
        parts.append(f"{result.cache.note}; window cache hits {cell(hits)} prompt tokens")
    return "; ".join(parts) or "not recorded"


def _verdict(result: RunResult) -> str:
    """VALID / INVALID with the reasons, as judged when the result was written."""
    v = result.validity
    if v is None:
        return "not judged (a result written before schema 1.9)"
    head = "[green]VALID[/]" if v.valid else "[red]INVALID[/]"
    lines = [head, *(f"{r.code}: {r.message}" for r in v.invalid_reasons)]
    lines += [f"waived {r.code}: {r.message}" for r in v.waived]
    lines += [f"not judged {r.code}: {r.message}" for r in v.not_judged]
    return "\n".join(lines)


def run_view(result: RunResult) -> Table:
    """One run: configuration, tokens, latency, energy, FLOPs, provenance, warnings."""
    cfg, energy = result.config, result.energy
    table = Table(title=f"run {result.run_id}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    settings = cfg.settings.model_dump(exclude_none=True, exclude={"vllm", "tensorrt"})
    rows = [
        ("verdict", _verdict(result)),
        ("model / backend", f"{cfg.model.name} ({cfg.model.source}) / {cfg.backend}"),
        ("settings", ", ".join(f"{k}={v}" for k, v in settings.items())),
        (
            "window",
            f"{result.timing.window_s:.2f} s from {result.timing.started_at} "
            f"({result.timing.window_passes} passes); "
            f"model load {result.timing.model_load_s:.1f} s",
        ),
        ("before the window", _protocol(result)),
        (
            "tokens",
            f"{result.tokens.num_requests} requests, {result.tokens.input_tokens} in, "
            f"{result.tokens.output_tokens} out",
        ),
        ("throughput", f"{result.throughput.output_tokens_per_s:.2f} output tok/s"),
        ("TTFT (s)", _stats(result.latency.ttft_s)),
        ("service TTFT (s)", _stats(result.latency.service_ttft_s)),
        ("queue (s)", _stats(result.latency.queue_s)),
        ("ITL (s)", _stats(result.latency.itl_s)),
    ]
    if energy.energy_j is None:
        rows.append(("energy", f"null: {energy.null_reason}"))
    else:
        rows.append(
            (
                "energy",
                f"{energy.energy_j:.2f} J ({energy.method}, {energy.confidence}); "
                f"{result.energy_per_output_token_j:.4g} J/token; adjusted "
                f"{cell(energy.adjusted_energy_j)} J",
            )
        )
        budget = (
            f"± {energy.energy_uncertainty_j:.3g} J ("
            + ", ".join(f"{p.name} {p.bound_j:.3g}" for p in energy.uncertainty_parts)
            + ")"
            if energy.energy_uncertainty_j is not None
            else f"null: {energy.uncertainty_null_reason or 'not recorded (before schema 1.10)'}"
        )
        rows.append(("sensor budget", budget))
        rows += [
            (f"  {d.device}", f"{cell(d.energy_j)} J via {d.method}") for d in energy.per_device
        ]
    if (view := result.engine_view) is not None:
        rows.append(
            (
                "engine view",
                f"null: {view.null_reason}"
                if view.mean_running is None
                else f"mean running {view.mean_running:.2f} of {view.max_num_seqs}, peak waiting "
                f"{cell(view.peak_waiting)}, mean KV {cell(view.mean_kv_cache_usage)}, "
                f"preemptions {cell(view.preemptions)} ({view.source.split(':')[0]})",
            )
        )
    if cfg.settings.vllm:
        rows.insert(2, ("vllm", cfg.settings.vllm.model_dump_json(exclude_defaults=True)))
    if cfg.settings.tensorrt:
        trt = cfg.settings.tensorrt.model_dump_json(exclude_defaults=True)
        rows.insert(2, ("tensorrt", trt))
    if result.flops:
        for f in [result.flops.primary, *result.flops.alternatives]:
            rows.append((f"FLOPs {f.method}", f"{cell(f.value)} ({f.confidence})"))
    if result.precision:
        p = result.precision
        factor = f"factor {p.precision_factor} (convention)"
        rows.append(("precision", f"weights {p.weights}, compute {p.compute}, {factor}"))
    env = result.environment
    rows.append(
        (
            "environment",
            f"{env.get('host')}, {env.get('cpu_model')}, "
            f"git {(env.get('git') or {}).get('commit')}",
        )
    )
    rows += [("warning", w) for w in result.warnings]
    for what, value in rows:
        table.add_row(what, value)
    return table


def failure_view(record: FailureRecord) -> Table:
    """One failed run: configuration, class, phase, message, log."""
    table = Table(title=f"run {record.run_id}: FAILED", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    cfg = record.config
    settings = cfg.settings.model_dump(exclude_none=True, exclude={"vllm", "tensorrt"})
    for what, value in (
        ("model / backend", f"{cfg.model.name} ({cfg.model.source}) / {cfg.backend}"),
        ("settings", ", ".join(f"{k}={v}" for k, v in settings.items())),
        ("failure", f"{record.failure_class} in {record.phase}, after {record.elapsed_s:.1f} s"),
        ("message", record.message),
        ("timings", ", ".join(f"{k} {v:.2f}" for k, v in record.timings.items()) or "-"),
        ("log", record.log or "-"),
        ("retry", "llem retry results/<campaign> (then the same snakemake command)"),
    ):
        table.add_row(what, value)
    return table

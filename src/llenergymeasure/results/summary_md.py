"""summary.md: the table a paper needs, with units and how each number was obtained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from llenergymeasure.results.phase_report import phase_lines, slo_lines
from llenergymeasure.results.stats import BCA_MIN_N
from llenergymeasure.results.summary import (
    ci_label,
    confidence_text,
    interval_methods,
    n_text,
)

TABLE_METRICS = (
    "energy_per_output_token_j",
    "adjusted_energy_per_output_token_j",
    "output_tokens_per_s",
    "ttft_median_s",
    "service_ttft_median_s",
    "queue_median_s",
    "itl_median_s",
)
"""Metrics shown with an interval in the table."""


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "null"
    return f"{float(value):.{digits}g}"  # type: ignore[arg-type]


def _confidence(value: object) -> str:
    """An energy confidence, or what its absence means."""
    return "no energy measured" if value is None or pd.isna(value) else str(value)


def _with_ci(row: pd.Series, metric: str) -> str:
    mean = _fmt(row[f"{metric}_mean"])
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if pd.isna(low):
        return mean
    return f"{mean} [{_fmt(low)}, {_fmt(high)}]"


def _budget(row: pd.Series) -> str:
    value = row.get("energy_per_output_token_uncertainty_j_mean")
    return f"±{_fmt(value)}" if value is not None and pd.notna(value) else "null"


def _interval_methods_text(summary: pd.DataFrame) -> str:
    """The methods bullet on intervals: formula, level, n, and any BCa fallback."""
    used = interval_methods(summary, TABLE_METRICS)
    level = confidence_text(summary)
    parts = []
    if "t" in used:
        parts.append(
            f"Student-t, mean ± t_((1+c)/2, n−1) · s/√n at c = {level} "
            f"({len(used['t'])} intervals, {n_text(used['t'])})"
        )
    if "bca" in used:
        resamples = summary["ci_resamples"].dropna()
        count = f"{int(resamples.iloc[0])} " if len(resamples) else ""
        parts.append(
            f"BCa bootstrap of the mean ({count}seeded resamples, scipy) at {level} "
            f"({len(used['bca'])} intervals, {n_text(used['bca'])})"
        )
    text = "; ".join(parts) or f"none (every configuration has n < 2; level {level})"
    requested = summary.get("ci_method_requested", pd.Series(dtype=object)).dropna()
    if "t" in used and "bca" in set(requested):
        text += (
            f". BCa was requested (`analysis.ci_method: bca`) but is used only where "
            f"n ≥ {BCA_MIN_N} and the repeats differ: the {len(used['t'])} Student-t "
            "intervals are its fallback"
        )
    return text + ". Equal repeats give a zero-width interval; a single repeat, none."


def _optimum_lines(summary: pd.DataFrame) -> list[str]:
    """Per configuration of the other axes, the GPU setting of least energy per token."""
    swept = summary.dropna(subset=["gpu_settings", "energy_per_output_token_j_mean"])
    if swept.empty:
        return []
    lines = [
        "",
        "## Energy-optimal GPU setting",
        "",
        "| model | backend | batch | dtype | best setting | energy/token (J) | throughput "
        "(tok/s) | settings compared |",
        "|---|---|---|---|---|---|---|---|",
    ]
    axes = ["model", "backend", "batch_size", "dtype", "quantization"]
    for _, group in swept.groupby(axes, sort=True, dropna=False):
        best = group.loc[group["energy_per_output_token_j_mean"].astype(float).idxmin()]
        lines.append(
            f"| {best['model']} | {best['backend']} | {best['batch_size']} | {best['dtype']} "
            f"| `{best['gpu_settings']}` | {_with_ci(best, 'energy_per_output_token_j')} "
            f"| {_with_ci(best, 'output_tokens_per_s')} | {len(group)} |"
        )
    return lines


def _failure_lines(failed: pd.DataFrame) -> list[str]:
    """The failed runs: configuration, class, phase and message (itself a result)."""
    if failed.empty:
        return []
    lines = [
        "",
        "## Failed runs",
        "",
        "| model | backend | batch | dtype | repeat | class | phase | message |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, row in failed.iterrows():
        message = str(row["failure_message"]).replace("|", "\\|")
        lines.append(
            f"| {row['model']} | {row['backend']} | {row['batch_size']} | {row['dtype']} "
            f"| {row['repeat']} | {row['failure_class']} | {row['failure_phase']} | {message} |"
        )
    return lines


def _containers_text(provenance: dict[str, Any]) -> str:
    """Where the runs executed: the images (with digests), or the host's environment."""
    images: dict[str, dict[str, Any]] = provenance.get("container_images") or {}
    if not images:
        return "runs executed on the host's Python environment (no container)."
    named = [
        f"`{image}` ({info['runtime']}, {info['digest'] or info['image_id'] or 'no digest'}) "
        f"for {', '.join(info['backends'])}"
        for image, info in images.items()
    ]
    return "runs executed in container images: " + "; ".join(named) + "."


def _protocol_text(runs: pd.DataFrame) -> str:
    """Cooldown, warmup, window passes and prefix caching of the campaign's runs, in words."""
    n = len(runs)
    cooled = runs["cooldown_s"].dropna()
    if len(cooled):
        settled = int(runs["cooldown_settled"].fillna(False).astype(bool).sum())
        cooldown = (
            f"cooldown before every run, {cooled.median():.1f} s median, settled in "
            f"{settled} of {n} runs"
        )
    else:
        reasons = sorted(set(runs["cooldown_null_reason"].dropna()))
        cooldown = f"cooldown not observable ({'; '.join(reasons) or 'no record'})"
    judged = runs["warmup_converged"].dropna()
    warmup = (
        f"warmup stable in {int(judged.astype(bool).sum())} of {len(judged)} runs judged"
        if len(judged)
        else "warmup of a fixed count (stability not judged)"
    )
    passes = runs["window_passes"].dropna()
    window = (
        f"windows of {int(passes.min())}–{int(passes.max())} passes over the prompt set"
        if len(passes)
        else "window passes not recorded"
    )
    caching = runs["prefix_caching"].fillna(False).astype(bool)
    cached = runs["window_cached_prompt_tokens"].dropna()
    prefix = (
        f"prefix caching on in {int(caching.sum())} runs (reset before each window; "
        f"{int(cached.sum())} window prompt tokens served from cache)"
        if caching.any()
        else "no prefix caching: every window prefill computed in full"
    )
    return f"{cooldown}; {warmup}; {window}; {prefix}."


def _invalid_count(row: pd.Series) -> str:
    """`` (+1 invalid)`` beside n where invalid runs were left out of the fold."""
    invalid = row.get("invalid_runs")
    if pd.isna(invalid) or not invalid or bool(row.get("invalid_included")):
        return ""
    return f" (+{int(invalid)} invalid)"


def _invalid_lines(invalid: pd.DataFrame, included: bool) -> list[str]:
    """The succeeded runs that broke a validity rule, each with its reasons."""
    if invalid.empty:
        return []
    lines = [
        "",
        "## Invalid runs",
        "",
        "Measured, but breaking a rule of `analysis.validity`: "
        + (
            "folded into the summary anyway (`analysis.include_invalid`)."
            if included
            else "left out of the summary (counted in its `invalid_runs`)."
        ),
        "",
        "| model | backend | batch | dtype | repeat | reasons |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in invalid.iterrows():
        detail = str(row["invalid_detail"]).replace("|", "\\|")
        lines.append(
            f"| {row['model']} | {row['backend']} | {row['batch_size']} | {row['dtype']} "
            f"| {row['repeat']} | {detail} |"
        )
    return lines


def summary_markdown(summary: pd.DataFrame, runs: pd.DataFrame, provenance_path: Path) -> str:
    """Markdown of the summary table and its methods."""
    provenance = json.loads(provenance_path.read_text())
    campaign = summary["campaign"].iloc[0] if len(summary) else "?"
    failed = runs[runs["status"] == "failed"]
    invalid = runs[runs["valid"].map(lambda v: v is False)] if "valid" in runs else runs[:0]
    included = bool(summary["invalid_included"].any()) if "invalid_included" in summary else True
    lines = [
        f"# Campaign `{campaign}`",
        "",
        f"**{len(runs) - len(failed)} of {len(runs)} runs succeeded**"
        + (f"; {len(failed)} failed (listed below)." if len(failed) else ".")
        + (
            f" **{len(invalid)} succeeded runs are invalid** (listed below"
            + ("; folded in anyway)." if included else "; not folded into the table).")
            if len(invalid)
            else ""
        ),
        "",
        "Mean over repeats with its confidence interval of the mean in brackets "
        f"({ci_label(summary, TABLE_METRICS)}; a single repeat has none). Energy per token "
        "is per *output* token; *adjusted* subtracts idle power × window. The intervals "
        "cover run-to-run spread only; *sensor ±* is the mean sensor budget of the folded "
        "runs' energy per token (see Methods), beside them, not inside them. `!` marks a "
        "configuration whose coefficient of variation exceeds the campaign's threshold on "
        "some metric.",
        "",
        "| model | backend | batch | dtype | quant. | n | energy/token (J) | sensor ± (J) "
        "| adjusted (J) "
        "| throughput (tok/s) | TTFT p50 (s) | service TTFT p50 (s) | queue p50 (s) "
        "| ITL p50 (s) | GFLOPs/token | energy source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in summary.iterrows():
        flops = row["flops_per_output_token_mean"]
        lines.append(
            "| "
            + " | ".join(
                [
                    str(row["model"]),
                    str(row["backend"]),
                    str(row["batch_size"]),
                    str(row["dtype"]),
                    str(row["quantization"]),
                    f"{row['repeats']}{' !' if row['high_variance'] else ''}" + _invalid_count(row),
                    _with_ci(row, "energy_per_output_token_j"),
                    _budget(row),
                    _with_ci(row, "adjusted_energy_per_output_token_j"),
                    _with_ci(row, "output_tokens_per_s"),
                    _with_ci(row, "ttft_median_s"),
                    _with_ci(row, "service_ttft_median_s"),
                    _with_ci(row, "queue_median_s"),
                    _with_ci(row, "itl_median_s"),
                    "null" if pd.isna(flops) else _fmt(float(flops) / 1e9),
                    f"{row['energy_method']} ({_confidence(row['energy_confidence'])})",
                ]
            )
            + " |"
        )
    intervals = sorted(
        {
            f"{m}: {i:g} s"
            for m, i in zip(runs["energy_method"], runs["energy_interval_s"], strict=True)
            if pd.notna(i)
        }
    )
    lines += _optimum_lines(summary)
    lines += slo_lines(summary)
    lines += phase_lines(runs)
    lines += _invalid_lines(invalid, included)
    lines += _failure_lines(failed)
    lines += [
        "",
        "## Methods",
        "",
        f"- Energy sources: {', '.join(provenance['energy_methods'])}; sampling/meter "
        f"intervals: {', '.join(intervals) or 'n/a'}. `estimated` numbers come from a model "
        "(CodeCarbon without hardware counters), not from a counter.",
        "- Sensor budget (per run, `energy_uncertainty_j` with its parts in runs.parquet): "
        "the sum of bounds from the counter's update period at the window's ends, the "
        "vendor-stated power accuracy (NVIDIA: ±5 W per GPU), polled power's standard error, "
        "the idle baseline's spread (adjusted energy) and CodeCarbon's ±50 % (estimates).",
        f"- Software: {_containers_text(provenance)}",
        f"- FLOPs: {', '.join(sorted(set(runs['flops_method'].dropna())))} "
        f"(confidence {', '.join(sorted(set(runs['flops_confidence'].dropna())))}); "
        "useful work over real tokens.",
        f"- Intervals: {_interval_methods_text(summary)}",
        f"- Protocol: {_protocol_text(runs)}",
        "- Latency: every output token timestamped per request; TTFT from the request's "
        "arrival (queueing included), service TTFT from its hand-over to the engine, queue "
        "from arrival to hand-over (a wait inside the engine counts as service); ITL pooled "
        "over requests before percentiles.",
        f"- Hosts: {', '.join(provenance['hosts'])}. Devices: {'; '.join(provenance['devices'])}.",
        f"- Code: llenergymeasure {provenance['llenergymeasure']}, git "
        f"{provenance['git']['commit'] or 'unknown'}"
        f"{' (dirty)' if provenance['git']['dirty'] else ''}; campaign file sha256 "
        f"{provenance['campaign_sha256'][:12]}; result schema "
        f"{', '.join(provenance['result_schema_versions'])}.",
        "",
    ]
    return "\n".join(lines)

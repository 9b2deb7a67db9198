"""summary.md: the table a paper needs, with units and how each number was obtained."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "null"
    return f"{float(value):.{digits}g}"  # type: ignore[arg-type]


def _with_ci(row: pd.Series, metric: str) -> str:
    mean = _fmt(row[f"{metric}_mean"])
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if pd.isna(low):
        return mean
    return f"{mean} [{_fmt(low)}, {_fmt(high)}]"


def summary_markdown(summary: pd.DataFrame, runs: pd.DataFrame, provenance_path: Path) -> str:
    """Markdown of the summary table and its methods."""
    provenance = json.loads(provenance_path.read_text())
    campaign = summary["campaign"].iloc[0] if len(summary) else "?"
    lines = [
        f"# Campaign `{campaign}`",
        "",
        "Mean over repeats with its 95 % bootstrap confidence interval in brackets (a single "
        "repeat has none). Energy per token is per *output* token; *adjusted* subtracts idle "
        "power × window. `!` marks a configuration whose coefficient of variation exceeds the "
        "campaign's threshold on some metric.",
        "",
        "| model | backend | batch | dtype | quant. | n | energy/token (J) | adjusted (J) "
        "| throughput (tok/s) | TTFT p50 (s) | ITL p50 (s) | GFLOPs/token | energy source |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
                    f"{row['repeats']}{' !' if row['high_variance'] else ''}",
                    _with_ci(row, "energy_per_output_token_j"),
                    _with_ci(row, "adjusted_energy_per_output_token_j"),
                    _with_ci(row, "output_tokens_per_s"),
                    _with_ci(row, "ttft_median_s"),
                    _with_ci(row, "itl_median_s"),
                    "null" if pd.isna(flops) else _fmt(float(flops) / 1e9),
                    f"{row['energy_method']} ({row['energy_confidence']})",
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
    lines += [
        "",
        "## Methods",
        "",
        f"- Energy sources: {', '.join(provenance['energy_methods'])}; sampling/meter "
        f"intervals: {', '.join(intervals) or 'n/a'}. `estimated` numbers come from a model "
        "(CodeCarbon without hardware counters), not from a counter.",
        f"- FLOPs: {', '.join(sorted(set(runs['flops_method'].dropna())))} "
        f"(confidence {', '.join(sorted(set(runs['flops_confidence'].dropna())))}); "
        "useful work over real tokens.",
        "- Latency: every output token timestamped per request; TTFT from the request's "
        "arrival (queueing included); ITL pooled over requests before percentiles.",
        f"- Hosts: {', '.join(provenance['hosts'])}. Devices: {'; '.join(provenance['devices'])}.",
        f"- Code: llenergymeasure {provenance['llenergymeasure']}, git "
        f"{provenance['git']['commit'] or 'unknown'}"
        f"{' (dirty)' if provenance['git']['dirty'] else ''}; campaign file sha256 "
        f"{provenance['campaign_sha256'][:12]}; result schema "
        f"{', '.join(provenance['result_schema_versions'])}.",
        "",
    ]
    return "\n".join(lines)

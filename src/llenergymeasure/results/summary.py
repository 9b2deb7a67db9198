"""summary.parquet: the repeats of each configuration folded into mean, std, CI and CV.

Per metric: ``<metric>_{mean,std,ci_low,ci_high,cv,n}`` and ``<metric>_ci_method``, the
interval method actually used (``t`` or ``bca``; null where n < 2). Per campaign (the same in
every row): ``ci_confidence`` (the configured level), ``ci_method_requested`` (the configured
`analysis.ci_method`: ``bca`` with a ``t`` per-metric method is the small-n fallback) and
``ci_resamples`` (bootstrap resamples, used by ``bca`` only). The intervals cover run-to-run
spread only; ``energy_uncertainty_j_mean`` and ``energy_per_output_token_uncertainty_j_mean``
give the mean sensor budget of the folded runs beside them (`measure.uncertainty`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from llenergymeasure.config.models import AnalysisConfig
from llenergymeasure.results.slo import SLO_FIELDS, slo_columns
from llenergymeasure.results.stats import summarise
from llenergymeasure.results.tables import RUNS_SCHEMA, SETTINGS_FIELDS

METRICS = (
    "energy_per_output_token_j",
    "adjusted_energy_per_output_token_j",
    "output_tokens_per_s",
    "ttft_median_s",
    "ttft_p95_s",
    "service_ttft_median_s",
    "service_ttft_p95_s",
    "queue_median_s",
    "itl_median_s",
    "itl_p95_s",
    "flops_per_output_token",
    "tokens_per_joule",
)
BUDGETS = ("energy_uncertainty_j", "energy_per_output_token_uncertainty_j")
"""Sensor budgets folded as their mean beside the run-to-run CIs (null unless every run has one)."""
STATS = ("mean", "std", "ci_low", "ci_high", "cv", "n", "ci_method")
STAT_TYPES = {"n": pa.int64(), "ci_method": pa.string()}
"""Arrow type of each statistic that is not a float64."""
AXES = (
    "configuration_id",
    "campaign",
    "model",
    "backend",
    *[f.name for f in SETTINGS_FIELDS],
    "vllm_settings",
    "vllm_arrival",
    "vllm_request_rate",
    "tensorrt_settings",
    "gpu_settings",
    "power_limit_w",
    "sm_clocks_mhz",
    "memory_clocks_mhz",
    "prompts_source",
    "device",
    "energy_method",
    "energy_confidence",
    "flops_method",
    "flops_confidence",
    "compute_precision",
    "precision_factor",
)
SUMMARY_SCHEMA = pa.schema(
    [
        *[RUNS_SCHEMA.field(name) for name in AXES],
        pa.field("repeats", pa.int64()),  # the runs folded
        pa.field("failed_runs", pa.int64()),
        pa.field("invalid_runs", pa.int64()),  # succeeded but invalid (analysis.validity)
        pa.field("invalid_included", pa.bool_()),  # analysis.include_invalid
        pa.field("run_ids", pa.list_(pa.string())),
        pa.field("ci_confidence", pa.float64()),
        pa.field("ci_method_requested", pa.string()),
        pa.field("ci_resamples", pa.int64()),
        *[
            pa.field(f"{metric}_{stat}", STAT_TYPES.get(stat, pa.float64()))
            for metric in METRICS
            for stat in STATS
        ],
        *[pa.field(f"{column}_mean", pa.float64()) for column in BUDGETS],
        pa.field("high_variance", pa.bool_()),
        pa.field("high_variance_metrics", pa.list_(pa.string())),
        *SLO_FIELDS,
    ]
)


def summary_rows(runs: pd.DataFrame, analysis: AnalysisConfig) -> list[dict[str, Any]]:
    """One row per configuration, in the order configurations first appear."""
    rows = []
    failed = runs[runs["status"] == "failed"].groupby("configuration_id").size()
    succeeded = runs[runs["status"] != "failed"]  # failures are listed in summary.md
    for configuration, runs_of in succeeded.groupby("configuration_id", sort=False):
        first = runs_of.iloc[0]
        invalid = runs_of["valid"].map(lambda v: v is False) if "valid" in runs_of else None
        group = runs_of if invalid is None or analysis.include_invalid else runs_of[~invalid]
        row: dict[str, Any] = {name: first[name] for name in AXES}
        row["repeats"] = len(group)
        row["failed_runs"] = int(failed.get(configuration, 0))
        row["invalid_runs"] = int(invalid.sum()) if invalid is not None else 0
        row["invalid_included"] = analysis.include_invalid
        row["run_ids"] = sorted(group["run_id"])
        row["ci_confidence"] = analysis.confidence
        row["ci_method_requested"] = analysis.ci_method
        row["ci_resamples"] = analysis.bootstrap_resamples
        noisy = []
        for metric in METRICS:
            s = summarise(
                group[metric].tolist(),
                confidence=analysis.confidence,
                method=analysis.ci_method,
                resamples=analysis.bootstrap_resamples,
                seed=analysis.seed,
            )
            for stat in STATS:
                row[f"{metric}_{stat}"] = getattr(s, stat)
            if s.cv is not None and s.cv > analysis.cv_threshold:
                noisy.append(metric)
        for column in BUDGETS:
            values = group[column].tolist() if column in group else []
            known = values and all(v is not None for v in values)
            row[f"{column}_mean"] = sum(values) / len(values) if known else None
        row["high_variance"] = bool(noisy)
        row["high_variance_metrics"] = noisy
        row.update(slo_columns(row, analysis.slo))
        rows.append(row)
    return rows


def build_summary(runs_parquet: Path, analysis: AnalysisConfig, out: Path) -> pd.DataFrame:
    """Write summary.parquet from runs.parquet; returns the summary."""
    runs = pq.read_table(runs_parquet).to_pandas(types_mapper=pd.ArrowDtype)
    runs = runs.astype(object).where(runs.notna(), None)
    rows = summary_rows(runs, analysis)
    table = pa.Table.from_pylist(rows, schema=SUMMARY_SCHEMA)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return table.to_pandas()


METHOD_NAMES = {"t": "Student-t", "bca": "BCa bootstrap"}


def n_text(ns: Sequence[int]) -> str:
    """``n = 2`` or ``n = 2–5``: the range of sample sizes `ns`."""
    low, high = min(ns), max(ns)
    return f"n = {low}" if low == high else f"n = {low}–{high}"


def confidence_text(summary: pd.DataFrame) -> str:
    """The configured confidence level(s) in percent, from ``ci_confidence`` (e.g. ``95 %``)."""
    if "ci_confidence" not in summary or summary["ci_confidence"].isna().all():
        return "? %"
    levels = sorted({float(c) for c in summary["ci_confidence"].dropna()})
    return ", ".join(f"{round(c * 100, 6):g} %" for c in levels)


def interval_methods(summary: pd.DataFrame, metrics: Sequence[str]) -> dict[str, list[int]]:
    """The n of every interval in `metrics`, by the method that produced it (``t``, ``bca``)."""
    used: dict[str, list[int]] = {}
    for metric in metrics:
        column = f"{metric}_ci_method"
        if column not in summary:
            continue
        for method, n in zip(summary[column], summary[f"{metric}_n"], strict=True):
            if isinstance(method, str):
                used.setdefault(method, []).append(int(n))
    return used


def ci_label(summary: pd.DataFrame, metrics: Sequence[str]) -> str:
    """A short label of the intervals of `metrics`, e.g. ``95 % CI: Student-t, n = 2``."""
    used = interval_methods(summary, metrics)
    if not used:
        return "no CI, every n < 2"
    methods = "; ".join(f"{METHOD_NAMES.get(m, m)}, {n_text(ns)}" for m, ns in sorted(used.items()))
    return f"{confidence_text(summary)} CI: {methods}"

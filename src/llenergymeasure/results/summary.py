"""summary.parquet: the repeats of each configuration folded into mean, std, CI and CV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from llenergymeasure.config.models import AnalysisConfig
from llenergymeasure.results.stats import summarise
from llenergymeasure.results.tables import RUNS_SCHEMA, SETTINGS_FIELDS

METRICS = (
    "energy_per_output_token_j",
    "adjusted_energy_per_output_token_j",
    "output_tokens_per_s",
    "ttft_median_s",
    "ttft_p95_s",
    "itl_median_s",
    "itl_p95_s",
    "flops_per_output_token",
    "tokens_per_joule",
)
STATS = ("mean", "std", "ci_low", "ci_high", "cv", "n")
AXES = (
    "configuration_id",
    "campaign",
    "model",
    "backend",
    *[f.name for f in SETTINGS_FIELDS],
    "vllm_settings",
    "vllm_arrival",
    "vllm_request_rate",
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
        pa.field("repeats", pa.int64()),
        pa.field("run_ids", pa.list_(pa.string())),
        *[
            pa.field(f"{metric}_{stat}", pa.int64() if stat == "n" else pa.float64())
            for metric in METRICS
            for stat in STATS
        ],
        pa.field("high_variance", pa.bool_()),
        pa.field("high_variance_metrics", pa.list_(pa.string())),
    ]
)


def summary_rows(runs: pd.DataFrame, analysis: AnalysisConfig) -> list[dict[str, Any]]:
    """One row per configuration, in the order configurations first appear."""
    rows = []
    for _, group in runs.groupby("configuration_id", sort=False):
        first = group.iloc[0]
        row: dict[str, Any] = {name: first[name] for name in AXES}
        row["repeats"] = len(group)
        row["run_ids"] = sorted(group["run_id"])
        noisy = []
        for metric in METRICS:
            s = summarise(
                group[metric].tolist(),
                analysis.bootstrap_resamples,
                analysis.confidence,
                analysis.seed,
            )
            for stat in STATS:
                row[f"{metric}_{stat}"] = getattr(s, stat)
            if s.cv is not None and s.cv > analysis.cv_threshold:
                noisy.append(metric)
        row["high_variance"] = bool(noisy)
        row["high_variance_metrics"] = noisy
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

"""Energy at a latency target: which configurations meet `analysis.slo`, and the cheapest.

A configuration meets the target when the mean over its repeats of every targeted latency
metric is at or below its target; `meets_slo` is null (with the metric in `slo_unknown`)
where a targeted metric is null and no other metric already misses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from llenergymeasure.config.models import SloConfig

SLO_METRICS = tuple(SloConfig.model_fields)
"""Summary metrics a target can be set on (each is also a field of `analysis.slo`)."""
ENERGY_METRIC = "energy_per_output_token_j"
SLO_FIELDS = [
    *[pa.field(f"slo_{metric}", pa.float64()) for metric in SLO_METRICS],
    pa.field("meets_slo", pa.bool_()),
    pa.field("slo_missed", pa.list_(pa.string())),
    pa.field("slo_unknown", pa.list_(pa.string())),
]
"""summary.parquet columns: the targets (the same in every row), and each row's verdict."""


def slo_columns(row: dict[str, Any], slo: SloConfig | None) -> dict[str, Any]:
    """A summary row's SLO columns from its `<metric>_mean` values."""
    targets = slo.targets() if slo is not None else {}
    missed, unknown = [], []
    for metric, target_s in targets.items():
        mean = row.get(f"{metric}_mean")
        if mean is None or pd.isna(mean):
            unknown.append(metric)
        elif float(mean) > target_s:
            missed.append(metric)
    meets = None if not targets or (unknown and not missed) else not missed
    return {
        **{f"slo_{metric}": targets.get(metric) for metric in SLO_METRICS},
        "meets_slo": meets,
        "slo_missed": missed,
        "slo_unknown": unknown,
    }


def targets_of(summary: pd.DataFrame) -> dict[str, float]:
    """The targets recorded in a summary (empty: none set)."""
    out = {}
    for metric in SLO_METRICS:
        column = f"slo_{metric}"
        if column in summary and summary[column].notna().any():
            out[metric] = float(summary[column].dropna().iloc[0])
    return out


@dataclass(frozen=True)
class Choice:
    """The cheapest configuration of one model × backend that meets the target.

    Attributes:
        model: The model.
        backend: The backend.
        best: Its summary row (None: none qualifies).
        compared: Configurations of this model × backend.
        meeting: How many meet the target.
        reason: Why there is no choice (None: there is one).
    """

    model: str
    backend: str
    best: pd.Series | None
    compared: int
    meeting: int
    reason: str | None


def cheapest(summary: pd.DataFrame) -> list[Choice]:
    """Per model × backend, the configuration of least energy per output token meeting the SLO."""
    choices: list[Choice] = []
    if "meets_slo" not in summary:
        return choices
    for (model, backend), group in summary.groupby(["model", "backend"], sort=True):
        meeting = group[group["meets_slo"].fillna(False).astype(bool)]
        measured = meeting.dropna(subset=[f"{ENERGY_METRIC}_mean"])
        reason = None
        if meeting.empty:
            unknown = int(group["meets_slo"].isna().sum())
            reason = f"none of {len(group)} configurations meets the target" + (
                f" ({unknown} not judged: a targeted latency is null)" if unknown else ""
            )
        elif measured.empty:
            reason = f"{len(meeting)} meet the target, but none has a measured energy"
        best = (
            measured.loc[measured[f"{ENERGY_METRIC}_mean"].astype(float).idxmin()]
            if reason is None
            else None
        )
        choices.append(Choice(str(model), str(backend), best, len(group), len(meeting), reason))
    return choices


def energy_latency_front(points: pd.DataFrame, latency: str, energy: str) -> pd.DataFrame:
    """Points no other point beats on both lower latency and lower energy."""
    ordered = points.sort_values([latency, energy])
    front, best = [], float("inf")
    for index, row in ordered.iterrows():
        if float(row[energy]) < best:
            front.append(index)
            best = float(row[energy])
    return points.loc[front]

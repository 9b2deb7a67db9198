"""Run order (Snakemake priorities), repeat statistics and the summary table."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.config.models import AnalysisConfig
from llenergymeasure.config.order import run_order, run_priorities
from llenergymeasure.results.stats import summarise
from llenergymeasure.results.summary import SUMMARY_SCHEMA, build_summary
from llenergymeasure.results.tables import RUNS_SCHEMA


def plan(campaign, order, seed=0):
    campaign = {
        **campaign,
        "repeats": 3,
        "order": order,
        "order_seed": seed,
        "grid": {"batch_size": [1, 2]},
    }
    return plan_campaign(campaign, "c.yaml")


def keys(p, ids):
    return [(p.runs[r].settings.batch_size, p.runs[r].repeat) for r in ids]


def test_interleave_runs_every_configuration_before_the_next_repeat(campaign):
    p = plan(campaign, "interleave")
    assert keys(p, run_order(p)) == [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2), (2, 2)]


def test_grouped_runs_repeats_back_to_back(campaign):
    p = plan(campaign, "grouped")
    assert keys(p, run_order(p)) == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


def test_shuffle_is_seeded(campaign):
    first, again = plan(campaign, "shuffle", 1), plan(campaign, "shuffle", 1)
    assert run_order(first) == run_order(again)
    orders = {
        tuple(keys(p, run_order(p))) for p in (plan(campaign, "shuffle", s) for s in range(6))
    }
    assert len(orders) > 1


def test_priorities_follow_the_order(campaign):
    p = plan(campaign, "interleave")
    priorities = run_priorities(p)
    ranked = sorted(priorities, key=priorities.get, reverse=True)
    assert ranked == run_order(p)
    assert sorted(priorities.values()) == list(range(1, 7))


def test_summarise_single_values_have_no_spread_and_nulls_are_skipped():
    one = summarise([2.0, None, float("nan")], confidence=0.95)
    assert (one.n, one.mean, one.std, one.ci_low, one.cv) == (1, 2.0, None, None, None)
    assert one.ci_method is None
    s = summarise([1.0, 2.0, 3.0], confidence=0.95)
    assert s.std == pytest.approx(1.0) and s.cv == pytest.approx(0.5)
    assert summarise([], confidence=0.95).mean is None


def test_summary_table_folds_repeats_with_explicit_schema(tmp_path):
    rows = []
    for config, values in (("a", [1.0, 1.1, 0.9]), ("b", [2.0, 4.0, 3.0])):
        for repeat, value in enumerate(values):
            rows.append(
                {
                    "run_id": f"{config}{repeat}",
                    "configuration_id": config,
                    "campaign": "c",
                    "model": "m",
                    "backend": "transformers",
                    "batch_size": 1,
                    "dtype": "bfloat16",
                    "quantization": "none",
                    "repeat": repeat,
                    "energy_per_output_token_j": value,
                    "output_tokens_per_s": 10.0 * value,
                    "service_ttft_median_s": 0.1 * value,
                    "service_ttft_p95_s": 0.2 * value,
                    "queue_median_s": 0.05 * value,
                    "energy_method": "rapl",
                    "energy_confidence": "measured",
                }
            )
    table = pa.Table.from_pylist(
        [{name: row.get(name) for name in RUNS_SCHEMA.names} for row in rows], schema=RUNS_SCHEMA
    )
    pq.write_table(table, tmp_path / "runs.parquet")
    summary = build_summary(
        tmp_path / "runs.parquet", AnalysisConfig(cv_threshold=0.2), tmp_path / "summary.parquet"
    )
    assert pq.read_schema(tmp_path / "summary.parquet").equals(SUMMARY_SCHEMA)
    a, b = summary.iloc[0], summary.iloc[1]
    assert a.ci_confidence == 0.95 and a.energy_per_output_token_j_ci_method == "t"
    assert pd.isna(a.ttft_median_s_ci_method)
    assert a.repeats == 3 and a.energy_per_output_token_j_mean == pytest.approx(1.0)
    assert a.energy_per_output_token_j_ci_low <= 1.0 <= a.energy_per_output_token_j_ci_high
    assert not a.high_variance
    assert b.high_variance and "energy_per_output_token_j" in b.high_variance_metrics
    assert b.energy_per_output_token_j_cv == pytest.approx(1 / 3)
    assert pd.isna(a.ttft_median_s_mean) and a.ttft_median_s_n == 0
    assert a.service_ttft_median_s_mean == pytest.approx(0.1) and a.queue_median_s_n == 3
    assert b.service_ttft_p95_s_mean == pytest.approx(0.6)
    assert b.queue_median_s_mean == pytest.approx(0.15) and b.queue_median_s_ci_method == "t"

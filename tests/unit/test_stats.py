"""Confidence intervals of the mean over repeats: Student-t, BCa from n >= 10, the fallbacks."""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from scipy import stats as scipy_stats

from llenergymeasure.config.models import AnalysisConfig
from llenergymeasure.results.render import table_view
from llenergymeasure.results.stats import BCA_MIN_N, summarise, t_interval
from llenergymeasure.results.summary import SUMMARY_SCHEMA, build_summary, ci_label
from llenergymeasure.results.summary_md import summary_markdown
from llenergymeasure.results.tables import RUNS_SCHEMA

T_0975_DF1 = 12.706  # t_{0.975, 1}, from a printed table


def write_runs(path: Path, configurations: dict[str, list[float]]) -> Path:
    """runs.parquet with one row per value: energy per token = value.

    Service TTFT and queue medians are value / 10 and value / 100 seconds.
    """
    rows = []
    for config, values in configurations.items():
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
                    "service_ttft_median_s": value / 10,
                    "queue_median_s": value / 100,
                    "energy_method": "rapl",
                    "energy_confidence": "measured",
                }
            )
    table = pa.Table.from_pylist(
        [{name: row.get(name) for name in RUNS_SCHEMA.names} for row in rows], schema=RUNS_SCHEMA
    )
    pq.write_table(table, path)
    return path


def scipy_bca(values: list[float], resamples: int, confidence: float, seed: int) -> tuple:
    result = scipy_stats.bootstrap(
        (np.asarray(values),),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    return result.confidence_interval.low, result.confidence_interval.high


def test_two_repeats_give_the_t_interval_not_min_max():
    s = summarise([1.0, 2.0], confidence=0.95)
    half_width = T_0975_DF1 * math.sqrt(0.5) / math.sqrt(2)  # s = √0.5, n = 2
    assert s.ci_method == "t" and s.n == 2
    assert s.ci_low == pytest.approx(1.5 - half_width, rel=1e-4)
    assert s.ci_high == pytest.approx(1.5 + half_width, rel=1e-4)
    assert s.ci_low < -4 and s.ci_high > 7  # far wider than [min, max] = [1, 2]


def test_configured_confidence_level_is_honoured():
    values = [3.0, 3.4, 2.9, 3.3]
    s90 = summarise(values, confidence=0.9)
    s95 = summarise(values, confidence=0.95)
    mean, sem = np.mean(values), np.std(values, ddof=1) / 2
    expected = scipy_stats.t.ppf(0.95, df=3) * sem
    assert (s90.ci_low, s90.ci_high) == pytest.approx((mean - expected, mean + expected))
    assert s90.ci_high - s90.ci_low < s95.ci_high - s95.ci_low


def test_bca_from_ten_repeats_is_scipys_bca_interval():
    values = list(np.random.default_rng(7).lognormal(0.0, 0.5, size=BCA_MIN_N))
    s = summarise(values, confidence=0.9, method="bca", resamples=3000, seed=5)
    assert s.ci_method == "bca"
    assert (s.ci_low, s.ci_high) == pytest.approx(scipy_bca(values, 3000, 0.9, 5))
    assert s != summarise(values, confidence=0.9, method="t")
    assert s == summarise(values, confidence=0.9, method="bca", resamples=3000, seed=5)


def test_bca_below_ten_repeats_falls_back_to_t_and_says_so():
    values = [1.0, 1.2, 0.9, 1.1, 1.05]
    s = summarise(values, confidence=0.95, method="bca", resamples=2000, seed=0)
    assert s.ci_method == "t"
    assert (s.ci_low, s.ci_high) == pytest.approx(t_interval(values, 0.95))


def test_equal_repeats_give_a_zero_width_interval_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method, n in (("t", 2), ("t", 12), ("bca", 12)):
            s = summarise([5.0] * n, confidence=0.95, method=method)  # type: ignore[arg-type]
            assert (s.ci_low, s.mean, s.ci_high, s.std) == (5.0, 5.0, 5.0, 0.0)
            assert s.ci_method == "t" and s.cv == 0.0


def test_t_interval_needs_two_values():
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0], 0.95)


def test_summary_records_method_n_and_level_per_metric(tmp_path):
    runs = write_runs(
        tmp_path / "runs.parquet",
        {"two": [1.0, 2.0], "many": [1.0 + 0.1 * i for i in range(12)], "one": [3.0]},
    )
    analysis = AnalysisConfig(confidence=0.9, ci_method="bca", bootstrap_resamples=1000)
    summary = build_summary(runs, analysis, tmp_path / "summary.parquet")
    assert pq.read_schema(tmp_path / "summary.parquet").equals(SUMMARY_SCHEMA)
    two, many, one = (summary.set_index("configuration_id").loc[c] for c in ("two", "many", "one"))
    assert (summary["ci_confidence"] == 0.9).all()
    assert (summary["ci_method_requested"] == "bca").all()
    assert (summary["ci_resamples"] == 1000).all()
    metric = "energy_per_output_token_j"
    assert two[f"{metric}_ci_method"] == "t" and two[f"{metric}_n"] == 2
    half_width = scipy_stats.t.ppf(0.95, df=1) * math.sqrt(0.5) / math.sqrt(2)
    assert two[f"{metric}_ci_high"] == pytest.approx(1.5 + half_width)
    assert many[f"{metric}_ci_method"] == "bca" and many[f"{metric}_n"] == 12
    expected = scipy_bca([1.0 + 0.1 * i for i in range(12)], 1000, 0.9, analysis.seed)
    assert (many[f"{metric}_ci_low"], many[f"{metric}_ci_high"]) == pytest.approx(expected)
    assert pd.isna(one[f"{metric}_ci_method"]) and one[f"{metric}_n"] == 1
    assert ci_label(summary, [metric]) == "90 % CI: BCa bootstrap, n = 12; Student-t, n = 2"


def test_summary_md_names_method_n_and_configured_level(tmp_path):
    runs = write_runs(tmp_path / "runs.parquet", {"a": [1.0, 1.2], "b": [2.0, 2.2, 2.1]})
    summary = build_summary(
        runs, AnalysisConfig(confidence=0.8, ci_method="bca"), tmp_path / "summary.parquet"
    )
    provenance = tmp_path / "provenance.json"
    provenance.write_text(
        json.dumps(
            {
                "energy_methods": ["rapl"],
                "hosts": ["h"],
                "devices": ["cpu"],
                "llenergymeasure": "0",
                "git": {"commit": None, "dirty": False},
                "campaign_sha256": "0" * 64,
                "result_schema_versions": ["1"],
            }
        )
    )
    text = summary_markdown(
        summary, pq.read_table(runs).to_pandas().assign(energy_interval_s=None), provenance
    )
    assert "95 %" not in text and "bootstrap confidence" not in text
    assert "(80 % CI: Student-t, n = 2–3; a single repeat has none)" in text
    assert "BCa was requested" in text and f"n ≥ {BCA_MIN_N}" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| model |"))
    cells = dict(
        zip(
            [c.strip() for c in header.strip("|").split("|")],
            [c.strip() for c in lines[lines.index(header) + 2].strip("|").split("|")],
            strict=True,
        )
    )
    assert cells["TTFT p50 (s)"] == "null"
    assert cells["service TTFT p50 (s)"].startswith("0.11 [")
    assert cells["queue p50 (s)"].startswith("0.011 [")


def test_show_of_a_summary_names_the_ci_method_and_level(tmp_path):
    runs = write_runs(tmp_path / "runs.parquet", {"a": [1.0, 1.2], "b": [2.0]})
    summary = build_summary(runs, AnalysisConfig(confidence=0.9), tmp_path / "summary.parquet")
    assert summary["service_ttft_median_s_mean"].tolist() == pytest.approx([0.11, 0.2])
    assert summary["queue_median_s_n"].tolist() == [2, 1]
    console = Console(file=io.StringIO(), width=300)
    console.print(table_view(pd.read_parquet(tmp_path / "summary.parquet"), "summary"))
    shown = console.file.getvalue().splitlines()
    header = [c.strip() for c in next(line for line in shown if "CI method" in line).split("┃")]
    a, b = ([c.strip() for c in line.split("│")] for line in shown if "transformers" in line)
    method, level = header.index("CI method"), header.index("CI level")
    assert (a[method], a[level]) == ("t", "0.9")
    assert (b[method], b[level]) == ("null", "0.9")


def test_energy_figure_draws_a_band_that_reaches_below_zero(tmp_path):
    from llenergymeasure.results.figures import energy_vs_batch

    runs = write_runs(tmp_path / "runs.parquet", {"a": [1.0, 2.0]})  # t-interval [-4.9, 7.9]
    summary = build_summary(runs, AnalysisConfig(), tmp_path / "summary.parquet")
    assert summary["energy_per_output_token_j_ci_low"].iloc[0] < 0
    energy_vs_batch(summary, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 10_000

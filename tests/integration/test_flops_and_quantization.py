"""calflops against the architecture formula, and a dtype x quantisation campaign, for real."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from llenergymeasure.measure.architecture import Architecture
from tests.workflow.test_snakemake import snakemake, write_campaign

pytestmark = pytest.mark.slow


def test_architecture_formula_within_2_percent_of_calflops(tmp_path, embedded_model):
    out = tmp_path / "profile.json"
    subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "flops-profile", str(embedded_model), str(out)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    profile = json.loads(out.read_text())
    assert profile["null_reason"] is None and profile["attention"] == "eager"
    shapes = {(s["batch"], s["seq_len"]): s for s in profile["shapes"]}
    assert set(shapes) == {(1, 128), (4, 128), (1, 512)}
    for shape in shapes.values():
        assert shape["calflops"] == pytest.approx(shape["architecture"], rel=0.02)
    assert profile["duration_s"] > 0


def test_dtype_by_quantization_grid_runs_with_flops_and_normalised_columns(
    tmp_path, embedded_model
):
    from transformers import AutoConfig

    campaign = write_campaign(
        tmp_path / "campaign.yaml",
        grid={"dtype": ["float32", "bfloat16"], "quantization": ["none", "torchao-int8-weight"]},
    )
    done = snakemake(tmp_path, campaign)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pq.read_table(tmp_path / "results/wf/tables/runs.parquet")
    for name, kind in [
        ("quantization", "string"),
        ("precision_factor", "double"),
        ("flops_method", "string"),
        ("flops_confidence", "string"),
        ("flops_architecture_scaled_by_calflops_ratio", "double"),
        ("theoretical_flops", "double"),
        ("tokens_per_effective_pflop", "double"),
        ("tokens_per_joule", "double"),
        ("weight_bits", "int64"),
        ("low_confidence", "bool"),
    ]:
        assert str(table.schema.field(name).type) == kind, name
    runs = table.to_pandas()
    assert len(runs) == 4
    assert set(zip(runs.dtype, runs.quantization, strict=True)) == {
        (d, q) for d in ("float32", "bfloat16") for q in ("none", "torchao-int8-weight")
    }
    quantized = runs[runs.quantization == "torchao-int8-weight"]
    assert (quantized.weights_precision == "int8").all() and (quantized.weight_bits == 8).all()
    assert (runs.flops_method == "architecture").all() and (runs.flops_confidence == "high").all()
    assert (runs.flops_parameter_estimate > 0).all()
    # The calflops ratio scales the full-square figure (prefill attention over the whole L x L
    # square, as eager kernels and calflops count it); the primary counts causal prefill
    # attention, so the scaled figure is compared with the full-square figure of each run.
    arch = Architecture.from_config(AutoConfig.from_pretrained(embedded_model))
    profile = json.loads((tmp_path / "results/wf/flops/smollm2-135m.json").read_text())
    results = sorted((tmp_path / "results/wf/runs").glob("*/result.json"))
    assert len(results) == 4
    for path in results:
        result = json.loads(path.read_text())
        shapes = [(r["input_tokens"], r["output_tokens"]) for r in result["requests"]]
        flops = result["flops"]
        value = {f["method"]: f["value"] for f in [flops["primary"], *flops["alternatives"]]}
        square = arch.generation(shapes, causal=False)
        assert value["architecture"] == arch.generation(shapes) < square
        scaled = value["architecture_scaled_by_calflops_ratio"]
        assert scaled / square == pytest.approx(profile["ratio"], rel=1e-9)
        assert 0.98 <= scaled / square <= 1.02
        precision = result["precision"]
        assert precision["precision_factor_basis"] == "convention"
        assert precision["precision_factor_source"]
        assert result["normalised"]["effective_flops_basis"].startswith("convention-scaled")
    assert runs.low_confidence.all(), "energy here is an estimate: flagged"
    assert (runs.tokens_per_joule > 0).all()
    assert pd.Series(runs.flops_per_output_token).notna().all()
    assert (tmp_path / "results/wf/flops/smollm2-135m.json").exists()

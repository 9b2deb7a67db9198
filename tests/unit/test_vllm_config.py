"""vLLM settings: validation at plan time and arrival schedules (no engine started)."""

from __future__ import annotations

import statistics

import pytest

from llenergymeasure.backends.vllm import arrival_offsets_s, engine_arguments
from llenergymeasure.config import plan_campaign
from llenergymeasure.config.models import VllmSettings
from llenergymeasure.errors import ConfigError


def vllm_campaign(campaign, **engine):
    return {**campaign, "backends": ["vllm"], "settings": {**campaign["settings"], "vllm": engine}}


def test_batch_size_is_max_num_seqs_and_engine_settings_only_reach_vllm_runs(campaign):
    campaign = vllm_campaign(campaign, enforce_eager=True, block_size=32)
    campaign["backends"] = ["transformers", "vllm"]
    runs = plan_campaign(campaign, "c.yaml").runs.values()
    for run in runs:
        if run.backend == "vllm":
            assert run.settings.vllm.max_num_seqs == run.settings.batch_size
            kwargs = engine_arguments(run)
            assert kwargs["max_num_seqs"] == run.settings.batch_size
            assert kwargs["enforce_eager"] is True and kwargs["block_size"] == 32
            assert "kv_cache_dtype" not in kwargs  # None keeps vLLM's default
        else:
            assert run.settings.vllm is None
    assert sorted(r.backend for r in runs) == ["transformers"] * 2 + ["vllm"] * 2


@pytest.mark.parametrize(
    ("engine", "key", "reason"),
    [
        ({"engine_kwargs": {"dtype": "half"}}, "settings.vllm", "engine_kwargs may not set dtype"),
        ({"engine_kwargs": {"block_size": 8}}, "settings.vllm", "may not set block_size"),
        ({"arrival": "poisson"}, "settings.vllm", "needs request_rate"),
        ({"request_rate": 2.0}, "settings.vllm", "request_rate needs arrival"),
        ({"block_sise": 16}, "settings.vllm.block_sise", "unknown key"),
        ({"max_num_seqs": 8}, "settings.vllm.max_num_seqs", "differs from batch_size"),
    ],
)
def test_bad_vllm_settings_fail_at_plan_time(campaign, engine, key, reason):
    campaign["grid"] = {}
    with pytest.raises(ConfigError) as info:
        plan_campaign(vllm_campaign(campaign, **engine), "c.yaml")
    assert info.value.key == key
    assert reason in info.value.reason


def test_constant_arrivals_are_evenly_spaced():
    offsets = arrival_offsets_s(VllmSettings(arrival="constant", request_rate=4.0), 5)
    assert offsets == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_poisson_arrivals_are_seeded_and_have_the_rate():
    engine = VllmSettings(arrival="poisson", request_rate=5.0, arrival_seed=3)
    offsets = arrival_offsets_s(engine, 4000)
    assert offsets == arrival_offsets_s(engine, 4000)
    assert offsets != arrival_offsets_s(engine.model_copy(update={"arrival_seed": 4}), 4000)
    gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    assert 1 / statistics.mean(gaps) == pytest.approx(5.0, rel=0.05)
    # Exponential gaps: standard deviation equals the mean.
    assert statistics.stdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.1)
    assert arrival_offsets_s(VllmSettings(), 3) == [0.0, 0.0, 0.0]


def test_a_run_shares_only_the_model_inspection_of_its_vllm_cache(tmp_path, monkeypatch):
    from llenergymeasure.backends.vllm import MODELINFO_DIR_ENV, share_model_inspection

    shared = tmp_path / "campaign" / "vllm-modelinfos"
    monkeypatch.setenv(MODELINFO_DIR_ENV, str(shared))
    root = tmp_path / "run-cache"
    share_model_inspection(root)
    assert (root / "modelinfos").resolve() == shared.resolve() and shared.is_dir()
    (root / "modelinfos" / "m.json").write_text("{}")
    (root / "torch_compile_cache").mkdir()  # the run's own
    assert [p.name for p in shared.iterdir()] == ["m.json"]

    own = tmp_path / "user-cache"  # a VLLM_CACHE_ROOT of the user's, with its own modelinfos
    (own / "modelinfos").mkdir(parents=True)
    share_model_inspection(own)
    assert not (own / "modelinfos").is_symlink()

    monkeypatch.delenv(MODELINFO_DIR_ENV)
    alone = tmp_path / "alone"
    share_model_inspection(alone)
    assert not (alone / "modelinfos").exists()

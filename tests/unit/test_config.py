from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from llenergymeasure.config import load_campaign, plan_campaign, run_id
from llenergymeasure.config.loader import RUN_ID_PATTERN
from llenergymeasure.errors import ConfigError


def test_grid_expands_to_cartesian_product_with_repeats(campaign):
    campaign["grid"]["dtype"] = ["float32", "bfloat16"]
    campaign["repeats"] = 2
    plan = plan_campaign(campaign, "c.yaml")
    assert len(plan.runs) == 2 * 2 * 2
    combos = {(r.settings.batch_size, r.settings.dtype, r.repeat) for r in plan.runs.values()}
    assert len(combos) == 8


def test_run_ids_are_stable_and_safe(campaign):
    first = list(plan_campaign(campaign, "c.yaml").runs)
    second = list(plan_campaign(copy.deepcopy(campaign), "other.yaml").runs)
    assert first == second
    import re

    assert all(re.fullmatch(RUN_ID_PATTERN, rid) for rid in first)
    assert all(rid.startswith("smollm2-135m_transformers_") for rid in first)


def test_run_id_changes_when_a_setting_changes(campaign):
    before = set(plan_campaign(campaign, "c.yaml").runs)
    campaign["settings"]["max_new_tokens"] = 5
    after = set(plan_campaign(campaign, "c.yaml").runs)
    assert before.isdisjoint(after)


def test_adding_a_grid_value_keeps_existing_ids(campaign):
    before = set(plan_campaign(campaign, "c.yaml").runs)
    campaign["grid"]["batch_size"].append(4)
    after = set(plan_campaign(campaign, "c.yaml").runs)
    assert before < after and len(after - before) == 1


def test_campaign_name_does_not_change_run_ids(campaign):
    before = set(plan_campaign(campaign, "c.yaml").runs)
    campaign["name"] = "renamed"
    assert set(plan_campaign(campaign, "c.yaml").runs) == before


def test_equivalent_configurations_collapse(campaign):
    # Greedy decoding ignores temperature, so these two grid points are one run.
    campaign["grid"] = {"temperature": [0.5, 1.5]}
    assert len(plan_campaign(campaign, "c.yaml").runs) == 1
    campaign["settings"]["decoding"] = "sample"
    assert len(plan_campaign(campaign, "c.yaml").runs) == 2


def test_explicit_experiments_add_runs_outside_the_grid(campaign):
    campaign["experiments"] = [{"batch_size": 8, "dtype": "float32"}, {"batch_size": 1}]
    runs = plan_campaign(campaign, "c.yaml").runs.values()
    # batch_size 1 duplicates a grid point and collapses into it.
    assert sorted(r.settings.batch_size for r in runs) == [1, 2, 8]


def test_prompt_file_content_is_part_of_the_id(campaign, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    campaign["prompts"] = {"source": "jsonl", "path": str(prompts)}
    before = set(plan_campaign(campaign, "c.yaml").runs)
    prompts.write_text('{"prompt": "a"}\n{"prompt": "c"}\n')
    assert set(plan_campaign(campaign, "c.yaml").runs).isdisjoint(before)


BAD_INPUT = [
    ({"colour": "red"}, "colour", "unknown key"),
    ({"settings": {"batch_size": "four"}}, "settings.batch_size", "valid integer"),
    ({"settings": {"batch_size": 0}}, "settings.batch_size", "greater than or equal to 1"),
    ({"grid": {"batch_size": []}}, "grid.batch_size", "at least 1 item"),
    ({"grid": {"batch_size": [1, 0]}}, "grid.batch_size.1", "greater than or equal to 1"),
    ({"backends": ["tgi"]}, "backends.0", "'tgi' is not allowed"),
    ({"settings": {"dtype": "float8"}}, "settings.dtype", "'float8' is not allowed"),
    ({"prompts": {"source": "jsonl", "path": "missing.jsonl"}}, "prompts.path", "cannot read"),
    ({"models": ["./no/such/model"]}, "models.0", "does not exist"),
    ({"name": "../escape"}, "name", "must match"),
    ({"experiments": [{"batch_size": 0}]}, "experiments.0.batch_size", "greater than or equal"),
    ({"settings": {"min_new_tokens": 9, "max_new_tokens": 4}}, "settings", "exceeds"),
    ({"settings": {"num_prompts": 100000}}, "settings.num_prompts", "builtin set has 240"),
]


@pytest.mark.parametrize(("change", "key", "reason"), BAD_INPUT)
def test_bad_input_names_file_key_and_reason(campaign, change, key, reason):
    bad = {**campaign, **change}
    with pytest.raises(ConfigError) as info:
        plan_campaign(bad, "campaigns/bad.yaml")
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith(f"campaigns/bad.yaml: {key}: ")
    assert reason in message
    assert "\n" not in message


def test_yaml_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodels: [a\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line \d"):
        load_campaign(path)


def test_resolved_config_round_trips_through_json(campaign):
    from llenergymeasure.config import ExperimentConfig

    run = next(iter(plan_campaign(campaign, "c.yaml").runs.values()))
    again = ExperimentConfig.model_validate_json(json.dumps(run.model_dump(mode="json")))
    assert run_id(again) == run_id(run)


def test_demo_campaign_is_valid():
    plan = load_campaign(Path(__file__).parents[2] / "config" / "config.yaml")
    settings = {(r.settings.batch_size, r.settings.dtype) for r in plan.runs.values()}
    assert len({b for b, _ in settings}) >= 2 and len({d for _, d in settings}) >= 2


def test_hash_of_a_result_config_equals_the_hash_of_the_model(campaign):
    from llenergymeasure.config.loader import config_hash, hash_config_data

    run = next(iter(plan_campaign(campaign, "c.yaml").runs.values()))
    as_json = json.loads(run.model_dump_json())
    assert hash_config_data(as_json) == config_hash(run)


def gpu_campaign(campaign, gpu, **measurement):
    return {**campaign, "grid": {"gpu": gpu}, "measurement": {"device": "cuda", **measurement}}


def test_gpu_settings_sweep_are_part_of_the_run_id(campaign):
    runs = plan_campaign(
        gpu_campaign(campaign, [{"power_limit_w": 200}, {"power_limit_w": 300}]), "c.yaml"
    ).runs
    assert len(runs) == 2
    assert sorted(r.settings.gpu.power_limit_w for r in runs.values()) == [200, 300]
    empty = plan_campaign(gpu_campaign(campaign, [{}]), "c.yaml").runs
    plain = plan_campaign({**campaign, "grid": {}, "measurement": {"device": "cuda"}}, "c.yaml")
    assert list(empty) == list(plain.runs), "an empty settings.gpu is the same run as none"


def test_operational_bounds_are_not_part_of_the_run_id(campaign):
    base = plan_campaign(campaign, "c.yaml").runs
    bounded = {**campaign, "measurement": {**campaign["measurement"], "max_run_s": 60}}
    assert list(plan_campaign(bounded, "c.yaml").runs) == list(base)


@pytest.mark.parametrize(
    ("gpu", "measurement", "key", "reason"),
    [
        ({"power_limit_w": -5}, {}, "grid.gpu.0.power_limit_w", "greater than 0"),
        ({"sm_clocks_mhz": [1400, 900]}, {}, "grid.gpu.0", "min 1400 exceeds max 900"),
        ({"power_limit_w": 200}, {"device": "cpu"}, "settings.gpu", "needs measurement.device"),
    ],
)
def test_bad_gpu_settings_fail_at_planning_with_the_key(campaign, gpu, measurement, key, reason):
    with pytest.raises(ConfigError) as error:
        plan_campaign(gpu_campaign(campaign, [gpu], **measurement), "c.yaml")
    assert error.value.key.startswith(key) and reason in error.value.reason

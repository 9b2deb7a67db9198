"""The validity verdict: every rule on both sides of its threshold, waivers, the cascade."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llenergymeasure.config.validity import ValidityRules, with_overrides
from llenergymeasure.results.models import RunResult
from llenergymeasure.results.validity import cascade, judge

GPU = "GPU-4b0d7e38-0000-0000-0000-000000000001"
WINDOW_S = 40.0
LIMIT_W = 300.0


def base() -> dict[str, Any]:
    """A vLLM GPU run that breaks no rule: 40 s window, 200 W mean, 10 Hz samples."""
    config = {
        "campaign": "t",
        "model": {"name": "m", "source": "local", "path": "/m"},
        "backend": "vllm",
        "settings": {"batch_size": 8, "vllm": {}},
        "prompts": {"source": "builtin"},
        "measurement": {"device": "cuda", "meter": "nvml"},
        "repeat": 0,
    }
    device = {
        "device": GPU,
        "name": "H100",
        "energy_j": 200.0 * WINDOW_S,
        "method": "nvml_counter",
        "confidence": "measured",
        "power_field": "nvml_power_instant",
        "idle_power_w": 70.0,
        "samples": 401,
        "max_power_w": 320.0,
        "power_limit_w": LIMIT_W,
        "throttle_s": 0.0,
        "throttle_reasons": [],
        "window_start_unix_s": 1000.0,
        "window_end_unix_s": 1000.0 + WINDOW_S,
    }
    return {
        "run_id": "m_vllm_000000000000",
        "configuration_id": "000000000000",
        "config_hash": "0" * 64,
        "config": config,
        "timing": {
            "started_at": "2026-12-06T00:00:00+00:00",
            "ended_at": "2026-12-06T00:00:40+00:00",
            "window_s": WINDOW_S,
            "model_load_s": 1.0,
            "warmup_s": 1.0,
            "warmup_batches": 3,
            "window_start_unix_s": 1000.0,
            "window_end_unix_s": 1000.0 + WINDOW_S,
            "cooldown": {"cooldown_s": 31.0, "settled": True, "max_s": 60.0},
            "warmup": {
                "batches": 3,
                "duration_s": 1.0,
                "converged": True,
                "final_cv": 0.02,
                "cv_threshold": 0.1,
                "cv_batches": 3,
            },
        },
        "tokens": {
            "num_requests": 8,
            "input_tokens": 80,
            "output_tokens": 800,
            "truncated_prompts": 0,
        },
        "throughput": {"output_tokens_per_s": 20.0, "total_tokens_per_s": 22.0},
        "latency": {
            "ttft_s": None,
            "itl_s": None,
            "itl_trimmed_s": None,
            "request_latency_s": None,
        },
        "energy": {
            "energy_j": device["energy_j"],
            "method": "nvml",
            "confidence": "measured",
            "interval_s": 0.1,
            "devices": [f"{GPU} (H100)"],
            "per_device": [device],
        },
        "energy_per_output_token_j": 10.0,
        "memory": {"peak_rss_mb": 1.0},
        "cache": {
            "prefix_caching": False,
            "reset_before_window": False,
            "window_cached_prompt_tokens": 0,
            "window_prompt_tokens": 80,
            "note": "off",
        },
        "environment": {},
        "steady_state": {
            "duration_s": 35.0,
            "max_num_seqs": 8,
            "mean_running": 7.2,
            "saturation": 0.9,
        },
        "gpu_processes": {"policy": "warn", "checked": True, "checks": 5},
        "requests": [],
    }


def codes(data: dict[str, Any], rules: ValidityRules | None = None) -> list[str]:
    verdict = judge(RunResult.model_validate(data), rules or ValidityRules())
    assert verdict.valid == (not verdict.invalid_reasons)
    return [r.code for r in verdict.invalid_reasons]


def changed(path: str, value: Any) -> dict[str, Any]:
    """The base run with one value (dotted path; a list index as a number) replaced."""
    data = copy.deepcopy(base())
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return data


def test_the_base_run_is_valid() -> None:
    verdict = judge(RunResult.model_validate(base()), ValidityRules())
    assert verdict.valid and verdict.invalid_reasons == [] and verdict.not_judged == []


DEVICE = "energy.per_device.0"
# (code, path, value on the good side, value on the bad side), thresholds at their defaults
SIDES = [
    ("window_short", "timing.window_s", 5.0, 4.99),
    ("steady_state_short", "steady_state.duration_s", 30.0, 29.9),
    ("steady_state_unsaturated", "steady_state.saturation", 0.8, 0.79),
    ("warmup_not_converged", "timing.warmup.converged", True, False),
    ("cooldown_unsettled", "timing.cooldown.settled", True, False),
    ("power_below_idle", f"{DEVICE}.idle_power_w", 200.0, 200.1),  # mean power is 200 W
    ("power_above_limit", f"{DEVICE}.power_limit_w", 200.0, 199.0),
    ("power_sample_above_limit", f"{DEVICE}.max_power_w", 1.7 * LIMIT_W, 1.7 * LIMIT_W + 1),
    ("sampling_coverage_low", f"{DEVICE}.samples", 301, 300),  # 401 expected: 75 % is 300.75
    ("throttled", f"{DEVICE}.throttle_s", 0.05 * WINDOW_S, 0.05 * WINDOW_S + 0.1),
    ("prefix_cache_hits", "cache.window_cached_prompt_tokens", 0, 16),
]


@pytest.mark.parametrize(("code", "path", "good", "bad"), SIDES, ids=[s[0] for s in SIDES])
def test_each_rule_on_both_sides_of_its_threshold(
    code: str, path: str, good: Any, bad: Any
) -> None:
    def at(value: Any) -> dict[str, Any]:
        data = changed(path, value)
        if code == "throttled":
            data["energy"]["per_device"][0]["throttle_reasons"] = ["hw_thermal"]
        return data

    assert code not in codes(at(good))
    assert codes(at(bad)) == [code]


def test_foreign_processes_and_estimated_or_missing_energy() -> None:
    seen = {
        "pid": 4242,
        "device": GPU,
        "before_window": False,
        "during_window": True,
        "first_seen_unix_s": 1010.0,
        "last_seen_unix_s": 1020.0,
    }
    assert codes(changed("gpu_processes.foreign", [seen])) == ["foreign_processes"]
    allowed = ValidityRules(allow_foreign_processes=True)
    assert codes(changed("gpu_processes.foreign", [seen]), allowed) == []
    estimated = changed("energy.confidence", "estimated")
    assert codes(estimated) == ["energy_estimated"]
    missing = changed("energy.energy_j", None)
    assert codes(missing) == ["energy_missing"]
    missing["config"]["measurement"]["meter"] = "none"  # a latency-only run asked for none
    assert codes(missing) == []


def test_thresholds_move_the_verdict() -> None:
    assert codes(base(), ValidityRules(min_window_s=41.0)) == ["window_short"]
    assert codes(base(), ValidityRules(min_steady_state_s=36.0)) == ["steady_state_short"]
    assert codes(base(), ValidityRules(min_saturation=0.95)) == ["steady_state_unsaturated"]
    assert (
        codes(
            changed("timing.warmup.converged", False), ValidityRules(require_warmup_converged=False)
        )
        == []
    )


def test_a_power_cap_the_run_asked_for_is_not_throttling() -> None:
    data = changed(f"{DEVICE}.throttle_s", 20.0)
    data["energy"]["per_device"][0]["throttle_reasons"] = ["sw_power_cap"]
    assert codes(data) == ["throttled"]
    data["config"]["settings"]["gpu"] = {"power_limit_w": 250.0}
    assert codes(data) == []
    data["energy"]["per_device"][0]["throttle_reasons"] = ["sw_power_cap", "hw_thermal"]
    assert codes(data) == ["throttled"]


def test_requested_prefix_caching_may_hit() -> None:
    data = changed("cache.window_cached_prompt_tokens", 16)
    data["config"]["settings"]["vllm"] = {"enable_prefix_caching": True}
    assert codes(data) == []


def test_a_waived_code_is_recorded_but_does_not_invalidate() -> None:
    data = changed("energy.confidence", "estimated")
    verdict = judge(RunResult.model_validate(data), ValidityRules(waive=["energy_estimated"]))
    assert verdict.valid
    assert [r.code for r in verdict.waived] == ["energy_estimated"]


def test_what_the_record_cannot_decide_is_listed_not_failed() -> None:
    data = changed("timing.cooldown.settled", None)
    data["timing"]["cooldown"]["null_reason"] = "no telemetry"
    data["energy"]["per_device"][0]["power_limit_w"] = None
    verdict = judge(RunResult.model_validate(data), ValidityRules())
    assert verdict.valid
    assert {r.code for r in verdict.not_judged} == {"cooldown_unsettled", "power_above_limit"}


def test_a_run_without_a_steady_state_is_not_judged_on_one() -> None:
    data = base()
    data["steady_state"] = {"null_reason": "static batches"}
    assert codes(data, ValidityRules(min_steady_state_s=1000)) == []


def test_the_stability_cascade() -> None:
    runs = [
        ("a", 1, True),
        ("a", 4, False),  # unstable at 4 ...
        ("a", 8, True),  # ... so 8 is unstable too
        ("a", 16, True),
        ("a", 2, True),  # smaller: untouched
        ("b", 8, True),  # another group
        ("b", 16, False),
    ]
    assert cascade(runs) == {2: 4, 3: 4}
    assert cascade([("a", 1, True), ("a", 2, True)]) == {}


def test_overrides_name_the_key_on_bad_input() -> None:
    rules = with_overrides(ValidityRules(), ["min_window_s=10", "waive=[energy_estimated]"])
    assert rules.min_window_s == 10 and rules.waive == ["energy_estimated"]
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        with_overrides(ValidityRules(), ["min_windw_s=10"])
    with pytest.raises(ValueError, match=r"analysis\.validity\.min_saturation"):
        with_overrides(ValidityRules(), ["min_saturation=2"])


def test_a_pass_too_small_to_fill_the_batch_is_unsaturated() -> None:
    data = base()
    data["steady_state"] = {"null_reason": "each pass has 2 requests", "max_num_seqs": 8}
    data["tokens"]["num_requests"] = 2
    assert codes(data) == ["steady_state_unsaturated"]
    data["tokens"]["num_requests"] = 7  # could run at 7/8: not decided without a window
    verdict = judge(RunResult.model_validate(data), ValidityRules())
    assert verdict.valid and [r.code for r in verdict.not_judged] == ["steady_state_unsaturated"]
    data["config"]["backend"] = "transformers"  # static batches: no rule applies
    assert judge(RunResult.model_validate(data), ValidityRules()).not_judged == []

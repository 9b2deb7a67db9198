"""make gpu-pack's model: the embedded architecture with random weights, loadable and runnable."""

from __future__ import annotations

import json

import pytest

from tests.gpu.random_model import NOTE, build, pack

pytestmark = pytest.mark.slow


def test_random_weight_copy_has_the_embedded_shape_and_generates(tmp_path, embedded_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    packed = tmp_path / "packed"
    pack(embedded_model, packed)
    assert not list(packed.glob("*.safetensors")), "only config and tokenizer travel"
    assert sum(f.stat().st_size for f in packed.iterdir()) < 8_000_000
    model_dir = build(packed, tmp_path / "model")
    assert "random weights" in (model_dir / NOTE).read_text()
    real = json.loads((embedded_model / "config.json").read_text())
    copy = json.loads((model_dir / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        assert copy[key] == real[key]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    reference = AutoModelForCausalLM.from_pretrained(embedded_model)
    assert model.num_parameters() == reference.num_parameters()
    assert not torch.equal(model.lm_head.weight, reference.lm_head.weight.to(model.dtype))
    ids = tokenizer("Say hi.", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4

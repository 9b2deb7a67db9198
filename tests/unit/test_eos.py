"""EOS ids: every id of the generation config and the tokenizer's, for every backend."""

from __future__ import annotations

from transformers import AutoTokenizer, GenerationConfig

from llenergymeasure.backends.tokenize import eos_token_ids
from llenergymeasure.backends.vllm import generation_config


def test_all_generation_config_eos_ids_count(tmp_path, embedded_model):
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    tokenizer.save_pretrained(tmp_path)
    GenerationConfig(eos_token_id=[7, 11]).save_pretrained(tmp_path)  # e.g. Llama-3's two
    ids = eos_token_ids(tokenizer, generation_config(str(tmp_path)))
    assert ids == {7, 11, tokenizer.eos_token_id}


def test_without_a_generation_config_the_tokenizer_eos_counts(tmp_path, embedded_model):
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    tokenizer.save_pretrained(tmp_path)
    assert generation_config(str(tmp_path)) is None
    assert eos_token_ids(tokenizer, None) == {tokenizer.eos_token_id}

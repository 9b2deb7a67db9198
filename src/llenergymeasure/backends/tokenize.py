"""Turn a run's prompt source into token ids with a Hugging Face tokenizer (every backend)."""

from __future__ import annotations

from typing import Any

from llenergymeasure.backends.base import PreparedPrompt
from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.config.prompts import read_prompts, synthetic_token_ids


def eos_token_ids(tokenizer: Any, generation_config: Any) -> set[int]:
    """Every id that ends a generation: the generation config's EOS ids and the tokenizer's.

    Models such as Llama-3 stop on several ids; all of them count as EOS for every backend.
    """
    eos = getattr(generation_config, "eos_token_id", None)
    ids = {int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def prepare_prompts(tokenizer: Any, config: ExperimentConfig) -> list[PreparedPrompt]:
    """Tokenise the run's prompts, each fitted into `max_input_tokens` (template included)."""
    prompts, settings = config.prompts, config.settings
    limit = settings.max_input_tokens
    if prompts.source == "synthetic":
        assert prompts.input_tokens is not None
        ids = synthetic_token_ids(
            len(tokenizer),
            tokenizer.all_special_ids,
            settings.num_prompts,
            min(prompts.input_tokens, limit),
            seed=config.repeat,
        )
        return [PreparedPrompt(tuple(p), prompts.input_tokens > limit) for p in ids]
    use_template = settings.chat_template and tokenizer.chat_template is not None
    return [
        _encode(tokenizer, text, limit, use_template)
        for text in read_prompts(prompts, settings.num_prompts)
    ]


def _encode(tokenizer: Any, text: str, limit: int, use_template: bool) -> PreparedPrompt:
    content_ids = tokenizer.encode(text, add_special_tokens=False)
    overhead = len(_wrap(tokenizer, [])) if use_template else 0
    budget = max(limit - overhead, 1)
    truncated = len(content_ids) > budget
    content_ids = content_ids[:budget]
    ids = _wrap(tokenizer, content_ids) if use_template else content_ids
    return PreparedPrompt(tuple(ids), truncated)


def _wrap(tokenizer: Any, content_ids: list[int]) -> list[int]:
    content = tokenizer.decode(content_ids)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True
    )
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

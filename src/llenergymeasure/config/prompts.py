"""Prompt sources: the shipped prompt set, a user JSONL file, or synthetic token ids."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

from llenergymeasure.config.models import ResolvedPrompts


@lru_cache(maxsize=8)
def _lines(source: str, path: str | None) -> tuple[str, ...]:
    if source == "builtin":
        text = resources.files("llenergymeasure.data").joinpath("prompts.jsonl").read_text("utf-8")
    else:
        assert path is not None
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return tuple(line for line in text.splitlines() if line.strip())


def count_prompts(prompts: ResolvedPrompts) -> int:
    """Number of prompts a builtin/jsonl source holds."""
    return len(_lines(prompts.source, prompts.path))


def read_prompts(prompts: ResolvedPrompts, num_prompts: int) -> list[str]:
    """The first `num_prompts` prompt texts of a builtin/jsonl source, in file order."""
    lines = _lines(prompts.source, prompts.path)[:num_prompts]
    return [json.loads(line)[prompts.field] for line in lines]


def synthetic_token_ids(
    vocab_size: int, excluded_ids: Sequence[int], num_prompts: int, length: int, seed: int
) -> list[list[int]]:
    """Random token-id prompts of exactly `length` tokens, reproducible from `seed`.

    Args:
        vocab_size: Tokenizer vocabulary size.
        excluded_ids: Special token ids never drawn (EOS, BOS, pad, ...).
        num_prompts: How many prompts.
        length: Tokens per prompt.
        seed: Random seed.
    """
    rng = random.Random(seed)
    excluded = set(excluded_ids)
    allowed = [i for i in range(vocab_size) if i not in excluded]
    return [[rng.choice(allowed) for _ in range(length)] for _ in range(num_prompts)]

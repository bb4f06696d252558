"""Batched sampling with transformers: the same prompt rendering as training, seeded per batch.

Every batch re-seeds from (seed, batch index), so a resumed job regenerates exactly what a straight run would
have, whatever was done before it. Prompts are rendered exactly as training renders them
(data/tokenize.render_prompt), left-padded, and answers stop at EOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from tokensift.data.tokenize import has_chat_template, render_prompt


@dataclass
class SamplingSettings:
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 0.95
    batch_size: int = 16
    seed: int = 0


@torch.no_grad()
def generate_responses(model, tokenizer, prompts: list[list[dict]], num_samples: int = 1,
                       settings: SamplingSettings | None = None, desc: str | None = None) -> list[list[str]]:
    """`num_samples` sampled answers per prompt (greedy when temperature is 0), as plain text."""
    settings = settings or SamplingSettings()
    device = next(model.parameters()).device
    jobs = [(i, j) for i in range(len(prompts)) for j in range(num_samples)]
    out: list[list[str]] = [[""] * num_samples for _ in prompts]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    special = not has_chat_template(tokenizer)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(jobs), desc=desc, unit="answer", disable=desc is None, leave=False)
    try:
        for b, start in enumerate(range(0, len(jobs), settings.batch_size)):
            batch = jobs[start : start + settings.batch_size]
            texts = [render_prompt(tokenizer, prompts[i]) for i, _ in batch]
            enc = tokenizer(texts, add_special_tokens=special, padding=True, return_tensors="pt").to(device)
            torch.manual_seed(settings.seed * 1_000_003 + b)
            sample = settings.temperature > 0
            ids = model.generate(
                **enc, max_new_tokens=settings.max_new_tokens, do_sample=sample,
                temperature=settings.temperature if sample else None, top_p=settings.top_p if sample else None,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            answers = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for (i, j), text in zip(batch, answers):
                out[i][j] = text.strip()
            bar.update(len(batch))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
        bar.close()
    return out

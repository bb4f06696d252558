"""Sampling with transformers, keeping the sampled token ids: one sampler for TSO, evaluation and the demo.

Prompts are rendered exactly as training renders them (data/chat_format.py) and left-padded; jobs run
in batches of similar prompt length, and batch b is seeded with seed * 1_000_003 + b, so the same settings give
the same answers (a resumed job regenerates what a straight run would have).

The samples come from the model's own distribution: every knob transformers might take from a model's
generation_config (top-k 50 by default, repetition penalty, min-p, ...) is switched off explicitly; only
`temperature` and `top_p` change the distribution. An answer ends at the chat template's turn end (or EOS),
the token training puts at the end of every response. The ids are kept because re-tokenising decoded text does
not always give them back (merges, stripped whitespace, EOS dropped on decoding), and the KL estimate in
eval/sampling.py needs the log-probs of exactly the sampled tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from tokensift.data.chat_format import ChatFormat


@dataclass
class SamplingSettings:
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 0.95
    batch_size: int = 16
    seed: int = 0


# Distribution-changing generation settings, all neutral: a model's generation_config cannot sneak them in.
PLAIN_SAMPLING = dict(top_k=0, top_h=None, min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0,
                      repetition_penalty=1.0, no_repeat_ngram_size=0, bad_words_ids=None, sequence_bias=None,
                      suppress_tokens=None, begin_suppress_tokens=None, forced_bos_token_id=None,
                      forced_eos_token_id=None, exponential_decay_length_penalty=None, min_length=0,
                      min_new_tokens=None, num_beams=1, penalty_alpha=None, dola_layers=None, guidance_scale=None,
                      watermarking_config=None)


@dataclass
class Sample:
    """One sampled answer. answer_ids end with a stop token (the turn end, or EOS) when `finished`; otherwise they
    were cut at max_new_tokens."""

    prompt_index: int
    sample_index: int
    prompt_ids: np.ndarray
    answer_ids: np.ndarray
    text: str
    finished: bool


def encode_prompts(tokenizer, prompts: list[list[dict]], max_prompt_length: int | None) -> tuple[list[np.ndarray], int]:
    """Prompt token ids as training renders them; prompts keep their last tokens. Returns (ids, truncated)."""
    fmt = ChatFormat.of(tokenizer)
    texts = [fmt.prompt(messages) for messages in prompts]
    encoded, truncated = [], 0
    for ids in tokenizer(texts, add_special_tokens=fmt.add_special_tokens)["input_ids"]:
        if not ids:
            raise ValueError("a prompt rendered to zero tokens")
        if max_prompt_length is not None and len(ids) > max_prompt_length:
            ids = ids[-max_prompt_length:]
            truncated += 1
        encoded.append(np.asarray(ids, dtype=np.int64))
    return encoded, truncated


def _generation_kwargs(settings: SamplingSettings, tokenizer) -> dict:
    kwargs = dict(max_new_tokens=settings.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=ChatFormat.of(tokenizer).stop_ids, **PLAIN_SAMPLING)
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _trim(ids: np.ndarray, stop_ids: list[int]) -> tuple[np.ndarray, bool]:
    """Cut after the first stop token (kept: its log-prob is part of the answer's); what follows is padding."""
    stops = np.flatnonzero(np.isin(ids, stop_ids))
    if stops.size:
        return ids[: stops[0] + 1], True
    return ids, False


@torch.no_grad()
def sample_answers(model, tokenizer, prompts: list[list[dict]], num_samples: int = 1,
                   settings: SamplingSettings | None = None, max_prompt_length: int | None = None,
                   desc: str | None = None) -> tuple[list[Sample], int]:
    """`num_samples` answers per prompt, prompt-major order; returns (samples, prompts truncated).

    Jobs run in batches of similar prompt length (less padding); batch b is seeded with
    seed * 1_000_003 + b, so the same settings give the same answers.
    """
    settings = settings or SamplingSettings()
    device = next(model.parameters()).device
    encoded, truncated = encode_prompts(tokenizer, prompts, max_prompt_length)
    jobs = [(i, j) for i in range(len(prompts)) for j in range(num_samples)]
    order = sorted(range(len(jobs)), key=lambda k: (len(encoded[jobs[k][0]]), k))
    kwargs = _generation_kwargs(settings, tokenizer)
    stop_ids = kwargs["eos_token_id"]
    pad_id = tokenizer.pad_token_id
    samples: list[Sample | None] = [None] * len(jobs)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(jobs), desc=desc, unit="answer", disable=desc is None, leave=False)
    try:
        for b, start in enumerate(range(0, len(order), settings.batch_size)):
            batch = order[start : start + settings.batch_size]
            prompt_ids = [encoded[jobs[k][0]] for k in batch]
            width = max(len(ids) for ids in prompt_ids)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(prompt_ids):  # left padding: every answer starts at the same column
                input_ids[row, width - len(ids) :] = torch.as_tensor(ids)
                attention[row, width - len(ids) :] = 1
            torch.manual_seed(settings.seed * 1_000_003 + b)
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
            new_ids = out[:, width:].cpu().numpy()
            for row, k in enumerate(batch):
                answer, finished = _trim(new_ids[row], stop_ids)
                body = answer[:-1] if finished else answer
                text = tokenizer.decode(body.tolist(), skip_special_tokens=True).strip()
                i, j = jobs[k]
                samples[k] = Sample(i, j, prompt_ids[row], answer.astype(np.int64), text, finished)
            bar.update(len(batch))
    finally:
        model.train(was_training)
        bar.close()
    return samples, truncated


def generate_responses(model, tokenizer, prompts: list[list[dict]], num_samples: int = 1,
                       settings: SamplingSettings | None = None, desc: str | None = None) -> list[list[str]]:
    """`num_samples` sampled answers per prompt (greedy when temperature is 0), as plain text."""
    samples, _ = sample_answers(model, tokenizer, prompts, num_samples, settings, desc=desc)
    out = [[""] * num_samples for _ in prompts]
    for sample in samples:
        out[sample.prompt_index][sample.sample_index] = sample.text
    return out

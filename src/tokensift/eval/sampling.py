"""Sample answers keeping their token ids, score them teacher-forced, and estimate KL(policy || reference).

Why not `generate.generate_responses`: it returns text, and re-tokenising text does not always give back the
sampled ids (merges across the prompt boundary, stripped whitespace, special tokens such as EOS dropped on
decoding). The KL estimator needs the log-probs of exactly the sampled tokens, EOS included, so this sampler
keeps the ids. Prompts are rendered and seeded the same way (data/tokenize.render_prompt; one seed per
batch).

The samples must come from the policy's own distribution for the KL estimate to be unbiased, so every
knob transformers might take from a model's generation_config (top-k 50 by default, repetition penalty,
min-p, ...) is switched off explicitly; only `temperature` and `top_p` change the distribution, and the
results say when they do.

KL estimator: for answers y ~ pi(.|x), KL(pi || pi_ref) = E_y[log pi(y|x) - log pi_ref(y|x)], where
log pi(y|x) = sum_t log pi(y_t | x, y_<t) over the sampled tokens (EOS included). The mean over samples is
unbiased; its standard error is std / sqrt(n). With answers cut at max_new_tokens it is the KL between the
two distributions of the first max_new_tokens tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from tokensift.data.collate import collate_sequences
from tokensift.data.tokenize import has_chat_template, render_prompt
from tokensift.eval.stats import describe
from tokensift.generate import SamplingSettings
from tokensift.logprobs import token_logps

# Distribution-changing generation settings, all neutral: a model's generation_config cannot sneak them in.
PLAIN_SAMPLING = dict(top_k=0, top_h=None, min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0,
                      repetition_penalty=1.0, no_repeat_ngram_size=0, bad_words_ids=None, sequence_bias=None,
                      suppress_tokens=None, begin_suppress_tokens=None, forced_bos_token_id=None,
                      forced_eos_token_id=None, exponential_decay_length_penalty=None, min_length=0,
                      min_new_tokens=None, num_beams=1, penalty_alpha=None, dola_layers=None, guidance_scale=None,
                      watermarking_config=None)


@dataclass
class Sample:
    """One sampled answer. answer_ids end with EOS when `finished`; otherwise they were cut at max_new_tokens."""

    prompt_index: int
    sample_index: int
    prompt_ids: np.ndarray
    answer_ids: np.ndarray
    text: str
    finished: bool


def encode_prompts(tokenizer, prompts: list[list[dict]], max_prompt_length: int | None) -> tuple[list[np.ndarray], int]:
    """Prompt token ids as training renders them; prompts keep their last tokens. Returns (ids, truncated)."""
    special = not has_chat_template(tokenizer)
    texts = [render_prompt(tokenizer, messages) for messages in prompts]
    encoded, truncated = [], 0
    for ids in tokenizer(texts, add_special_tokens=special)["input_ids"]:
        if not ids:
            raise ValueError("a prompt rendered to zero tokens")
        if max_prompt_length is not None and len(ids) > max_prompt_length:
            ids = ids[-max_prompt_length:]
            truncated += 1
        encoded.append(np.asarray(ids, dtype=np.int64))
    return encoded, truncated


def _generation_kwargs(settings: SamplingSettings, tokenizer) -> dict:
    kwargs = dict(max_new_tokens=settings.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=tokenizer.eos_token_id, **PLAIN_SAMPLING)
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _trim(ids: np.ndarray, eos_id: int) -> tuple[np.ndarray, bool]:
    """Cut after the first EOS (kept: its log-prob is part of the answer's); what follows is padding."""
    stops = np.flatnonzero(ids == eos_id)
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
                answer, finished = _trim(new_ids[row], tokenizer.eos_token_id)
                body = answer[:-1] if finished else answer
                text = tokenizer.decode(body.tolist(), skip_special_tokens=True).strip()
                i, j = jobs[k]
                samples[k] = Sample(i, j, prompt_ids[row], answer.astype(np.int64), text, finished)
            bar.update(len(batch))
    finally:
        model.train(was_training)
        bar.close()
    return samples, truncated


@torch.no_grad()
def answer_logp_sums(model, samples: list[Sample], batch_size: int, pad_id: int, desc: str | None = None) -> np.ndarray:
    """log pi(answer | prompt) of every sample: per-token log-probs of the sampled ids, summed ([S] float64)."""
    device = next(model.parameters()).device
    sums = np.zeros(len(samples), dtype=np.float64)
    order = sorted(range(len(samples)), key=lambda k: (-(len(samples[k].prompt_ids) + len(samples[k].answer_ids)), k))
    bar = tqdm(total=len(samples), desc=desc, unit="answer", disable=desc is None, leave=False)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        seq = collate_sequences([samples[k].prompt_ids for k in batch], [samples[k].answer_ids for k in batch],
                                pad_id).to(device)
        logps = token_logps(model, seq.input_ids, seq.prompt_lens, seq.response_mask).logps
        sums[batch] = logps.double().sum(dim=1).cpu().numpy()
        bar.update(len(batch))
    bar.close()
    return sums


def kl_estimate(policy_logps, reference_logps) -> dict:
    """Monte-Carlo KL(policy || reference) from answers sampled from the policy: mean of
    log pi(y|x) - log pi_ref(y|x) over the samples, with its standard error (and median, spread)."""
    values = np.asarray(policy_logps, dtype=np.float64) - np.asarray(reference_logps, dtype=np.float64)
    return {"kl": describe(values)["mean"], **{k: v for k, v in describe(values).items() if k != "mean"}}

"""KL(policy || reference) from sampled answers: against the exact sum over the vocabulary for one-token
answers, exactly zero against itself; and the sampler keeps the sampled ids, EOS included."""

from __future__ import annotations

import copy

import numpy as np
import torch

from conftest import build_model
from tokensift.eval.sampling import answer_logp_sums, kl_estimate
from tokensift.generate import _trim, encode_prompts, sample_answers
from tokensift.generate import SamplingSettings

PROMPTS = [[{"role": "user", "content": "Hi"}],
           [{"role": "user", "content": "What is the capital of France? Answer briefly, please."}]]


def sharpened(vocab: int, seed: int, scale: float):
    """A tiny model whose next-token distributions are far from uniform, so KL is well above zero."""
    model = build_model(vocab, seed=seed)
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


def exact_first_token_kl(policy, reference, tokenizer) -> float:
    """sum_v pi(v|x) (log pi(v|x) - log pi_ref(v|x)) at the first answer position, averaged over the prompts."""
    ids, _ = encode_prompts(tokenizer, PROMPTS, None)
    values = []
    for prompt in ids:
        x = torch.tensor(prompt)[None]
        with torch.no_grad():
            log_p = torch.log_softmax(policy(input_ids=x).logits[0, -1].double(), dim=-1)
            log_q = torch.log_softmax(reference(input_ids=x).logits[0, -1].double(), dim=-1)
        values.append(float((log_p.exp() * (log_p - log_q)).sum()))
    return float(np.mean(values))


def test_kl_estimate_matches_the_exact_sum_for_one_token_answers(tokenizer):
    policy, reference = sharpened(len(tokenizer), 0, 8.0), sharpened(len(tokenizer), 1, 8.0)
    exact = exact_first_token_kl(policy, reference, tokenizer)
    # top_p=1: SamplingSettings' default nucleus (0.95) would bias the samples (about 5 standard errors here)
    settings = SamplingSettings(max_new_tokens=1, temperature=1.0, top_p=1.0, batch_size=1200, seed=0)
    samples, _ = sample_answers(policy, tokenizer, PROMPTS, 600, settings)
    assert all(len(s.answer_ids) == 1 for s in samples)
    # far more distinct first tokens than the top-k 50 transformers would apply by default
    assert len({int(s.answer_ids[0]) for s in samples if s.prompt_index == 0}) > 80
    estimate = kl_estimate(answer_logp_sums(policy, samples, 1200, tokenizer.pad_token_id),
                           answer_logp_sums(reference, samples, 1200, tokenizer.pad_token_id))
    assert estimate["n"] == 1200
    assert estimate["stderr"] < 0.1 * exact
    assert abs(estimate["kl"] - exact) < 4 * estimate["stderr"], (estimate, exact)


def test_kl_of_a_model_with_itself_is_exactly_zero(tokenizer):
    policy = build_model(len(tokenizer), seed=2)
    settings = SamplingSettings(max_new_tokens=6, temperature=1.0, top_p=1.0, batch_size=8, seed=1)
    samples, _ = sample_answers(policy, tokenizer, PROMPTS, 5, settings)
    mine = answer_logp_sums(policy, samples, 4, tokenizer.pad_token_id)
    for reference in (policy, copy.deepcopy(policy)):
        # same batches as the policy's pass: identical inputs give bit-identical log-probs
        estimate = kl_estimate(mine, answer_logp_sums(reference, samples, 4, tokenizer.pad_token_id))
        assert estimate["kl"] == 0.0 and estimate["stderr"] == 0.0


def test_sampler_keeps_ids_up_to_eos_and_is_seeded(tokenizer):
    policy = build_model(len(tokenizer), seed=3)
    settings = SamplingSettings(max_new_tokens=5, temperature=1.0, top_p=1.0, batch_size=3, seed=4)
    first, truncated = sample_answers(policy, tokenizer, PROMPTS, 3, settings, max_prompt_length=20)
    again, _ = sample_answers(policy, tokenizer, PROMPTS, 3, settings, max_prompt_length=20)
    assert truncated == 1  # the second prompt (35 tokens) kept its last 20
    assert [(s.prompt_index, s.sample_index) for s in first] == [(i, j) for i in range(2) for j in range(3)]
    assert all(np.array_equal(a.answer_ids, b.answer_ids) for a, b in zip(first, again))
    assert [len(s.prompt_ids) for s in first] == [16] * 3 + [20] * 3
    for s in first:
        assert 1 <= len(s.answer_ids) <= 5
        assert s.finished == (int(s.answer_ids[-1]) == tokenizer.eos_token_id)
        assert tokenizer.eos_token_id not in s.answer_ids[:-1].tolist()
    eos = tokenizer.eos_token_id
    ids, finished = _trim(np.array([5, 7, eos, 0, 0]), eos)
    assert ids.tolist() == [5, 7, eos] and finished
    ids, finished = _trim(np.array([5, 7, 9]), eos)
    assert ids.tolist() == [5, 7, 9] and not finished


def test_greedy_sampling_is_deterministic(tokenizer):
    policy = build_model(len(tokenizer), seed=5)
    settings = SamplingSettings(max_new_tokens=4, temperature=0.0, batch_size=2, seed=0)
    samples, _ = sample_answers(policy, tokenizer, PROMPTS, 2, settings)
    assert np.array_equal(samples[0].answer_ids, samples[1].answer_ids)
    # the greedy answer is the argmax of the teacher-forced distribution
    x = torch.tensor(samples[0].prompt_ids)[None]
    with torch.no_grad():
        assert int(policy(input_ids=x).logits[0, -1].argmax()) == int(samples[0].answer_ids[0])

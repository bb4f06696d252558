"""Generation-based evaluation: sample answers, judge them, measure their length and KL(policy || reference).

Models are held one at a time (policy, reference, opponent, then a model judge), see eval/loading.py. The
sampled answers' token ids are kept, so KL uses the log-probs of exactly what was sampled.
"""

from __future__ import annotations

import logging

from tokensift.eval.config import GenerateEvalConfig
from tokensift.eval.judging import judge_answers
from tokensift.eval.loading import check_same_tokenizer, load_eval_model, resolve_device
from tokensift.eval.prompts import PromptSet, load_prompt_set
from tokensift.eval.sampling import answer_logp_sums, kl_estimate
from tokensift.eval.stats import mean_and_stderr
from tokensift.generate import Sample, SamplingSettings, sample_answers
from tokensift.models import free_memory, load_tokenizer
from tokensift.judges import build_judge

log = logging.getLogger(__name__)


def nested_texts(samples: list[Sample], num_prompts: int) -> list[list[str]]:
    """answers[i][j]: the text of sample j for prompt i."""
    out: list[list[str]] = [[] for _ in range(num_prompts)]
    for sample in sorted(samples, key=lambda s: (s.prompt_index, s.sample_index)):
        out[sample.prompt_index].append(sample.text)
    return out


def length_stats(texts: list[str], count_tokens) -> dict:
    return {"tokens": mean_and_stderr([count_tokens(t) for t in texts]),
            "characters": mean_and_stderr([len(t) for t in texts])}


def evaluate_generation(config: GenerateEvalConfig) -> dict:
    """Run every measurement the config asks for and return the results (see report.write_results)."""
    device = resolve_device(config.device)
    prompt_set = load_prompt_set(config.prompts, config.prompt_column, config.reference_column, config.columns,
                                 config.split, config.skip_invalid, config.limit, config.eval_fraction, config.seed)
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    if config.reference:
        check_same_tokenizer(tokenizer, config.reference, "reference", config)
    notes = list(prompt_set.notes)
    settings = SamplingSettings(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                top_p=config.top_p, batch_size=config.batch_size, seed=config.seed)

    def bar(text: str) -> str | None:  # a progress-bar title, or None for no bar
        return text if config.progress else None

    model = load_eval_model(config.model, config, device)
    samples, truncated = sample_answers(model, tokenizer, prompt_set.prompts, config.samples_per_prompt, settings,
                                        config.max_prompt_length, bar("sampling policy answers"))
    if truncated:
        notes.append(f"{truncated} prompts were longer than max_prompt_length={config.max_prompt_length} "
                     "tokens and kept only their last tokens")
    kl, policy_logps, reference_logps = None, None, None
    if config.reference and config.temperature == 0:
        notes.append("temperature=0 (greedy): answers are not samples, so KL is not estimated")
    elif config.reference:
        policy_logps = answer_logp_sums(model, samples, config.batch_size, tokenizer.pad_token_id,
                                        bar("policy log-probs"))
    del model
    free_memory()
    if policy_logps is not None:
        model = load_eval_model(config.reference, config, device)
        reference_logps = answer_logp_sums(model, samples, config.batch_size, tokenizer.pad_token_id,
                                           bar("reference log-probs"))
        del model
        free_memory()
        kl = kl_estimate(policy_logps, reference_logps)
        kl["unit"] = "nats per answer"
        if config.temperature != 1.0 or config.top_p < 1.0:
            notes.append(f"answers were sampled at temperature={config.temperature}, top_p={config.top_p}, not "
                         "from the policy itself: the KL number is E[log pi - log pi_ref] under that sampler, a "
                         "biased estimate of KL(policy || reference)")

    opponent_samples = None
    if config.opponent:
        opponent_tokenizer = load_tokenizer(config.opponent, trust_remote_code=config.trust_remote_code)
        model = load_eval_model(config.opponent, config, device)
        opponent_samples, _ = sample_answers(model, opponent_tokenizer, prompt_set.prompts,
                                             config.samples_per_prompt, settings, config.max_prompt_length,
                                             bar("sampling opponent answers"))
        del model
        free_memory()

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    answers = nested_texts(samples, len(prompt_set.prompts))
    opponent_answers = nested_texts(opponent_samples, len(prompt_set.prompts)) if opponent_samples else None
    metrics = {"prompts": len(prompt_set.prompts), "answers": len(samples),
               "samples_per_prompt": config.samples_per_prompt,
               "answers_cut_at_max_new_tokens": sum(not s.finished for s in samples),
               "empty_answers": sum(not s.text for s in samples),
               "lengths": {"policy": length_stats([s.text for s in samples], count_tokens)}}
    # what was sampled (the turn end included), beside the re-tokenised text length every side is measured by
    metrics["lengths"]["policy"]["sampled_tokens"] = mean_and_stderr([len(s.answer_ids) for s in samples])
    if prompt_set.references is not None:
        metrics["lengths"]["reference_answers"] = length_stats(prompt_set.references, count_tokens)
    if opponent_samples is not None:
        metrics["lengths"]["opponent"] = length_stats([s.text for s in opponent_samples], count_tokens)
        metrics["opponent_answers_cut_at_max_new_tokens"] = sum(not s.finished for s in opponent_samples)
    if kl is not None:
        metrics["kl"] = kl
    judged = None
    if config.judge is not None:
        judge = build_judge(dict(config.judge))
        judged = judge_answers(judge, prompt_set.prompts, answers, prompt_set.references, opponent_answers,
                               config.tie_tolerance, config.progress)
        metrics["judge"] = {k: v for k, v in judged.items() if k != "items"}
    if metrics["answers_cut_at_max_new_tokens"]:
        notes.append(f"{metrics['answers_cut_at_max_new_tokens']} of {len(samples)} policy answers were cut at "
                     f"max_new_tokens={config.max_new_tokens}")
    result = {"action": "generate", "data": _data_info(prompt_set, notes), "metrics": metrics}
    if config.save_items:
        result["items"] = _items(prompt_set, samples, opponent_samples, policy_logps, reference_logps,
                                 judged["items"] if judged else {})
    return result


def _data_info(prompt_set: PromptSet, notes: list[str]) -> dict:
    return {"source": prompt_set.source, "kind": prompt_set.kind, "prompts": len(prompt_set.prompts),
            "skipped": prompt_set.skipped, "notes": notes}


def _items(prompt_set, samples, opponent_samples, policy_logps, reference_logps, judged: dict) -> list:
    """One record per policy answer, prompt-major (the order judge_answers uses)."""
    order = sorted(range(len(samples)), key=lambda k: (samples[k].prompt_index, samples[k].sample_index))
    opponent = {(s.prompt_index, s.sample_index): s.text for s in opponent_samples or []}
    items = []
    for position, k in enumerate(order):
        s = samples[k]
        item = {"row": prompt_set.rows[s.prompt_index], "prompt": prompt_set.prompts[s.prompt_index],
                "sample": s.sample_index, "answer": s.text, "answer_tokens": int(len(s.answer_ids)),
                "finished": s.finished}
        if prompt_set.references is not None:
            item["reference_answer"] = prompt_set.references[s.prompt_index]
        if opponent:
            item["opponent_answer"] = opponent[(s.prompt_index, s.sample_index)]
        if policy_logps is not None and reference_logps is not None:
            item.update(policy_logp=float(policy_logps[k]), reference_logp=float(reference_logps[k]),
                        kl_term=float(policy_logps[k] - reference_logps[k]))
        item.update({key: values[position] for key, values in judged.items()})
        items.append(item)
    return items


"""Is iterative training staying stable? Measured after every round on the held-out prompts.

Refreshing the reference every round lets the policy drift further each time (maintainers of
RLHFlow/Online-RLHF call it "more unstable"); the dual clip bounds each round's step, not the sum. So after round
k the policy pi_k answers the held-out prompts (`eval_samples` each, temperature 1 and top_p 1: samples from the
policy itself, which the KL estimator needs), and we report:

- KL(pi_k || pi_0) and KL(pi_k || pi_{k-1}), nats per answer: the mean of log pi_k(y|x) - log pi_ref(y|x) over
  the sampled answers y (eval/sampling.py; teacher-forced log-probs of exactly the sampled token ids);
- the judge's win rate of round k over round k-1: its mean P(pi_k's answer beats pi_{k-1}'s), sample by sample
  (0.5 = no change), and the mean judged score when the judge scores single answers.

The start model's answers (round 0) are sampled once into eval/stability-start.json, each round's into
round-XX/stability.json (written atomically, last, so a resumed run does not sample again). Models are loaded one
at a time. `stop_reason` turns the numbers into the optional early stop.
"""

from __future__ import annotations

from pathlib import Path

from tokensift.fsutil import write_json_atomic
from tokensift.tso.files import read_json

STABILITY_SEED_OFFSET = 5501  # one fixed seed for every round: rounds differ in weights, not in the draw


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def sample_round(model_name: str, prompts: list, config, max_new_tokens: int) -> dict:
    """The policy's answers to the held-out prompts, with their token ids and log-probs under the policy."""
    from tokensift.eval.sampling import answer_logp_sums
    from tokensift.generate import SamplingSettings, sample_answers
    from tokensift.models import free_memory, load_model, load_tokenizer

    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, device=_device())
    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0,
                                batch_size=config.generation_batch_size, seed=config.seed + STABILITY_SEED_OFFSET)
    samples, _ = sample_answers(model, tokenizer, [p.messages for p in prompts], config.eval_samples, settings)
    logps = answer_logp_sums(model, samples, config.generation_batch_size, tokenizer.pad_token_id)
    del model
    free_memory()
    return {"model": model_name, "samples": [
        {"prompt_id": prompts[s.prompt_index].id, "sample": s.sample_index, "text": s.text,
         "prompt_ids": s.prompt_ids.tolist(), "answer_ids": s.answer_ids.tolist(), "logp": float(lp)}
        for s, lp in zip(samples, logps)]}


def logps_under(model_name: str, record: dict, batch_size: int) -> list[float]:
    """log pi(answer | prompt) of a round's sampled answers under another model (same tokenizer)."""
    import numpy as np

    from tokensift.eval.sampling import answer_logp_sums
    from tokensift.generate import Sample
    from tokensift.models import free_memory, load_model, load_tokenizer

    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, device=_device())
    samples = [Sample(i, s["sample"], np.asarray(s["prompt_ids"], dtype=np.int64),
                      np.asarray(s["answer_ids"], dtype=np.int64), s["text"], True)
               for i, s in enumerate(record["samples"])]
    values = answer_logp_sums(model, samples, batch_size, tokenizer.pad_token_id)
    del model
    free_memory()
    return [float(v) for v in values]


def kl(record: dict, reference_logps: list[float]) -> dict:
    from tokensift.eval.sampling import kl_estimate

    return kl_estimate([s["logp"] for s in record["samples"]], reference_logps)


def win_rate(record: dict, previous: dict, prompts: dict, judge) -> float:
    """The judge's mean P(`record`'s answer beats `previous`'s), pairing answers by prompt and sample index."""
    old = {(s["prompt_id"], s["sample"]): s["text"] for s in previous["samples"]}
    items = [(prompts[s["prompt_id"]].messages, s["text"], old[(s["prompt_id"], s["sample"])])
             for s in record["samples"]]
    verdicts = judge.compare_many(items)
    return sum(v.p_first for v in verdicts) / len(verdicts)


def mean_score(record: dict, prompts: dict, judge) -> float | None:
    """The mean judged score of the answers, for judges that score single answers (else None)."""
    from tokensift.tso.evaluate import can_score

    if not can_score(judge):
        return None
    scores = judge.score_many([(prompts[s["prompt_id"]].messages, s["text"]) for s in record["samples"]])
    return sum(scores) / len(scores)


def start_record(run, prompts: list) -> dict:
    """Round 0: the start model's answers, sampled once per run."""
    path = run.out / "eval" / "stability-start.json"
    if path.exists():
        return read_json(path)
    record = sample_round(run.config.model, prompts, run.config, max_new_tokens(run))
    write_json_atomic(path, record)
    return record


def max_new_tokens(run) -> int:
    return run.policy_spec.max_new_tokens if run.policy_spec is not None else run.config.max_new_tokens


def measure_round(run, k: int, folder: Path, policy_in: str, policy_out: str) -> dict:
    """The stability numbers of round k (saved with its answers in round-XX/stability.json)."""
    path = folder / "stability.json"
    if path.exists():
        return read_json(path)["summary"]
    prompts = [run.prompts.records[i] for i in run.prompts.eval]
    start = start_record(run, prompts)
    previous = start if k == 1 else read_json(run.out / f"round-{k - 1:02d}" / "stability.json")
    record = sample_round(policy_out, prompts, run.config, max_new_tokens(run))
    batch = run.config.generation_batch_size
    to_start = kl(record, logps_under(run.config.model, record, batch))
    to_previous = to_start if policy_in == run.config.model else kl(record, logps_under(policy_in, record, batch))
    records = run.prompts.records
    summary = {"answers": len(record["samples"]), "kl_to_start": to_start, "kl_to_previous": to_previous,
               "win_rate_vs_previous": win_rate(record, previous, records, run.judge),
               "mean_score": mean_score(record, records, run.judge),
               "mean_score_previous": mean_score(previous, records, run.judge)}
    write_json_atomic(path, {**record, "summary": summary})
    return summary


def stop_reason(summary: dict | None, config) -> str | None:
    """Why the run stops after this round (config.stop_min_win_rate / stop_max_kl), or None."""
    if not summary:
        return None
    win, drift = summary.get("win_rate_vs_previous"), summary["kl_to_start"]["kl"]
    if config.stop_min_win_rate is not None and win is not None and win < config.stop_min_win_rate:
        return f"win rate over the previous round {win:.1%} < stop_min_win_rate {config.stop_min_win_rate:.1%}"
    if config.stop_max_kl is not None and drift > config.stop_max_kl:
        return f"KL to the start model {drift:.3f} > stop_max_kl {config.stop_max_kl}"
    return None

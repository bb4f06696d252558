"""Before/after evaluation of a TSO run on held-out prompts, with the run's own judge.

The policy (the starting model, then the final one) samples `eval_samples` answers per held-out prompt with
the policy generator's sampling settings and one fixed seed, so "before" and "after" differ only in weights.
Two numbers:
- mean judged score, when the judge scores single responses (reward model, callable such as VADER);
- win rate of after over before: the judge's mean P(after's answer beats before's), sample by sample,
  which works with every judge, pairwise-only LLM and HTTP judges included.
Results are saved under `eval/`, so a resumed run does not sample again.
"""

from __future__ import annotations

from pathlib import Path

from tokensift.fsutil import write_json_atomic
from tokensift.tso.backends import open_sampler
from tokensift.tso.files import read_json

EVAL_SEED_OFFSET = 4243  # any fixed number: the same seed before and after


def can_score(judge) -> bool:
    inner = getattr(judge, "judge", judge)  # a CachedJudge scores when the judge it wraps does
    return hasattr(inner, "score_many")


def sample_answers(model: str, prompts: list, config, sampling: dict) -> list[dict]:
    jobs = [(p, j) for j in range(config.eval_samples) for p in prompts]
    sampler = open_sampler(config.backend, model, config.generation_batch_size, config.progress,
                           config.vllm_tensor_parallel)
    try:
        texts = sampler.sample([p.messages for p, _ in jobs], sampling["temperature"], sampling["top_p"],
                               sampling["max_new_tokens"], seed=config.seed + EVAL_SEED_OFFSET, desc="eval answers")
    finally:
        sampler.close()
    return [{"prompt_id": p.id, "sample": j, "text": t} for (p, j), t in zip(jobs, texts)]


def evaluate_model(path: Path, model: str, prompts: list, judge, config, sampling: dict) -> dict:
    """Sample and score (once: the result is stored at `path`)."""
    if path.exists():
        return read_json(path)
    rows = sample_answers(model, prompts, config, sampling)
    by_id = {p.id: p for p in prompts}
    result = {"model": model, "prompts": len(prompts), "samples": rows}
    if can_score(judge):
        scores = judge.score_many([(by_id[r["prompt_id"]].messages, r["text"]) for r in rows])
        for row, score in zip(rows, scores):
            row["score"] = float(score)
        result["mean_score"] = sum(scores) / len(scores)
    write_json_atomic(path, result)
    return result


def win_rate(before: dict, after: dict, prompts: list, judge) -> float:
    """Mean judge probability that the after-training answer beats the before-training one (0.5 = no change)."""
    by_id = {p.id: p for p in prompts}
    old = {(r["prompt_id"], r["sample"]): r["text"] for r in before["samples"]}
    items = [(by_id[r["prompt_id"]].messages, r["text"], old[(r["prompt_id"], r["sample"])]) for r in after["samples"]]
    verdicts = judge.compare_many(items)
    return sum(v.p_first for v in verdicts) / len(verdicts)


def summary(before: dict, after: dict | None, win: float | None) -> dict:
    out = {"prompts": before["prompts"], "samples": len(before["samples"]), "model_before": before["model"]}
    if "mean_score" in before:
        out["mean_score_before"] = before["mean_score"]
    if after is not None:
        out["model_after"] = after["model"]
        if "mean_score" in after:
            out["mean_score_after"] = after["mean_score"]
        out["win_rate_after_vs_before"] = win
    return out


def describe(result: dict) -> str:
    text = f"{result['prompts']} held-out prompts x {result['samples'] // max(result['prompts'], 1)} samples"
    if "mean_score_before" in result:
        text += f": mean judged score {result['mean_score_before']:+.3f}"
        if "mean_score_after" in result:
            text += f" before -> {result['mean_score_after']:+.3f} after"
    if result.get("win_rate_after_vs_before") is not None:
        text += f"; judge prefers after over before {result['win_rate_after_vs_before']:.1%}"
    return text

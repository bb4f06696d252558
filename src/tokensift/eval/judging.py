"""Judge sampled answers: mean scores, win rates against reference answers or another model's answers.

Any judge from tokensift.judges works. Scoring judges (reward model, Python function) score every answer once;
a comparison is then the sign of the score difference, exactly what their `compare` (sigmoid of the
difference) decides at 0.5, without scoring the same answer again for every opponent. Pairwise judges (local
LLM, HTTP) are asked `compare_many(prompt, policy answer, other answer)`; their own both-orders averaging
cancels position bias. Either way an item is a win (1), a tie (0.5) or a loss (0), see stats.py; the
length-controlled rate is fitted on pairwise judges' continuous p_first (on the outcomes for scoring judges),
with lengths in characters, as AlpacaEval does.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from tokensift.eval.stats import mean_and_stderr, outcomes_from_differences, win_rate_summary
from tokensift.judges.cache import CachedJudge

CHUNK = 64  # judgements per call: progress bar granularity, and what a cached judge commits at once


def is_scoring_judge(judge) -> bool:
    """True when the judge (under any cache wrappers) scores single responses."""
    while isinstance(judge, CachedJudge):
        judge = judge.judge
    return hasattr(judge, "score_many")


def score_texts(judge, items: list[tuple[list[dict], str]], desc: str | None = None) -> np.ndarray:
    scores = []
    bar = tqdm(total=len(items), desc=desc, unit="answer", disable=desc is None, leave=False)
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        scores.extend(judge.score_many(chunk))
        bar.update(len(chunk))
    bar.close()
    return np.asarray(scores, dtype=np.float64)


def compare_texts(judge, items: list[tuple[list[dict], str, str]], desc: str | None = None) -> np.ndarray:
    """p_first of every (prompt, first, second)."""
    values = []
    bar = tqdm(total=len(items), desc=desc, unit="pair", disable=desc is None, leave=False)
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        values.extend(verdict.p_first for verdict in judge.compare_many(chunk))
        bar.update(len(chunk))
    bar.close()
    return np.asarray(values, dtype=np.float64)


def judge_answers(judge, prompts: list[list[dict]], answers: list[list[str]], references: list[str] | None = None,
                  opponent_answers: list[list[str]] | None = None, tie_tolerance: float = 0.0,
                  progress: bool = False) -> dict:
    """Scores and win rates of `answers[i][j]` (sample j for prompt i).

    references:        one reference answer per prompt; every sample of prompt i is compared with it.
    opponent_answers:  another model's answers, same shape; sample j meets the opponent's sample j.
    Returns {"judge", "kind", "mean_score" (scoring judges), "vs_reference", "vs_opponent", "items"}; each win
    rate block holds the raw rate, its standard error, counts and the length-controlled rate.
    """
    items = [(i, j) for i in range(len(prompts)) for j in range(len(answers[i]))]
    texts = [answers[i][j] for i, j in items]
    item_prompts = [prompts[i] for i, _ in items]
    sides = {}
    if references is not None:
        sides["vs_reference"] = [references[i] for i, _ in items]
    if opponent_answers is not None:
        if [len(a) for a in opponent_answers] != [len(a) for a in answers]:
            raise ValueError("opponent_answers must have as many answers per prompt as answers")
        sides["vs_opponent"] = [opponent_answers[i][j] for i, j in items]
    scoring = is_scoring_judge(judge)
    result = {"judge": judge.name, "kind": "scoring" if scoring else "pairwise", "items": {}}
    lengths = np.array([len(t) for t in texts], dtype=np.float64)
    prompt_of = [i for i, _ in items]
    if scoring:
        mine = score_texts(judge, list(zip(item_prompts, texts)), "judging policy answers" if progress else None)
        result["mean_score"] = {"policy": mean_and_stderr(mine)}
        result["items"]["policy_score"] = mine.tolist()
    for name, others in sides.items():
        other_lengths = np.array([len(t) for t in others], dtype=np.float64)
        desc = f"judging {name.replace('_', ' ')}" if progress else None
        if scoring:
            theirs = _score_others(judge, name, prompts, references, item_prompts, others, items, desc)
            side = "reference_answers" if name == "vs_reference" else "opponent"
            result["mean_score"][side] = mean_and_stderr(theirs if name == "vs_opponent" else
                                                         _per_prompt(theirs, items))
            result["items"][f"{side}_score"] = theirs.tolist()
            outcomes = outcomes_from_differences(mine - theirs, tie_tolerance)
            summary = win_rate_summary(outcomes, outcomes, lengths, other_lengths, prompt_of)
        else:
            p_first = compare_texts(judge, list(zip(item_prompts, texts, others)), desc)
            outcomes = outcomes_from_differences(p_first - 0.5, tie_tolerance)
            summary = win_rate_summary(outcomes, p_first, lengths, other_lengths, prompt_of)
            summary["mean_p_first"] = float(p_first.mean())
            result["items"][f"{name}_p_first"] = p_first.tolist()
        result[name] = summary
        result["items"][f"{name}_outcome"] = outcomes.tolist()
    return result


def _score_others(judge, name, prompts, references, item_prompts, others, items, desc) -> np.ndarray:
    """Scores of the other side per item; a reference answer is scored once per prompt, not per sample."""
    if name == "vs_reference":
        per_prompt = score_texts(judge, list(zip(prompts, references)), desc)
        return np.array([per_prompt[i] for i, _ in items])
    return score_texts(judge, list(zip(item_prompts, others)), desc)


def _per_prompt(values: np.ndarray, items: list[tuple[int, int]]) -> np.ndarray:
    """One value per prompt (reference answers repeat across a prompt's samples; count each once)."""
    seen = {}
    for value, (i, _) in zip(values, items):
        seen.setdefault(i, value)
    return np.array(list(seen.values()))

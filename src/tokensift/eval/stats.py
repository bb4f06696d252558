"""Small statistics the evaluations share: means with standard errors, win outcomes, and the win-rate summary of
`eval generate`, whose length-controlled rate is AlpacaEval's GLM (eval/winrate.py, the code `eval winrate` uses).

Why a length-controlled win rate: judges (human and model) favour longer answers, and preference training
makes answers longer. A raw win rate then mixes "better" with "longer"; the GLM asks how often the policy would
win if its answers were as long as the other side's.
"""

from __future__ import annotations

import numpy as np

from tokensift.eval.winrate import Judged, length_controlled, prompt_means, sem


def mean_and_stderr(values) -> dict:
    """{"mean", "stderr", "n"}; stderr = sample standard deviation / sqrt(n) (None below two values)."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "stderr": None, "n": 0}
    return {"mean": float(x.mean()), "stderr": sem(x), "n": n}


def describe(values) -> dict:
    """Mean, standard error, median, standard deviation, min and max of a list of numbers."""
    x = np.asarray(values, dtype=np.float64)
    out = mean_and_stderr(x)
    if x.size:
        out.update(median=float(np.median(x)), std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
                   min=float(x.min()), max=float(x.max()))
    return out


def outcomes_from_differences(differences, tie_tolerance: float = 0.0) -> np.ndarray:
    """Win (1), tie (0.5) or loss (0) from `first - second` differences; |difference| <= tolerance is a tie.

    For scoring judges the difference is score_first - score_second; for pairwise judges p_first - 0.5.
    """
    d = np.asarray(differences, dtype=np.float64)
    return np.where(d > tie_tolerance, 1.0, np.where(d < -tie_tolerance, 0.0, 0.5))


def win_rate_summary(outcomes, preferences, lengths, other_lengths, prompt_of) -> dict:
    """Raw win rate (ties count half) with its standard error, counts, and AlpacaEval's length-controlled rate.

    outcomes:     per answer 1 (win), 0.5 (tie) or 0 (loss).
    preferences:  per answer the judge's probability that the answer wins (pairwise judges' p_first; for
                  scoring judges the outcome): the length-controlled GLM is fitted on these, as AlpacaEval fits
                  its judge's continuous preferences.
    lengths, other_lengths: characters of the answer and of what it is compared with (AlpacaEval's measure).
    prompt_of:    the prompt of each answer: rates are means over prompts and standard errors are over prompts,
                  so several samples of one prompt count as one cluster, not as independent answers.
    With one model there are no instruction difficulties to fit, so the GLM is AlpacaEval's
    length_controlled_minimal (length and the model term); `tokensift eval winrate` over several runs' results
    fits difficulties across them.
    """
    y = np.asarray(outcomes, dtype=np.float64)
    judged = Judged("policy", "other", [str(p) for p in prompt_of], np.asarray(preferences, dtype=np.float64),
                    np.asarray(lengths, dtype=np.float64), np.asarray(other_lengths, dtype=np.float64))
    prompts, index = judged.prompt_index()
    per_prompt = prompt_means(y, index, len(prompts)) if y.size else y
    lc = length_controlled(judged) if y.size else {"win_rate": None, "standard_error": None, "reason": "no items"}
    return {
        "n": int(y.size), "prompts": len(prompts), "win_rate": float(per_prompt.mean()) if y.size else None,
        "stderr": sem(per_prompt), "wins": int(np.sum(y == 1.0)), "ties": int(np.sum(y == 0.5)),
        "losses": int(np.sum(y == 0.0)),
        "length_controlled": {"win_rate": lc["win_rate"], "stderr": lc["standard_error"],
                              **{k: v for k, v in lc.items() if k not in ("win_rate", "standard_error")}},
    }

"""The win-rate summary of `eval generate` (clustered by prompt, AlpacaEval's GLM on the judge's preferences) and
the small statistics beside it, on data where the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokensift.eval.stats import mean_and_stderr, outcomes_from_differences, win_rate_summary
from tokensift.eval.winrate import Judged, length_controlled


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_samples_of_one_prompt_are_one_cluster():
    # prompt 0: outcomes 1, 1; prompt 1: 0, 0.5; prompt 2: 0, 0 -> per prompt 1, 0.25, 0
    outcomes = [1.0, 1.0, 0.0, 0.5, 0.0, 0.0]
    summary = win_rate_summary(outcomes, outcomes, [10, 20, 30, 40, 50, 60], [35] * 6, [0, 0, 1, 1, 2, 2])
    assert summary["win_rate"] == pytest.approx(1.25 / 3)
    # standard error over the 3 prompts, not over the 6 answers
    assert summary["stderr"] == pytest.approx(np.std([1, 0.25, 0], ddof=1) / math.sqrt(3))
    assert (summary["n"], summary["prompts"], summary["wins"], summary["ties"], summary["losses"]) == (6, 3, 2, 1, 3)
    assert summary["length_controlled"]["win_rate"] is None  # 3 prompts: fewer than the GLM's 5 folds
    assert "at least 5" in summary["length_controlled"]["reason"]


def test_length_controlled_block_is_alpacaeval_glm_on_the_preferences():
    rng = np.random.default_rng(0)
    n = 300
    other = rng.integers(200, 1500, n).astype(float)
    mine = np.maximum(10, other * np.exp(rng.normal(0.6, 0.4, n)))  # the policy is usually longer...
    delta = other - mine
    p = sigmoid(-0.3 - 1.2 * np.tanh(delta / delta.std(ddof=1)))  # ...and wins partly through length
    outcomes = outcomes_from_differences(p - 0.5)
    summary = win_rate_summary(outcomes, p, mine, other, list(range(n)))
    lc = summary["length_controlled"]
    expected = length_controlled(Judged("policy", "other", [str(i) for i in range(n)], p, mine, other))
    assert lc["win_rate"] == expected["win_rate"] and lc["stderr"] == expected["standard_error"]
    assert lc["glm"] == "length_controlled_minimal"  # one model: no instruction difficulties to fit
    # noiseless preferences from the GLM's own form: the rate at equal length is sigmoid(-0.3)
    assert lc["win_rate"] == pytest.approx(sigmoid(-0.3), abs=0.005)
    assert lc["coefficients"]["tanh(std_delta_len)"] == pytest.approx(-1.2, abs=0.02)
    assert summary["win_rate"] > 0.6 > lc["win_rate"]


def test_ties_count_half():
    outcomes = outcomes_from_differences([0.3, 0.0, -0.2, 0.05, -0.05], tie_tolerance=0.1)
    assert outcomes.tolist() == [1.0, 0.5, 0.0, 0.5, 0.5]


def test_mean_and_stderr():
    stats = mean_and_stderr([1.0, 2.0, 3.0, 4.0])
    assert stats["mean"] == 2.5 and stats["n"] == 4
    assert stats["stderr"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / math.sqrt(4))
    assert mean_and_stderr([2.0])["stderr"] is None

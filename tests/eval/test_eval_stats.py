"""The length-controlled win rate and the logistic fit under it, on synthetic data where the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokensift.eval.stats import (length_controlled_win_rate, logistic_fit, mean_and_stderr,
                                  outcomes_from_differences, win_rate_summary)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_logistic_fit_recovers_a_known_model():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, 20000)
    y = (rng.random(x.size) < sigmoid(0.7 + 1.5 * x)).astype(float)
    fit = logistic_fit(x, y)
    assert fit.converged
    assert fit.intercept == pytest.approx(0.7, abs=4 * fit.intercept_stderr)
    assert fit.slope == pytest.approx(1.5, abs=0.1)
    assert 0.005 < fit.intercept_stderr < 0.05


def test_fractional_ties_fit_like_duplicated_rows():
    """A tie target of 0.5 equals duplicating every row: a tie becomes one win and one loss."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 400)
    y = rng.choice([0.0, 0.5, 1.0], size=x.size)
    fractional = logistic_fit(x, y)
    first = np.where(y == 0.0, 0.0, 1.0)  # win, or the winning half of a tie
    second = np.where(y == 1.0, 1.0, 0.0)  # win, or the losing half of a tie
    duplicated = logistic_fit(np.concatenate([x, x]), np.concatenate([first, second]))
    assert fractional.intercept == pytest.approx(duplicated.intercept, abs=1e-8)
    assert fractional.slope == pytest.approx(duplicated.slope, abs=1e-8)


def test_length_controlled_rate_recovers_the_win_rate_at_equal_length():
    rng = np.random.default_rng(2)
    d = rng.normal(20, 40, 20000)  # policy answers are 20 tokens longer on average
    sd = d.std(ddof=1)
    truth = 0.4  # the intercept: log-odds of winning at equal length
    y = (rng.random(d.size) < sigmoid(truth + 0.8 * d / sd)).astype(float)
    lc = length_controlled_win_rate(y, d)
    assert lc["converged"]
    assert lc["intercept"] == pytest.approx(truth, abs=0.06)
    assert lc["win_rate"] == pytest.approx(sigmoid(truth), abs=0.015)
    assert lc["slope_per_sd"] == pytest.approx(0.8, abs=0.06)
    assert lc["win_rate"] == pytest.approx(sigmoid(lc["intercept"]))
    assert lc["stderr"] == pytest.approx(lc["win_rate"] * (1 - lc["win_rate"]) *
                                         logistic_fit(d / sd, y).intercept_stderr)


def test_wins_explained_by_length_give_a_length_controlled_rate_near_one_half():
    rng = np.random.default_rng(3)
    d = rng.normal(30, 20, 20000)  # the policy is usually longer...
    y = (rng.random(d.size) < sigmoid(3.0 * d / 20)).astype(float)  # ...and wins only through length
    summary = win_rate_summary(y, d)
    assert summary["win_rate"] > 0.8
    assert summary["length_controlled"]["win_rate"] == pytest.approx(0.5, abs=0.03)


def test_ties_count_half_and_degenerate_length_differences():
    outcomes = outcomes_from_differences([0.3, 0.0, -0.2, 0.05, -0.05], tie_tolerance=0.1)
    assert outcomes.tolist() == [1.0, 0.5, 0.0, 0.5, 0.5]
    all_ties = length_controlled_win_rate([0.5] * 10, np.arange(10) - 3)
    assert all_ties["win_rate"] == pytest.approx(0.5, abs=1e-9)
    # every difference zero: nothing to control for, the raw rate
    same = length_controlled_win_rate([1, 0, 1, 1], [0, 0, 0, 0])
    assert same["win_rate"] == 0.75
    # every difference the same non-zero value: intercept and length cannot be told apart
    assert length_controlled_win_rate([1, 0, 1], [5, 5, 5])["win_rate"] is None


def test_perfect_separation_is_reported_not_hidden():
    d = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    y = (d > 0).astype(float)
    lc = length_controlled_win_rate(y, d)
    assert not lc["converged"] and "separated" in lc["reason"]


def test_mean_and_stderr():
    stats = mean_and_stderr([1.0, 2.0, 3.0, 4.0])
    assert stats["mean"] == 2.5 and stats["n"] == 4
    assert stats["stderr"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / math.sqrt(4))
    assert mean_and_stderr([2.0])["stderr"] is None

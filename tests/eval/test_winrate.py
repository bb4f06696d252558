"""The pieces of AlpacaEval's length-controlled GLM (eval/winrate.py) and the difficulty fit (eval/difficulty.py),
against values worked out by hand or against data generated from a known model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokensift.eval.difficulty import fit_difficulties
from tokensift.eval.winrate import (CS, Judged, cross_validated_fit, cv_folds, gamed_rows, glm_problem,
                                    l1_logistic, length_controlled, raw_win_rate, sigmoid,
                                    standardised_length_difference, weighted_log_loss)


def judged(preference, model_length, baseline_length, prompts=None, model="m", baseline="b"):
    n = len(preference)
    return Judged(model, baseline, prompts or [f"p{i}" for i in range(n)], np.asarray(preference, float),
                  np.asarray(model_length, float), np.asarray(baseline_length, float))


def test_raw_win_rate_by_hand_with_samples_clustered_by_prompt():
    j = judged([1.0, 0.5, 0.0, 0.25], [1, 1, 1, 1], [1, 1, 1, 1], prompts=["a", "a", "b", "c"])
    raw = raw_win_rate(j)
    # per prompt: a = (1 + 0.5) / 2 = 0.75, b = 0, c = 0.25; mean 1/3
    assert raw["win_rate"] == pytest.approx(1 / 3)
    # sample sd of (0.75, 0, 0.25) = sqrt(0.291667 / 2) = 0.381881; / sqrt(3 prompts)
    assert raw["standard_error"] == pytest.approx(0.3818813 / math.sqrt(3), rel=1e-6)
    assert (raw["n_wins"], raw["n_draws"], raw["n_wins_base"], raw["n_total"], raw["n_prompts"]) == (1, 1, 2, 4, 3)
    # discrete: a = (1 + 0.5) / 2, b = 0, c = 0 (0.25 is a loss)
    assert raw["discrete_win_rate"] == pytest.approx(0.75 / 3)


def test_standardised_length_difference_by_hand():
    # baseline - model = 100, 0, -100; sample sd 100
    assert standardised_length_difference([100, 200, 300], [200, 200, 200]).tolist() == [1.0, 0.0, -1.0]
    assert standardised_length_difference([5, 7], [5, 7]).tolist() == [0.0, 0.0]
    assert standardised_length_difference([5, 7], [6, 8]) is None  # always one character shorter


def test_folds_follow_group_k_fold_for_one_row_per_group():
    # GroupKFold gives the last group to fold 0, the one before to fold 1, ...: fold(i) = (n - 1 - i) mod 5
    assert cv_folds(7).tolist() == [1, 0, 4, 3, 2, 1, 0]


def test_weighted_log_loss_by_hand():
    # -(1 * log 0.5 + 0.1 * (0.5 log 0.5 + 0.5 log 0.5)) / 2 = 1.1 * log 2 / 2
    loss = weighted_log_loss(np.array([1.0, 0.5]), np.array([0.5, 0.5]), np.array([1.0, 0.1]))
    assert loss == pytest.approx(1.1 * math.log(2) / 2)


def test_l1_logistic_one_feature_by_hand():
    # min |w| + C (softplus(w) - p w): C (sigmoid(w) - p) + 1 = 0, so sigmoid(w) = p - 1/C = 0.8, w = log 4
    w = l1_logistic(np.ones((1, 1)), np.array([0.9]), np.ones(1), C=10.0)
    assert w[0] == pytest.approx(math.log(4), abs=1e-9)
    # the penalty wins when p - 1/C falls to 1/2 or below: w = 0 exactly
    assert l1_logistic(np.ones((1, 1)), np.array([0.6]), np.ones(1), C=10.0)[0] == 0.0


def test_l1_logistic_satisfies_the_optimality_conditions():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.tanh(rng.normal(size=300)), rng.normal(size=300), np.ones(300)])
    target = sigmoid(X @ [-0.7, 0.9, -1.0] + rng.normal(0, 1, 300))
    weight = np.where(np.arange(300) < 50, 0.1, 1.0)
    for C in (0.05, 1.0, 100.0):
        w = l1_logistic(X, target, weight, C)
        gradient = C * X.T @ (weight * (sigmoid(X @ w) - target))
        for g, value in zip(gradient, w):  # subgradient of |w| contains -gradient
            if value != 0:
                assert g == pytest.approx(-math.copysign(1, value), abs=1e-7)
            else:
                assert abs(g) <= 1 + 1e-9


def test_cross_validation_picks_the_lowest_summed_fold_loss():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.normal(size=80), np.ones(80)])
    target = sigmoid(X @ [1.5, -0.5])
    coef, C, losses = cross_validated_fit(X, target, np.ones(80))
    assert len(losses) == len(CS) and C == CS[int(np.argmin(losses))]
    assert coef == pytest.approx(l1_logistic(X, target, np.ones(80), C))


def test_all_ties_give_one_half():
    j = judged([0.5] * 12, np.arange(12) * 10 + 5, [60] * 12)
    assert raw_win_rate(j)["win_rate"] == 0.5
    lc = length_controlled(j)
    # at p = 1/2 the gradient at w = 0 is 0, so the L1 fit stays at 0 and every prediction is 1/2
    assert lc["win_rate"] == 0.5 and lc["standard_error"] == 0.0
    assert lc["glm"] == "length_controlled_minimal"


def test_too_few_prompts_or_constant_length_gap_leave_lc_empty_with_a_reason():
    one = length_controlled(judged([0.9], [10], [20]))
    assert one["win_rate"] is None and "at least 5" in one["reason"]
    constant = length_controlled(judged([0.9, 0.1, 0.4, 0.6, 0.7], [10] * 5, [20] * 5))
    assert constant["win_rate"] is None and "same number of characters" in constant["reason"]
    itself = length_controlled(judged([0.5] * 6, [10] * 6, [10] * 6, model="b"))
    assert itself["win_rate"] == 0.5


def known_world(seed=0, instructions=400, models=((-1.0, 0.8), (0.5, 0.0), (-2.0, 0.4))):
    """Continuous preferences generated exactly by the GLM's form: logit = q_m + d_i - 0.8 tanh(std_delta_len)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 1, instructions)
    baseline = rng.integers(300, 2000, instructions).astype(float)
    out = []
    for k, (quality, verbosity) in enumerate(models):
        length = np.maximum(20, baseline * np.exp(rng.normal(verbosity, 0.4, instructions)))
        std = standardised_length_difference(length, baseline)
        p = sigmoid(quality + difficulty - 0.8 * np.tanh(std))
        out.append(Judged(f"m{k}", "b", [f"i{i}" for i in range(instructions)], p, length, baseline))
    return out, difficulty


def test_lc_recovers_the_win_rate_at_equal_length_in_a_known_world():
    models, difficulty = known_world()
    true = {f"i{i}": float(d) for i, d in enumerate(difficulty)}
    for j, (quality, _) in zip(models, ((-1.0, 0.8), (0.5, 0.0), (-2.0, 0.4))):
        lc = length_controlled(j, true)
        assert lc["glm"] == "length_controlled_noreg"
        # noiseless preferences, C from the grid's large end: the coefficients come back almost exactly
        assert lc["coefficients"]["tanh(std_delta_len)"] == pytest.approx(-0.8, abs=0.02)
        assert lc["coefficients"]["instruction_difficulty"] == pytest.approx(1.0, abs=0.02)
        assert lc["win_rate"] == pytest.approx(float(sigmoid(quality + difficulty).mean()), abs=0.003)


def test_fitted_difficulties_solve_their_penalised_likelihood_and_follow_the_truth():
    models, difficulty = known_world(seed=2, instructions=150)
    fitted = fit_difficulties(models, ridge=1.0)
    d = np.array([fitted[f"i{i}"] for i in range(150)])
    assert np.corrcoef(d, difficulty)[0, 1] > 0.99
    # stationarity in d_i: sum over the models' rows of (q - p) + ridge * d_i = 0, with the model terms refitted
    # here by Newton on each model's (bias, slope) given the fitted d
    residual = np.zeros(150)
    for j in models:
        x = np.tanh(standardised_length_difference(j.model_length, j.baseline_length))
        ab = np.zeros(2)
        for _ in range(50):
            q = sigmoid(ab[0] + ab[1] * x + d)
            g = np.array([np.sum(q - j.preference), np.sum((q - j.preference) * x)]) + 1e-6 * ab
            s = q * (1 - q)
            h = np.array([[s.sum(), (s * x).sum()], [(s * x).sum(), (s * x * x).sum()]]) + 1e-6 * np.eye(2)
            ab -= np.linalg.solve(h, g)
        residual += sigmoid(ab[0] + ab[1] * x + d) - j.preference
    assert np.max(np.abs(residual + 1.0 * d)) < 1e-6


def test_fitting_difficulties_needs_two_models():
    models, _ = known_world(instructions=10)
    with pytest.raises(ValueError, match="at least two models"):
        fit_difficulties(models[:1])


def test_gamed_rows_regularise_towards_the_baseline_with_lambda_shared():
    models, difficulty = known_world(seed=3, instructions=200)
    true = {f"i{i}": float(d) for i, d in enumerate(difficulty)}
    gamed = [Judged(f"base_{name}", "b", j.prompts, j.preference, j.model_length, j.baseline_length)
             for name, j in zip(("verbose", "concise"), models[:2])]
    rows, left_out = gamed_rows(gamed, true, lam=0.2)
    assert left_out == 0 and rows.generators == ["base_verbose", "base_concise"]
    assert rows.weight.tolist() == [0.1] * 400  # lambda / 2 gamed generators, as AlpacaEval
    problem = glm_problem(models[2], true, rows)
    assert problem.formula == "length_controlled_v1"
    # gamed rows first (AlpacaEval's order), with not_gamed_baseline = 0; the model's rows after, with 1
    assert problem.X[:400, 2].tolist() == [0.0] * 400 and problem.X[400:, 2].tolist() == [1.0] * 200
    assert problem.row_prompt[:400].tolist() == [-1] * 400
    assert length_controlled(models[2], true, rows)["gamed_rows"] == 400
    only_some = gamed_rows(gamed, {k: v for k, v in list(true.items())[:50]})
    assert only_some[1] == 300 and len(only_some[0].preference) == 100


def test_prompt_weights_equal_duplicated_prompts():
    """A bootstrap draw as prompt weights gives the same fit as repeating the drawn prompts' rows."""
    models, difficulty = known_world(seed=4, instructions=60)
    true = {f"i{i}": float(d) for i, d in enumerate(difficulty)}
    j = models[0]
    problem = glm_problem(j, true)
    weights = np.zeros(60)
    weights[:30] = 2.0  # the first 30 prompts drawn twice each, the rest not at all
    weighted, _ = problem.fit(C=2.0, prompt_weight=weights)
    rows = np.r_[np.arange(30), np.arange(30)]
    repeated = l1_logistic(problem.X[rows], problem.target[rows], np.ones(60), 2.0)
    assert weighted == pytest.approx(repeated, abs=1e-6)

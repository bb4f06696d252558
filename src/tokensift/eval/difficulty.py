"""Instruction difficulties for the length-controlled GLM (eval/winrate.py) when no published ones are given.

AlpacaEval fitted its published difficulties (GPT-4-Turbo judge, baseline gpt4_1106_preview) once, jointly over
the leaderboard's models (its notebook `instruction_difficulty.ipynb`): every model gets its own bias and length
slope, every instruction its own term, and the instruction terms become the difficulties. We fit the same model
across the models being compared against one baseline:

    logit P(model m beats the baseline on instruction i) = a_m + b_m * tanh(std_delta_len) + d_i

on the judge's continuous preferences (every row weight 1), with a ridge (a standard-normal prior, RIDGE) on
the d_i, which pins down the level that a_m + d_i leaves free and keeps instructions that every model loses from
running off to minus infinity; AlpacaEval used an L1 penalty chosen by cross-validation. Only the pattern of the
d_i matters downstream: the per-model GLM multiplies them by a fitted coefficient and has its own model term.
With one model the d_i would absorb that model's own preferences, so at least two are needed (else the GLM runs
without the difficulty term, see winrate.length_controlled).

Solved by Newton's method with step halving on the exact Hessian (models x 2 + instructions parameters).
"""

from __future__ import annotations

import numpy as np

from tokensift.eval.winrate import Judged, sigmoid, standardised_length_difference

RIDGE = 1.0
MODEL_RIDGE = 1e-6  # keeps the Hessian invertible when a model's length term is constant


def _objective(eta: np.ndarray, target: np.ndarray, theta: np.ndarray, ridges: np.ndarray) -> float:
    return float(np.sum(np.logaddexp(0.0, eta) - target * eta) + 0.5 * np.sum(ridges * theta * theta))


def fit_difficulties(judged: list[Judged], ridge: float = RIDGE, tolerance: float = 1e-9,
                     max_iterations: int = 100) -> dict[str, float]:
    """Difficulty d_i of every instruction that any of the models answered (keyed by the prompt), from the joint
    fit above. Models judged against themselves are left out (they say nothing about difficulty)."""
    models = [j for j in judged if j.model != j.baseline and len(j)]
    if len(models) < 2:
        raise ValueError("fitting instruction difficulties needs at least two models")
    instructions: dict[str, int] = {}
    model_index, slope_x, instruction_index, targets = [], [], [], []
    for m, j in enumerate(models):
        std = standardised_length_difference(j.model_length, j.baseline_length)
        slope_x.append(np.tanh(std) if std is not None else np.zeros(len(j)))
        model_index.append(np.full(len(j), m))
        instruction_index.append(np.array([instructions.setdefault(p, len(instructions)) for p in j.prompts]))
        targets.append(np.asarray(j.preference, dtype=np.float64))
    mi, x, ii, target = (np.concatenate(a) for a in (model_index, slope_x, instruction_index, targets))
    n_models, n_instr = len(models), len(instructions)
    a_of, b_of, d_of = mi, n_models + mi, 2 * n_models + ii  # parameter index of each row's three terms
    size = 2 * n_models + n_instr
    ridges = np.concatenate([np.full(2 * n_models, MODEL_RIDGE), np.full(n_instr, ridge)])
    theta = np.zeros(size)

    def linear(t: np.ndarray) -> np.ndarray:
        return t[a_of] + t[b_of] * x + t[d_of]

    current = _objective(linear(theta), target, theta, ridges)
    for _ in range(max_iterations):
        q = sigmoid(linear(theta))
        residual, curvature = q - target, q * (1 - q)
        gradient = ridges * theta
        for where, factor in ((a_of, 1.0), (b_of, x), (d_of, 1.0)):
            np.add.at(gradient, where, residual * factor)
        hessian = np.diag(ridges)
        # every pair of the row's three terms: d eta / d theta_u * d eta / d theta_v * q (1 - q)
        terms = ((a_of, 1.0), (b_of, x), (d_of, 1.0))
        for u, fu in terms:
            for v, fv in terms:
                np.add.at(hessian, (u, v), curvature * fu * fv)
        step = np.linalg.solve(hessian, -gradient)
        scale = 1.0
        while scale > 1e-10:
            candidate = _objective(linear(theta + scale * step), target, theta + scale * step, ridges)
            if candidate <= current + 1e-12:
                break
            scale /= 2
        theta, current = theta + scale * step, candidate
        if np.max(np.abs(scale * step)) < tolerance:
            break
    values = theta[2 * n_models:]
    return {prompt: float(values[k]) for prompt, k in instructions.items()}


def lc_averages(w_diff: np.ndarray, w_model: np.ndarray, lc: np.ndarray):
    """A constraint for difficulties_given_weights: models whose published LC (a fraction) is the mean over the
    instructions of sigmoid(w_diff * d_i + w_model). Returns d -> (gaps, their Jacobian [models, instructions])."""

    def gaps(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = sigmoid(np.outer(w_diff, d) + w_model[:, None])
        return p.mean(axis=1) - lc, w_diff[:, None] * p * (1 - p) / d.size

    return gaps


def difficulties_given_weights(instruction: np.ndarray, offset: np.ndarray, slope: np.ndarray, target: np.ndarray,
                               n_instructions: int, prior_mean: float = 0.0, prior_precision: float = 1e-3,
                               constraints: list | None = None, tolerance: float = 1e-9,
                               max_iterations: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Each instruction's difficulty when every model's GLM weights are known (AlpacaEval publishes them): row r
    (a model's judged answer to instruction `instruction[r]`) has

        logit P = offset[r] + slope[r] * d_instruction

    where offset = w_len * tanh(std_delta_len) + w_model and slope = w_diff of that row's model. With the weights
    fixed, every d_i is a one-parameter logistic fit (continuous targets) over the models that answered i, with a
    normal prior N(prior_mean, 1 / prior_precision).

    `constraints`: (function, precision) pairs; function(d) -> (values that should be 0, their Jacobian
    [values, instructions]), added to the objective as precision / 2 * |values|^2 (e.g. lc_averages: published
    LCs, which pin down the spread of the d_i that noisy per-instruction estimates widen).

    Minimised by Gauss-Newton steps (the constraints linearised; exact Newton without them) with step halving.
    Returns (d, standard error of each d from the likelihood's and the prior's curvature)."""
    n = n_instructions
    constraints = constraints or []
    d = np.full(n, float(prior_mean))

    def parts(values: np.ndarray):
        eta = offset + slope * values[instruction]
        value = float(np.sum(np.logaddexp(0.0, eta) - target * eta))
        value += 0.5 * prior_precision * float(np.sum((values - prior_mean) ** 2))
        held = [function(values) for function, _ in constraints]
        value += sum(0.5 * precision * float(g @ g) for (g, _), (_, precision) in zip(held, constraints))
        return value, eta, held

    current, eta, held = parts(d)
    for _ in range(max_iterations):
        q = sigmoid(eta)
        gradient = np.bincount(instruction, slope * (q - target), n) + prior_precision * (d - prior_mean)
        curvature = np.bincount(instruction, slope * slope * q * (1 - q), n) + prior_precision
        if not constraints:
            step = -gradient / curvature
        else:
            hessian = np.diag(curvature)
            for (g, jacobian), (_, precision) in zip(held, constraints):
                gradient = gradient + precision * (jacobian.T @ g)
                hessian += precision * (jacobian.T @ jacobian)
            step = np.linalg.solve(hessian, -gradient)
        scale = 1.0
        while scale > 1e-10:
            candidate = parts(d + scale * step)
            if candidate[0] <= current + 1e-12 * max(1.0, abs(current)):
                break
            scale /= 2
        else:
            break
        d = d + scale * step
        current, eta, held = candidate
        if np.max(np.abs(scale * step)) < tolerance:
            break
    q = sigmoid(offset + slope * d[instruction])
    curvature = np.bincount(instruction, slope * slope * q * (1 - q), n) + prior_precision
    return d, 1.0 / np.sqrt(curvature)

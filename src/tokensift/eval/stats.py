"""Small statistics the evaluations share: means with standard errors, win outcomes, and the
length-controlled win rate (a logistic regression fitted here with Newton's method, so no sklearn).

Why a length-controlled win rate: judges (human and model) favour longer answers, and preference training
makes answers longer. A raw win rate then mixes "better" with "longer". Regressing the win on the length
difference and reading the fitted win probability at a difference of zero asks: how often would the policy
win if its answer were as long as the other one?
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def mean_and_stderr(values) -> dict:
    """{"mean", "stderr", "n"}; stderr = sample standard deviation / sqrt(n) (None below two values)."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "stderr": None, "n": 0}
    stderr = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return {"mean": float(x.mean()), "stderr": stderr, "n": n}


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


@dataclass
class LogisticFit:
    """P(win) = sigmoid(intercept + slope * x), fitted to fractional targets in [0, 1].

    intercept_stderr comes from the inverse Fisher information (independent items assumed). converged is
    False when Newton's method ran out of iterations, which happens when the outcomes are (nearly) perfectly
    separated by x: the maximum-likelihood estimate is then infinite and the numbers only say "extreme".
    """

    intercept: float
    slope: float
    intercept_stderr: float | None
    converged: bool
    iterations: int


def _probabilities(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sigmoid(X @ coef) without overflow warnings when the coefficients run off (separated data)."""
    return 0.5 * (1.0 + np.tanh(0.5 * (X @ coef)))


def _log_likelihood(X: np.ndarray, y: np.ndarray, coef: np.ndarray, ridge: float) -> float:
    eta = X @ coef
    # y*log(p) + (1-y)*log(1-p) written with logaddexp so large |eta| never overflows
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)) - 0.5 * ridge * coef @ coef)


def logistic_fit(x, y, max_iterations: int = 100, tolerance: float = 1e-10, ridge: float = 1e-9) -> LogisticFit:
    """Fit y ~ sigmoid(a + b x) by Newton's method (IRLS) on the binomial log-likelihood.

    Fractional targets (0.5 for a tie) are valid: a tie then weighs exactly like one half-win plus one
    half-loss. A tiny ridge keeps the Hessian invertible when x is constant; step halving makes every step
    increase the likelihood, so the iteration cannot oscillate.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError("logistic_fit needs two equally long, non-empty 1-d arrays")
    X = np.stack([np.ones_like(x), x], axis=1)
    coef = np.zeros(2)
    current = _log_likelihood(X, y, coef, ridge)
    converged = False
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        p = _probabilities(X, coef)
        gradient = X.T @ (y - p) - ridge * coef
        hessian = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-8:
            candidate = _log_likelihood(X, y, coef + scale * step, ridge)
            if candidate >= current - 1e-12:
                break
            scale /= 2
        coef = coef + scale * step
        current = _log_likelihood(X, y, coef, ridge)
        if np.max(np.abs(scale * step)) < tolerance:
            converged = True
            break
    p = _probabilities(X, coef)
    information = (X * (p * (1 - p))[:, None]).T @ X
    try:
        variance = np.linalg.inv(information)[0, 0]
        stderr = float(math.sqrt(variance)) if variance > 0 and math.isfinite(variance) else None
    except np.linalg.LinAlgError:
        stderr = None
    return LogisticFit(float(coef[0]), float(coef[1]), stderr, converged, iterations)


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value)) if value >= 0 else math.exp(value) / (1.0 + math.exp(value))


def length_controlled_win_rate(outcomes, length_differences) -> dict:
    """Win rate at zero length difference: sigmoid(intercept) of win ~ intercept + slope * (d / sd(d)).

    outcomes:            per item 1 (win), 0.5 (tie) or 0 (loss).
    length_differences:  per item, the policy answer's length minus the other answer's (tokens).
    The difference is divided by its standard deviation but *not* centred, so x = 0 still means "equally
    long" and the intercept is the log-odds of winning there. `slope` is per standard deviation of length
    difference (> 0: longer answers win more). When every difference is zero the fit has only an intercept
    and equals the raw win rate; when every difference is the same non-zero value, length and intercept
    cannot be told apart and the result is None with a reason.
    """
    y = np.asarray(outcomes, dtype=np.float64)
    d = np.asarray(length_differences, dtype=np.float64)
    if y.size == 0:
        return {"win_rate": None, "reason": "no items"}
    if y.size < 2 or float(d.std()) == 0.0:
        if np.all(d == 0):
            raw = float(y.mean())
            return {"win_rate": raw, "stderr": mean_and_stderr(y)["stderr"], "slope_per_sd": 0.0,
                    "length_difference_sd": 0.0, "converged": True,
                    "reason": "every length difference is zero: equal to the raw win rate"}
        return {"win_rate": None, "reason": "every length difference is the same non-zero value: the "
                "win rate at zero difference cannot be separated from the length effect"}
    sd = float(d.std(ddof=1))
    fit = logistic_fit(d / sd, y)
    rate = sigmoid(fit.intercept)
    stderr = None  # a standard error around a diverging estimate would be meaningless
    if fit.converged and fit.intercept_stderr is not None:
        stderr = rate * (1 - rate) * fit.intercept_stderr
    out = {"win_rate": rate, "stderr": stderr, "intercept": fit.intercept, "slope_per_sd": fit.slope,
           "length_difference_sd": sd, "converged": fit.converged, "iterations": fit.iterations}
    if not fit.converged:
        out["reason"] = "the fit did not converge: wins are (nearly) perfectly separated by length"
    return out


def win_rate_summary(outcomes, length_differences) -> dict:
    """Raw win rate (ties count half) with its standard error, counts, and the length-controlled rate."""
    y = np.asarray(outcomes, dtype=np.float64)
    stats = mean_and_stderr(y)
    return {
        "n": stats["n"], "win_rate": stats["mean"], "stderr": stats["stderr"],
        "wins": int(np.sum(y == 1.0)), "ties": int(np.sum(y == 0.5)), "losses": int(np.sum(y == 0.0)),
        "length_controlled": length_controlled_win_rate(y, length_differences),
    }

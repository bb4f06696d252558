"""Win rates against a baseline as AlpacaEval 2 reports them: the raw win rate of a judge's continuous
preferences and the length-controlled (LC) win rate of the published GLM (Dubois et al. 2024, "Length-Controlled
AlpacaEval"; tatsu-lab/alpaca_eval `metrics/glm_winrate.py`, `length_controlled_v1`). Written here from the
published description with numpy only; `tests/eval/test_winrate_parity.py` checks it against AlpacaEval's own
code.

Why a GLM and not a plain regression on length: the judge prefers longer answers, so a raw win rate rewards
verbosity. The GLM explains each preference (the probability that the model's answer beats the baseline's) by

    logit P = w_len * tanh(std_delta_len) + w_diff * instruction_difficulty + w_model * not_gamed_baseline

with no intercept. std_delta_len is (baseline length - model length) in characters, divided by its standard
deviation over the model's rows, so tanh bounds what length can explain. instruction_difficulty is a fixed
per-instruction number (how hard it is to beat the baseline there), so the model's own term w_model is not
confused with which instructions it happened to answer. The LC win rate is the mean prediction over the
instructions at std_delta_len = 0: how often the model would win if its answers were as long as the baseline's.

Regularisation towards the baseline: annotations of the baseline itself prompted to be verbose or concise
("gamed" rows, not_gamed_baseline = 0) join the training rows with weight lambda/k each (k gamed generators;
AlpacaEval: lambda = 0.2, k = 2). They teach the length and difficulty terms what pure length changes do to the
judge without changing the model term. The fit is AlpacaEval's: logistic loss on the continuous preference, an
L1 penalty, C chosen from logspace(-4, 4, 10) by 5-fold cross-validation on the mean weighted log loss (each row a
group, folds assigned as scikit-learn's GroupKFold assigns equally sized groups), then refitted on all rows.

Several answers per prompt (samples, pooled seeds) are rows of the same prompt: win rates are means over
prompts of the per-prompt means and standard errors are over prompts (clustered), which equals AlpacaEval's
numbers when every prompt has one row.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

LAMBDA = 0.2  # weight of the gamed-baseline rows, shared among the gamed generators
N_SPLITS = 5
CS = np.logspace(-4, 4, 10)
MIN_PROMPTS_FOR_LC = N_SPLITS
BOOTSTRAP_DRAWS = 200  # prompt resamples for the LC's standard error when the GLM has no difficulty term
LOG_LOSS_CLIP = 1e-15
FORMULAS = {  # AlpacaEval's names for the three designs
    "length_controlled_v1": ("tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline"),
    "length_controlled_noreg": ("tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline"),
    "length_controlled_minimal": ("tanh(std_delta_len)", "not_gamed_baseline"),
}


@dataclass
class Judged:
    """One model's judged answers against one baseline; row r answers prompt `prompts[r]`.

    preference: probability that the model's answer beats the baseline's, in [0, 1] (AlpacaEval's preference
    minus 1). score: the judge's score of the model's answer (scoring judges), else None.
    """

    model: str
    baseline: str
    prompts: list[str]
    preference: np.ndarray
    model_length: np.ndarray
    baseline_length: np.ndarray
    score: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def prompt_index(self) -> tuple[list[str], np.ndarray]:
        """(distinct prompts in order of first appearance, each row's index into them)."""
        order: dict[str, int] = {}
        index = np.array([order.setdefault(p, len(order)) for p in self.prompts], dtype=np.int64)
        return list(order), index


@dataclass
class GamedRows:
    """Training rows of the gamed baselines, ready for the design: preference in [0, 1], std_delta_len,
    instruction difficulty, and the weight of each row (lambda / number of gamed generators)."""

    preference: np.ndarray
    std_delta_len: np.ndarray
    difficulty: np.ndarray
    weight: np.ndarray
    generators: list[str]


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def prompt_means(values: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """Mean of `values` per prompt (index[r] = prompt of row r)."""
    sums = np.bincount(index, weights=values, minlength=count)
    return sums / np.bincount(index, minlength=count)


def sem(values: np.ndarray) -> float | None:
    """Standard error of the mean (sample standard deviation / sqrt(n)); None below two values."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else None


def raw_win_rate(judged: Judged) -> dict:
    """AlpacaEval's win rate: the mean preference (a fraction here), its standard error over prompts, and the
    counts of rows the model wins (p > 0.5), draws (p = 0.5) and loses; `discrete_win_rate` counts a win as 1 and
    a draw as 1/2."""
    p = np.asarray(judged.preference, dtype=np.float64)
    prompts, index = judged.prompt_index()
    per_prompt = prompt_means(p, index, len(prompts))
    wins, draws = int(np.sum(p > 0.5)), int(np.sum(p == 0.5))
    return {"win_rate": float(per_prompt.mean()), "standard_error": sem(per_prompt), "n_wins": wins,
            "n_draws": draws, "n_wins_base": int(p.size - wins - draws), "n_total": int(p.size),
            "n_prompts": len(prompts), "discrete_win_rate": float(prompt_means((p > 0.5) + 0.5 * (p == 0.5),
                                                                              index, len(prompts)).mean())}


def standardised_length_difference(model_length, baseline_length) -> np.ndarray | None:
    """(baseline - model length) / its standard deviation over the rows (ddof 1, as pandas' std); all zeros when
    every difference is 0; None when the differences are one non-zero value (length cannot be told apart)."""
    delta = np.asarray(baseline_length, dtype=np.float64) - np.asarray(model_length, dtype=np.float64)
    spread = float(delta.std(ddof=1)) if delta.size > 1 else 0.0
    if spread > 0:
        return delta / spread
    return np.zeros_like(delta) if np.all(delta == 0) else None


def _quadratic_l1(b: np.ndarray, H: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """argmin_v b.v + v'Hv/2 + ||v||_1 exactly, for the few coefficients of this GLM (H positive definite).

    At the minimum every non-zero v_j has a sign s_j and H_SS v_S = -(b_S + s_S) on the non-zero set S. First
    the guess `signs` (the current coefficients' signs, right near the optimum): when all are non-zero and the
    solution keeps them, it is the minimum. Otherwise every (S, s) with consistent signs (3^k of them) is tried
    and the lowest objective kept."""
    k = len(b)
    if np.all(signs != 0):
        v = np.linalg.solve(H, -(b + signs))
        if np.all(np.sign(v) == signs):
            return v
    best, best_value = np.zeros(k), 0.0
    for pattern in itertools.product((-1, 0, 1), repeat=k):
        on = [j for j in range(k) if pattern[j]]
        if not on:
            continue
        signs = np.array([pattern[j] for j in on], dtype=np.float64)
        v_on = np.linalg.solve(H[on][:, on], -(b[on] + signs))
        if np.any(np.sign(v_on) != signs):
            continue
        v = np.zeros(k)
        v[on] = v_on
        value = float(b @ v + 0.5 * v @ H @ v + np.abs(v).sum())
        if value < best_value:
            best, best_value = v, value
    return best


def l1_logistic(X: np.ndarray, target: np.ndarray, weight: np.ndarray, C: float, start: np.ndarray | None = None,
                tolerance: float = 1e-11, max_iterations: int = 100) -> np.ndarray:
    """argmin_w ||w||_1 + C * sum_i weight_i * (softplus(x_i w) - target_i * x_i w): the objective liblinear
    minimises for an L1 logistic regression without intercept, with continuous targets in [0, 1] (the same as
    AlpacaEval's trick of duplicating each row as a 1 weighted p and a 0 weighted 1 - p).

    Proximal Newton (the method of liblinear's newGLMNET): the smooth part's quadratic model plus the L1 norm,
    minimised exactly (_quadratic_l1), then a backtracking line search on the full objective. Exact to the
    tolerance, where liblinear stops at a looser one (see tests/eval/test_winrate_parity.py).
    """
    k = X.shape[1]
    w = np.zeros(k) if start is None else np.array(start, dtype=np.float64)

    def objective(v: np.ndarray) -> float:
        eta = X @ v
        return float(np.abs(v).sum() + C * np.sum(weight * (np.logaddexp(0.0, eta) - target * eta)))

    current = objective(w)
    for _ in range(max_iterations):
        q = sigmoid(X @ w)
        gradient = C * (X.T @ (weight * (q - target)))
        hessian = C * ((X * (weight * q * (1 - q))[:, None]).T @ X) + 1e-12 * np.eye(k)
        d = _quadratic_l1(gradient - hessian @ w, hessian, np.sign(w)) - w
        decrease = float(gradient @ d + np.abs(w + d).sum() - np.abs(w).sum())
        if np.max(np.abs(d)) < tolerance or decrease >= 0:
            break
        step = 1.0
        while step > 1e-12:
            candidate = objective(w + step * d)
            if candidate <= current + 0.01 * step * decrease:
                break
            step /= 2
        w, current = w + step * d, candidate
        if np.max(np.abs(step * d)) < tolerance:
            break
    return w


def cv_folds(n: int, n_splits: int = N_SPLITS) -> np.ndarray:
    """Fold of each training row: GroupKFold with one row per group puts the groups, largest first and ties
    kept in reverse order, into the lightest fold, i.e. row i into fold (n - 1 - i) mod n_splits."""
    return (n - 1 - np.arange(n)) % n_splits


def weighted_log_loss(target: np.ndarray, predicted: np.ndarray, weight: np.ndarray) -> float:
    """AlpacaEval's cross-validation score (lower is better): mean over rows of weight * log loss."""
    q = np.clip(predicted, LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP)
    return float(-np.mean(weight * (target * np.log(q) + (1 - target) * np.log(1 - q))))


def cross_validated_fit(X: np.ndarray, target: np.ndarray, weight: np.ndarray,
                        n_splits: int = N_SPLITS) -> tuple[np.ndarray, float, list[float]]:
    """(coefficients refitted on all rows at the chosen C, that C, the summed fold losses per C)."""
    folds = cv_folds(len(target), n_splits)
    losses = []
    for C in CS:
        total = 0.0
        for fold in range(n_splits):
            train, test = folds != fold, folds == fold
            coef = l1_logistic(X[train], target[train], weight[train], C)
            total += weighted_log_loss(target[test], sigmoid(X[test] @ coef), weight[test])
        losses.append(total)
    best = float(CS[int(np.argmin(losses))])  # the first of equal scores, as scikit-learn's argmax
    return l1_logistic(X, target, weight, best), best, losses


@dataclass
class GLMProblem:
    """One model's GLM: training rows (the gamed rows first, then the model's rows, AlpacaEval's order, which
    fixes the folds), their prompt (-1 for gamed rows), and one prediction row per prompt at length difference 0."""

    formula: str
    columns: tuple[str, ...]
    X: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    row_prompt: np.ndarray
    X_predict: np.ndarray
    prompts: list[str]

    def fit(self, C: float | None = None, prompt_weight: np.ndarray | None = None, start: np.ndarray | None = None):
        """(coefficients, C): cross-validated when C is None. prompt_weight multiplies the weight of every row of
        a prompt (a bootstrap resample of prompts); gamed rows keep theirs. `start`: where the solver begins (the
        full data's coefficients, for a bootstrap refit; the optimum does not depend on it)."""
        weight = self.weight
        if prompt_weight is not None:
            own = self.row_prompt >= 0
            weight = weight.copy()
            weight[own] *= prompt_weight[self.row_prompt[own]]
        if C is None:
            coef, C, _ = cross_validated_fit(self.X, self.target, weight)
            return coef, C
        return l1_logistic(self.X, self.target, weight, C, start=start), C

    def predict(self, coef: np.ndarray) -> np.ndarray:
        """Per prompt: the predicted preference at zero length difference."""
        return sigmoid(self.X_predict @ coef)

    def resampled_lc(self, prompt_weight: np.ndarray, C: float, start: np.ndarray) -> float:
        """The LC (a fraction) on a bootstrap resample of prompts (prompt_weight[k] = how often prompt k was drawn):
        the GLM refitted with those weights at C, its predictions averaged with them."""
        coef = self.fit(C, prompt_weight, start=start)[0]
        return float(np.sum(prompt_weight * self.predict(coef)) / np.sum(prompt_weight))

    def bootstrap_standard_error(self, coef: np.ndarray, C: float, draws: int = BOOTSTRAP_DRAWS,
                                 seed: int = 0) -> float:
        """Standard deviation of the LC over `draws` resamples of the prompts (seeded), the GLM refitted on each
        at C: the uncertainty of the whole estimate, where AlpacaEval's standard error (of the per-prompt
        predictions) only measures how the predictions vary across prompts, and is 0 without a difficulty term."""
        rng = np.random.default_rng(seed)
        n = len(self.prompts)
        values = [self.resampled_lc(np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64), C, coef)
                  for _ in range(draws)]
        return float(np.std(values, ddof=1))


def glm_problem(judged: Judged, difficulty: dict[str, float] | None = None, gamed: GamedRows | None = None,
                std_delta_len: np.ndarray | None = None) -> GLMProblem:
    """The design of AlpacaEval's GLM for one model. Without difficulties the term is left out
    (length_controlled_minimal); without gamed rows there is no regularisation (length_controlled_noreg)."""
    prompts, index = judged.prompt_index()
    if std_delta_len is None:
        std_delta_len = standardised_length_difference(judged.model_length, judged.baseline_length)
    if gamed is not None and difficulty is None:
        raise ValueError("gamed rows need instruction difficulties")
    own = [np.tanh(std_delta_len)]
    predict = [np.zeros(len(prompts))]
    if difficulty is not None:
        per_prompt = np.array([difficulty[p] for p in prompts], dtype=np.float64)
        own.append(per_prompt[index])
        predict.append(per_prompt)
    own.append(np.ones(len(judged)))
    predict.append(np.ones(len(prompts)))
    X = np.stack(own, axis=1)
    target = np.asarray(judged.preference, dtype=np.float64)
    weight = np.ones(len(judged))
    row_prompt = index
    if gamed is not None:
        columns = [np.tanh(gamed.std_delta_len), gamed.difficulty, np.zeros(len(gamed.preference))]
        X = np.concatenate([np.stack(columns, axis=1), X])
        target = np.concatenate([gamed.preference, target])
        weight = np.concatenate([gamed.weight, weight])
        row_prompt = np.concatenate([np.full(len(gamed.preference), -1), index])
    formula = ("length_controlled_minimal" if difficulty is None else
               "length_controlled_v1" if gamed is not None else "length_controlled_noreg")
    return GLMProblem(formula, FORMULAS[formula], X, target, weight, row_prompt, np.stack(predict, axis=1), prompts)


def length_controlled(judged: Judged, difficulty: dict[str, float] | None = None,
                      gamed: GamedRows | None = None) -> dict:
    """The LC win rate (a fraction) with AlpacaEval's standard error (of the per-prompt predictions, which treats
    the fitted coefficients as known; without a difficulty term, where that is 0, a prompt bootstrap's, and
    `standard_error_kind` says which), the GLM's name, coefficients and C. `win_rate` is None, with a `reason`,
    when the model has fewer than MIN_PROMPTS_FOR_LC prompts or length differences that do not vary. A model
    judged against itself gets 0.5 by construction, as in AlpacaEval."""
    prompts, _ = judged.prompt_index()
    if judged.model == judged.baseline:
        return {"win_rate": 0.5, "standard_error": 0.0, "glm": None, "reason": "the baseline against itself"}
    if len(prompts) < MIN_PROMPTS_FOR_LC:
        return {"win_rate": None, "standard_error": None, "glm": None,
                "reason": f"{len(prompts)} prompt(s): the GLM needs at least {MIN_PROMPTS_FOR_LC} (its "
                          f"{N_SPLITS} cross-validation folds)"}
    std_delta_len = standardised_length_difference(judged.model_length, judged.baseline_length)
    if std_delta_len is None:
        return {"win_rate": None, "standard_error": None, "glm": None,
                "reason": "every answer differs from the baseline's by the same number of characters: length "
                          "cannot be separated from quality"}
    problem = glm_problem(judged, difficulty, gamed, std_delta_len)
    coef, C = problem.fit()
    predictions = problem.predict(coef)
    if difficulty is None:  # every prediction is the same: AlpacaEval's standard error would be 0
        error, kind = problem.bootstrap_standard_error(coef, C), f"prompt bootstrap ({BOOTSTRAP_DRAWS} draws)"
    else:
        error, kind = sem(predictions), "AlpacaEval's (standard error of the per-instruction predictions)"
    return {"win_rate": float(predictions.mean()), "standard_error": error, "standard_error_kind": kind,
            "glm": problem.formula, "coefficients": dict(zip(problem.columns, map(float, coef))), "C": C,
            "gamed_rows": 0 if gamed is None else int(len(gamed.preference))}


def gamed_rows(gamed: list[Judged], difficulty: dict[str, float],
               lam: float = LAMBDA) -> tuple[GamedRows | None, int]:
    """The gamed baselines' annotations as training rows (lengths standardised per gamed generator); rows whose
    instruction has no difficulty are left out and counted."""
    pref, sdl, diff, names, left_out = [], [], [], [], 0
    for judged in gamed:
        std = standardised_length_difference(judged.model_length, judged.baseline_length)
        keep = np.array([p in difficulty for p in judged.prompts], dtype=bool)
        left_out += int((~keep).sum())
        if std is None or not keep.any():
            continue
        pref.append(judged.preference[keep])
        sdl.append(std[keep])
        diff.append(np.array([difficulty[p] for p, k in zip(judged.prompts, keep) if k]))
        names.append(judged.model)
    if not names:
        return None, left_out
    preference = np.concatenate(pref)
    weight = np.full(preference.size, lam / len(names))
    return GamedRows(preference, np.concatenate(sdl), np.concatenate(diff), weight, names), left_out

"""Token selection from per-token scores, applied when batches are built (sweeping k never re-scores).

`SelectionArgs` declares the settings once; training and `tokensift show` both take them, and both fit the
selection on the same rows (the training split of the scored pairs). Each strategy is declared once, with
`@strategy` above its function (docs/contributing.md, "Add a selection strategy"):

- per_response (the paper's): the top floor(k_chosen * N) tokens of each chosen response by score, and the
  bottom floor(k_rejected * N) tokens of each rejected response. Ties go to the earlier token. The count is exact
  (k = 0.7 of N = 90 is 63, where float arithmetic gives 62.99999).
- global_threshold: one score threshold per side over the whole training split: chosen tokens scoring at or above
  the split's (1 - k_chosen) quantile of chosen scores, rejected tokens at or below the k_rejected quantile of
  rejected scores. Responses then keep more or fewer tokens depending on how much signal they carry.
- reward_mass: per response, the fewest tokens carrying `mass` of its reward: for chosen the highest positive
  scores until their sum reaches mass x (sum of positive scores); for rejected likewise with the negative
  scores. A response with no score of the right sign keeps its single best (chosen) / worst (rejected) token.

Every response keeps at least one token.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tokensift.config import option, suggest
from tokensift.errors import UserError
from tokensift.lazy import lazy_import

torch = lazy_import("torch")


@dataclass(frozen=True)
class Ranking:
    """One response's scores, ranked for its side: `signed` is larger for tokens better for the side (chosen:
    high scores; rejected: low scores), `order` lists token indices best first (ties: the earlier token)."""

    scores: np.ndarray
    signed: np.ndarray
    order: np.ndarray
    top: bool


@dataclass(frozen=True)
class Strategy:
    """A way to pick each response's tokens from their scores, declared once with `@strategy`.

    pick(ranking, k, fitted, selection) -> bool mask over the response's tokens; `k` is the side's share,
    `fitted` the side's value from `fit` (None without one), `selection` the Selection (for its other settings).
    fit(selection, chosen_scores, rejected_scores) -> (chosen value, rejected value), from the training split.
    """

    name: str
    pick: Callable[..., np.ndarray]
    summary: str
    fit: Callable | None = None


STRATEGIES: dict[str, Strategy] = {}


def strategy(name: str, summary: str, fit: Callable | None = None):
    """Declare the decorated `pick(ranking, k, fitted, selection)` as selection strategy `name`; `fit(selection,
    chosen_scores, rejected_scores)`, when given, fits its values on the training split (see Strategy)."""

    def declare(pick):
        if name in STRATEGIES:
            raise ValueError(f"selection strategy '{name}' is declared twice")
        if not isinstance(summary, str) or not summary.strip():
            raise ValueError(f"selection strategy '{name}': the summary (a line for the help) must be a non-empty "
                             "string")
        for what, function, arguments in (("pick", pick, "ranking, k, fitted, selection"),
                                          ("fit", fit, "selection, chosen_scores, rejected_scores")):
            if function is None and what == "fit":
                continue
            try:
                inspect.signature(function).bind(*arguments.split(", "))
            except (TypeError, ValueError):
                raise ValueError(f"selection strategy '{name}': {what} must be a function of ({arguments}), got "
                                 f"{getattr(function, '__name__', repr(function))}") from None
        STRATEGIES[name] = Strategy(name, pick, summary, fit)
        return pick

    return declare


def selected_count(k: float, n: int) -> int:
    """floor(k * n), at least 1, without float error (k * n is rounded to 6 decimals before the floor)."""
    return max(1, math.floor(round(k * n, 6)))


@strategy("per_response", "the top (chosen) / bottom (rejected) k of every response's tokens")
def per_response(ranking: Ranking, k: float, fitted, selection) -> np.ndarray:
    mask = np.zeros(len(ranking.scores), dtype=bool)
    mask[ranking.order[: selected_count(k, len(mask))]] = True
    return mask


def _quantile_thresholds(selection, chosen_scores, rejected_scores) -> tuple[float, float]:
    all_c = np.concatenate([s for s in chosen_scores if len(s)]) if chosen_scores else np.zeros(1)
    all_r = np.concatenate([s for s in rejected_scores if len(s)]) if rejected_scores else np.zeros(1)
    return float(np.quantile(all_c, 1 - selection.k_chosen)), float(np.quantile(all_r, selection.k_rejected))


@strategy("global_threshold", "one score threshold per side over the training split (its k quantile)",
          fit=_quantile_thresholds)
def global_threshold(ranking: Ranking, k: float, fitted, selection) -> np.ndarray:
    if fitted is None:
        raise RuntimeError("global_threshold selection needs fit() on the dataset's scores first")
    mask = ranking.scores >= fitted if ranking.top else ranking.scores <= fitted
    if not mask.any():
        mask[ranking.order[0]] = True
    return mask


@strategy("reward_mass", "the fewest tokens carrying reward_mass of each response's reward")
def reward_mass(ranking: Ranking, k: float, fitted, selection) -> np.ndarray:
    positive = np.clip(ranking.signed[ranking.order], 0, None)
    total = positive.sum()
    count = 1 if total <= 0 else int(np.searchsorted(np.cumsum(positive), selection.mass * total - 1e-12) + 1)
    mask = np.zeros(len(ranking.scores), dtype=bool)
    mask[ranking.order[:count]] = True
    return mask


@dataclass
class SelectionArgs:
    """Which tokens of each response a selection keeps: the settings shared by training and `tokensift show`."""

    k_chosen: float = option(0.3, "Share of each chosen response's tokens to train on (highest scores), in (0, 1].")
    k_rejected: float = option(0.3, "Share of each rejected response's tokens to train on (lowest scores), in (0, 1].")
    selection: str = option("per_response", "Token selection strategy. " + "; ".join(
        f"{name}: {strategy.summary}" for name, strategy in STRATEGIES.items()) + ".")
    reward_mass: float = option(0.8, "reward_mass strategy: keep the fewest tokens carrying this share of a response's reward.")

    def validate_selection(self) -> None:
        for name in ("k_chosen", "k_rejected", "reward_mass"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise UserError(f"{name} must lie in (0, 1] (a share of tokens), got {value}")
        if self.selection not in STRATEGIES:
            raise UserError(f"unknown selection '{self.selection}'; choose one of {', '.join(STRATEGIES)}"
                            f"{suggest(self.selection, STRATEGIES)}")

    def fitted_selection(self, chosen_scores: list[np.ndarray], rejected_scores: list[np.ndarray]) -> "Selection":
        """The strategy with these settings, fitted on the given responses' scores (the training split)."""
        return Selection(self.selection, self.k_chosen, self.k_rejected, self.reward_mass).fit(chosen_scores,
                                                                                                rejected_scores)


@dataclass
class Selection:
    """A strategy with its settings, and the values it fitted on the training split (global_threshold's)."""

    strategy: str = "per_response"
    k_chosen: float = 0.3
    k_rejected: float = 0.3
    mass: float = 0.8
    chosen_threshold: float | None = None  # the strategy's fitted values, set by `fit`
    rejected_threshold: float | None = None

    def fit(self, chosen_scores: list[np.ndarray], rejected_scores: list[np.ndarray]) -> "Selection":
        """Fit the strategy on the training split's scores (a no-op for strategies without a fit)."""
        fit = STRATEGIES[self.strategy].fit
        if fit is not None:
            self.chosen_threshold, self.rejected_threshold = fit(self, chosen_scores, rejected_scores)
        return self

    def chosen(self, scores: np.ndarray) -> np.ndarray:
        return self._pick(np.asarray(scores, dtype=np.float64), self.k_chosen, self.chosen_threshold, top=True)

    def rejected(self, scores: np.ndarray) -> np.ndarray:
        return self._pick(np.asarray(scores, dtype=np.float64), self.k_rejected, self.rejected_threshold, top=False)

    def _pick(self, scores: np.ndarray, k: float, fitted: float | None, top: bool) -> np.ndarray:
        """Boolean mask over the response's tokens."""
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown selection strategy {self.strategy}")
        if len(scores) == 0:
            return np.zeros(0, dtype=bool)
        signed = scores if top else -scores  # rank so that "best for this side" comes first
        ranking = Ranking(scores, signed, np.argsort(-signed, kind="stable"), top)
        return STRATEGIES[self.strategy].pick(ranking, k, fitted, self)


def selection_masks(selection: Selection, chosen_scores, rejected_scores, width: int) -> torch.Tensor:
    """[2B, width] bool: chosen masks for rows 0..B-1, rejected masks for rows B..2B-1 (a PairBatch's layout)."""
    rows = [selection.chosen(s) for s in chosen_scores] + [selection.rejected(s) for s in rejected_scores]
    out = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, mask in enumerate(rows):
        out[i, : len(mask)] = torch.from_numpy(mask)
    return out

"""Key-token selection from stored token scores, applied when batches are built (sweeping k never re-scores).

Strategies (every response keeps at least one token):
- per_response (the paper's): the top floor(k_chosen * N) tokens of each chosen response by score, and the
  bottom floor(k_rejected * N) tokens of each rejected response. Ties go to the earlier token. The count is exact
  (k = 0.7 of N = 90 is 63, where float arithmetic gives 62.99999).
- global_threshold: one score threshold per side over the whole dataset: chosen tokens scoring at or above
  the dataset's (1 - k_chosen) quantile of chosen scores, rejected tokens at or below the k_rejected quantile
  of rejected scores. Responses then keep more or fewer tokens depending on how much signal they carry.
- reward_mass: per response, the fewest tokens carrying `mass` of its reward: for chosen the highest positive
  scores until their sum reaches mass x (sum of positive scores); for rejected likewise with the negative
  scores. A response with no score of the right sign keeps its single best (chosen) / worst (rejected) token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def selected_count(k: float, n: int) -> int:
    """floor(k * n), at least 1, without float error (k * n is rounded to 6 decimals before the floor)."""
    return max(1, math.floor(round(k * n, 6)))


@dataclass
class Selection:
    strategy: str = "per_response"
    k_chosen: float = 0.3
    k_rejected: float = 0.3
    mass: float = 0.8
    chosen_threshold: float | None = None  # global_threshold, set by `fit`
    rejected_threshold: float | None = None

    def fit(self, chosen_scores: list[np.ndarray], rejected_scores: list[np.ndarray]) -> "Selection":
        """Compute the dataset-wide thresholds of the global strategy (a no-op for the others)."""
        if self.strategy == "global_threshold":
            all_c = np.concatenate([s for s in chosen_scores if len(s)]) if chosen_scores else np.zeros(1)
            all_r = np.concatenate([s for s in rejected_scores if len(s)]) if rejected_scores else np.zeros(1)
            self.chosen_threshold = float(np.quantile(all_c, 1 - self.k_chosen))
            self.rejected_threshold = float(np.quantile(all_r, self.k_rejected))
        return self

    def chosen(self, scores: np.ndarray) -> np.ndarray:
        return self._pick(np.asarray(scores, dtype=np.float64), self.k_chosen, self.chosen_threshold, top=True)

    def rejected(self, scores: np.ndarray) -> np.ndarray:
        return self._pick(np.asarray(scores, dtype=np.float64), self.k_rejected, self.rejected_threshold, top=False)

    def _pick(self, scores: np.ndarray, k: float, threshold: float | None, top: bool) -> np.ndarray:
        """Boolean mask over the response's tokens."""
        n = len(scores)
        mask = np.zeros(n, dtype=bool)
        if n == 0:
            return mask
        signed = scores if top else -scores  # rank so that "best for this side" comes first
        order = np.argsort(-signed, kind="stable")
        if self.strategy == "per_response":
            mask[order[: selected_count(k, n)]] = True
        elif self.strategy == "global_threshold":
            if threshold is None:
                raise RuntimeError("global_threshold selection needs fit() on the dataset's scores first")
            mask = scores >= threshold if top else scores <= threshold
            if not mask.any():
                mask[order[0]] = True
        elif self.strategy == "reward_mass":
            positive = np.clip(signed[order], 0, None)
            total = positive.sum()
            if total <= 0:
                count = 1
            else:
                count = int(np.searchsorted(np.cumsum(positive), self.mass * total - 1e-12) + 1)
            mask[order[:count]] = True
        else:
            raise ValueError(f"unknown selection strategy {self.strategy}")
        return mask


def selection_masks(selection: Selection, chosen_scores, rejected_scores, width: int) -> torch.Tensor:
    """[2B, width] bool: chosen masks for rows 0..B-1, rejected masks for rows B..2B-1 (a PairBatch's layout)."""
    rows = [selection.chosen(s) for s in chosen_scores] + [selection.rejected(s) for s in rejected_scores]
    out = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, mask in enumerate(rows):
        out[i, : len(mask)] = torch.from_numpy(mask)
    return out

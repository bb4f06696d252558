"""Token selectors: which tokens of each response a loss trains on (a mask), or how much each counts (weights).

One contract (docs/selectors.md): a selector turns per-token information into a `[2B, R]` mask or weights in a
PairBatch's layout (chosen rows, then rejected rows; label space), at batch time. It is fitted on the training
split only (`fit`). Any token-level loss consumes the result: SePO's and SimPO's means, DPO's sums (selected-token
DPO: policy and reference log-probs summed over the same tokens), weighted sums for weights. Each selector is
declared once with `@selector`, saying what it reads:

- scores:    the oracle's stored token rewards (`tokensift score`), offline;
- policy:    the policy's own log-probs of every response token of the batch, from the training forward itself
             (online: no extra pass, but the LM head runs on every response token);
- reference: the reference's per-token log-probs, from the reference cache (no extra pass either).

Selectors: oracle (SePO), random (the control), confidence (ConfPO), reference_gap (Selective-DPO), soft
(TIS-DPO-style weights). docs/contributing.md says how to add one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tokensift.selection import SelectionArgs, selected_count
from tokensift.lazy import lazy_import

torch = lazy_import("torch")


@dataclass(frozen=True)
class SelectorSpec:
    """A selector's declaration: its factory, what it reads, what it returns, and the paper it follows."""

    name: str
    build: Callable[..., "Selector"]
    reads: frozenset
    output: str  # "mask" or "weights"
    summary: str
    paper: str
    settings: tuple  # the TrainConfig settings it reads (any other selector setting must keep its default)


SELECTORS: dict[str, SelectorSpec] = {}


SELECTION_ARGS = tuple(f.name for f in dataclasses.fields(SelectionArgs))  # what the oracle's strategies read


def selector(name: str, summary: str, paper: str, reads: tuple[str, ...] = (), output: str = "mask",
             settings: tuple[str, ...] = ()):
    """Declare the decorated class (or factory) as selector `name`.

    reads: what it reads besides the batch ("scores", "policy", "reference"); output: "mask" or "weights";
    settings: the TrainConfig fields it reads (add new ones to TrainConfig with their help text).
    """

    def declare(build):
        if name in SELECTORS:
            raise ValueError(f"selector '{name}' is declared twice")
        if output not in ("mask", "weights") or not set(reads) <= {"scores", "policy", "reference"}:
            raise ValueError(f"selector '{name}': output is mask or weights; reads is scores, policy, reference")
        if not isinstance(settings, (tuple, list)) or not all(isinstance(s, str) for s in settings):
            raise ValueError(f"selector '{name}': settings is a tuple of TrainConfig setting names, got {settings!r}")
        SELECTORS[name] = SelectorSpec(name, build, frozenset(reads), output, summary, paper, tuple(settings))
        return build

    return declare


class Selector:
    """Base of the selectors. `scores`: row -> (chosen scores, rejected scores) when the selector reads them.

    __call__(batch, policy_logps=None) -> [2B, R] bool mask (or float weights), zero outside each response.
    `online` selectors are called after the training forward with the policy's detached log-probs `[2B, R]`;
    the others when the batch is built. Every response keeps at least one token.
    """

    online = False
    reads: frozenset = frozenset()

    def __init__(self, args, scores: dict | None = None):
        self.args = args
        self.scores = scores

    def fit(self, train_rows: list[int]) -> "Selector":
        return self

    def _rows(self, batch):
        """(B, per-row [(dataset row, side)] in the batch's [2B] layout)."""
        rows = batch.rows.tolist()
        return len(rows), [(r, "chosen") for r in rows] + [(r, "rejected") for r in rows]

    def _side_scores(self, row: int, side: str) -> np.ndarray:
        return self.scores[row][0 if side == "chosen" else 1]

    def _from_masks(self, batch, masks: list[np.ndarray], dtype=None) -> torch.Tensor:
        dtype = torch.bool if dtype is None else dtype
        out = torch.zeros(batch.response_mask.shape, dtype=dtype)
        for i, mask in enumerate(masks):
            out[i, : len(mask)] = torch.as_tensor(mask, dtype=dtype)
        return out.to(batch.response_mask.device)


@selector("oracle", "the oracle's key tokens: top-k of chosen, bottom-k of rejected by stored token reward",
          "SePO, Yang et al. 2024 (arXiv 2408.13518)", reads=("scores",), settings=SELECTION_ARGS)
class OracleSelector(Selector):
    """SePO's selection: a Selection strategy (selection.py) on the stored scores, fitted on the training split."""

    reads = frozenset({"scores"})

    def fit(self, train_rows: list[int]) -> "OracleSelector":
        self.selection = self.args.fitted_selection([self.scores[r][0] for r in train_rows],
                                                    [self.scores[r][1] for r in train_rows])
        return self

    def __call__(self, batch, policy_logps=None) -> torch.Tensor:
        _, keys = self._rows(batch)
        pick = {"chosen": self.selection.chosen, "rejected": self.selection.rejected}
        return self._from_masks(batch, [pick[side](self._side_scores(row, side)) for row, side in keys])


@selector("random", "k of each response's tokens drawn at random (seeded per pair): the control",
          "the control SePO's claim needs (same k, same counts as the oracle's per_response)",
          settings=("k_chosen", "k_rejected"))
class RandomSelector(Selector):
    """floor(k * n) tokens of each response, uniformly at random, seeded by (seed, row, side): the same tokens
    every epoch and every run with the same seed."""

    def __call__(self, batch, policy_logps=None) -> torch.Tensor:
        lengths = batch.response_mask.sum(dim=1).tolist()
        _, keys = self._rows(batch)
        masks = []
        for (row, side), n in zip(keys, lengths):
            k = self.args.k_chosen if side == "chosen" else self.args.k_rejected
            rng = np.random.default_rng([self.args.seed, row, 0 if side == "chosen" else 1])
            mask = np.zeros(int(n), dtype=bool)
            mask[rng.choice(int(n), size=selected_count(k, int(n)), replace=False)] = True
            masks.append(mask)
        return self._from_masks(batch, masks)


@selector("confidence", "tokens the policy is least sure of: probability below the response's mean (online)",
          "ConfPO, Yoon et al., ICML 2025 (arXiv 2506.08712)", reads=("policy",))
class ConfidenceSelector(Selector):
    """ConfPO's rule on both responses: token i is kept when p_theta(y_i) < mean_j p_theta(y_j) over its response
    (probabilities, not log-probs), computed from the policy being trained, in the forward it already runs."""

    online = True
    reads = frozenset({"policy"})

    def __call__(self, batch, policy_logps=None) -> torch.Tensor:
        mask = batch.response_mask
        probs = torch.where(mask, policy_logps.float().exp(), torch.zeros_like(policy_logps, dtype=torch.float32))
        mean = probs.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
        keep = mask & (probs < mean)
        return _at_least_one(keep, torch.where(mask, -probs, torch.full_like(probs, -math.inf)))


@selector("reference_gap", "tokens where policy and reference differ most for the side (online, per-response "
          "quantile)", "Selective-DPO, Dong et al. 2025 (arXiv 2507.07725)", reads=("policy", "reference"),
          settings=("gap_quantile",))
class ReferenceGapSelector(Selector):
    """Selective-DPO's rule: score chosen tokens by log pi_ref - log pi_theta (the policy is behind the reference
    on a preferred token) and rejected tokens by log pi_theta - log pi_ref, and keep each response's tokens at or
    above its `gap_quantile` quantile (0.6: the top 40%)."""

    online = True
    reads = frozenset({"policy", "reference"})

    def __call__(self, batch, policy_logps=None) -> torch.Tensor:
        mask, ref = batch.response_mask, batch.ref_token_logps
        gap = (ref.float() - policy_logps.float())
        half = mask.shape[0] // 2
        gap[half:] = -gap[half:]
        keep = torch.zeros_like(mask)
        for i in range(mask.shape[0]):
            values = gap[i][mask[i]]
            if values.numel():
                keep[i, : values.numel()] = values >= torch.quantile(values, self.args.gap_quantile)
        return keep & mask


@selector("soft", "weights from the oracle's token rewards: clip(exp(mu * reward), min, max), signed per side",
          "TIS-DPO, Liu et al., ICLR 2025 (arXiv 2410.04350)", reads=("scores",), output="weights",
          settings=("weight_scale", "weight_min", "weight_max"))
class SoftWeightSelector(Selector):
    """TIS-DPO's importance weights with the oracle's token reward as the token's estimated reward:
    w_i = clip(exp(mu * s_i), min, max) on chosen tokens and clip(exp(-mu * s_i), min, max) on rejected ones, so a
    token that carries the preference counts more, one that contradicts it less, and no token vanishes."""

    reads = frozenset({"scores"})

    def __call__(self, batch, policy_logps=None) -> torch.Tensor:
        a = self.args
        _, keys = self._rows(batch)
        weights = []
        for row, side in keys:
            sign = 1.0 if side == "chosen" else -1.0
            weights.append(np.clip(np.exp(a.weight_scale * sign * self._side_scores(row, side)), a.weight_min,
                                   a.weight_max))
        return self._from_masks(batch, weights, dtype=torch.float32)


def _at_least_one(keep: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    """Rows that kept nothing keep their most preferred token (argmax of `preference`)."""
    empty = ~keep.any(dim=-1)
    if bool(empty.any()):
        keep = keep.clone()
        rows = empty.nonzero().flatten()
        keep[rows, preference[rows].argmax(dim=-1)] = True
    return keep


def build_selector(name: str, args, scores: dict | None, train_rows: list[int]) -> Selector:
    """The selector `name`, with its settings (`args`: a TrainConfig), fitted on the training rows."""
    return SELECTORS[name].build(args, scores).fit(train_rows)


"""Length buckets for preference accuracy, and the length-bias rates.

Why: a preference metric that only looks right on average can hide a length shortcut. If the data's chosen
response is usually the longer one, a model that merely prefers long answers scores well. Accuracy split by
the chosen-minus-rejected length difference, by total length, and the rate at which the model's reward
favours the longer response expose that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokensift.errors import UserError


@dataclass
class Bucket:
    """Integers from `low` to `high`, both inclusive; None means unbounded on that side."""

    label: str
    low: int | None
    high: int | None

    def mask(self, values: np.ndarray) -> np.ndarray:
        keep = np.ones(values.shape, dtype=bool)
        if self.low is not None:
            keep &= values >= self.low
        if self.high is not None:
            keep &= values <= self.high
        return keep


def parse_edges(text: str, name: str) -> list[int]:
    """'4,16,64' -> [4, 16, 64]: positive, strictly increasing whole numbers of tokens."""
    try:
        edges = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{name} must be a comma list of whole numbers of tokens, e.g. 4,16,64; got {text!r}") from None
    if not edges or any(e < 1 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise UserError(f"{name} must be positive and strictly increasing, e.g. 4,16,64; got {text!r}")
    return edges


def _signed(value: int) -> str:
    return f"+{value}" if value > 0 else str(value)


def _span(low: int, high: int) -> str:
    return _signed(low) if low == high else f"{_signed(low)}..{_signed(high)}"


def difference_buckets(edges: list[int]) -> list[Bucket]:
    """Symmetric buckets of (chosen - rejected) length: edges [4, 16] give
    <-16, -16..-5, -4..-1, 0, +1..+4, +5..+16, >+16."""
    positive = []
    low = 1
    for edge in edges:
        positive.append((low, edge))
        low = edge + 1
    buckets = [Bucket(f"<-{edges[-1]}", None, -edges[-1] - 1)]
    buckets += [Bucket(_span(-high, -low), -high, -low) for low, high in reversed(positive)]
    buckets.append(Bucket("0", 0, 0))
    buckets += [Bucket(_span(low, high), low, high) for low, high in positive]
    buckets.append(Bucket(f">+{edges[-1]}", edges[-1] + 1, None))
    return buckets


def total_buckets(edges: list[int]) -> list[Bucket]:
    """Buckets of a non-negative length: edges [64, 256] give <=64, 65..256, >256."""
    buckets = [Bucket(f"<={edges[0]}", None, edges[0])]
    buckets += [Bucket(f"{a + 1}..{b}", a + 1, b) for a, b in zip(edges, edges[1:])]
    buckets.append(Bucket(f">{edges[-1]}", edges[-1] + 1, None))
    return buckets


def breakdown(values: np.ndarray, buckets: list[Bucket], margins: dict[str, np.ndarray]) -> list[dict]:
    """Per bucket: how many pairs, and for every margin kind the accuracy (margin > 0) and mean margin.

    Empty buckets stay in the list (count 0, accuracy None), so tables from different runs line up.
    """
    values = np.asarray(values)
    rows = []
    for bucket in buckets:
        keep = bucket.mask(values)
        count = int(keep.sum())
        row = {"bucket": bucket.label, "low": bucket.low, "high": bucket.high, "pairs": count}
        for kind, margin in margins.items():
            chosen = margin[keep]
            row[kind] = {"accuracy": float(np.mean(chosen > 0)) if count else None,
                         "mean_margin": float(np.mean(chosen)) if count else None}
        rows.append(row)
    return rows


def length_bias(chosen_lengths: np.ndarray, rejected_lengths: np.ndarray, margins: dict[str, np.ndarray]) -> dict:
    """How often the data's chosen response is the longer one, and how often each margin favours the longer.

    Only pairs of unequal length count. "Favours the longer" means the longer response gets the strictly
    higher reward: margin > 0 when the chosen one is longer, margin < 0 when the rejected one is.
    """
    chosen_lengths = np.asarray(chosen_lengths)
    rejected_lengths = np.asarray(rejected_lengths)
    unequal = chosen_lengths != rejected_lengths
    chosen_longer = chosen_lengths > rejected_lengths
    n = int(unequal.sum())
    out = {
        "pairs_with_unequal_length": n,
        "pairs_with_equal_length": int((~unequal).sum()),
        "chosen_is_longer": float(chosen_longer[unequal].mean()) if n else None,
        "mean_length_difference": float(np.mean(chosen_lengths - rejected_lengths)) if chosen_lengths.size else None,
        "prefers_longer": {},
    }
    for kind, margin in margins.items():
        longer_wins = np.where(chosen_longer, margin > 0, margin < 0)
        out["prefers_longer"][kind] = float(longer_wins[unequal].mean()) if n else None
    return out

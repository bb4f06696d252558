"""Reward against KL: a method's gold reward at a given KL to the start model, read off its training runs.

Each training run gives a trajectory: (KL to the start model, mean gold reward, its standard error) at the start
and at each evaluated checkpoint. A method is traced by several runs (a learning-rate or beta sweep). Its reward at
KL = t is read off every run whose trajectory reaches t, by linear interpolation between the two checkpoints
around the first crossing (never extrapolated), and averaged over those runs; the standard error carries the
checkpoints' sampling errors through the interpolation weights (the KL estimates' own noise is not included).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    kl: float
    reward: float
    reward_se: float
    step: int = 0


def reward_at_kl(trajectory: list[Point], target: float) -> tuple[float, float] | None:
    """(reward, standard error) where the run, in step order, first reaches KL `target`; None if it never does."""
    points = sorted(trajectory, key=lambda p: p.step)
    for a, b in itertools.pairwise(points):
        low, high = min(a.kl, b.kl), max(a.kl, b.kl)
        if low <= target <= high and high > low:
            w = (target - a.kl) / (b.kl - a.kl)
            return ((1 - w) * a.reward + w * b.reward,
                    math.sqrt(((1 - w) * a.reward_se) ** 2 + (w * b.reward_se) ** 2))
    return None


def method_at_kl(runs: dict[str, list[Point]], target: float) -> dict:
    """A method's reward at KL `target`: the mean over its runs that reach it, with the standard error of that mean.

    Returns {"reward", "se", "runs" (how many reached it), "per_run": {name: [reward, se]}}; reward None if none did.
    """
    per_run = {name: found for name, traj in runs.items() if (found := reward_at_kl(traj, target)) is not None}
    if not per_run:
        return {"reward": None, "se": None, "runs": 0, "per_run": {}}
    n = len(per_run)
    return {"reward": sum(v for v, _ in per_run.values()) / n,
            "se": math.sqrt(sum(se ** 2 for _, se in per_run.values())) / n,
            "runs": n, "per_run": {k: list(v) for k, v in per_run.items()}}


def difference(a: dict, b: dict) -> dict | None:
    """a - b of two method_at_kl results, its standard error (independent samples) and z = difference / se."""
    if a["reward"] is None or b["reward"] is None:
        return None
    diff, se = a["reward"] - b["reward"], math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    return {"difference": diff, "se": se, "z": diff / se if se > 0 else math.inf}

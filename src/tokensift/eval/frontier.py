"""Reward against KL: a method's gold reward at a given KL to the start model, read off its training runs.

Each training run gives a trajectory: (KL to the start model, mean gold reward, its standard error) at the start
and at each evaluated checkpoint. A method is traced by several runs (a learning-rate or beta sweep). Its reward at
KL = t is read off every run whose trajectory reaches t, by linear interpolation between the two checkpoints
around the first crossing (never extrapolated), and averaged over those runs; the standard error carries the
checkpoints' sampling errors through the interpolation weights (the KL estimates' own noise is not included).

A straight line between checkpoints is only a reading where the checkpoints are close: a fast run can jump from
KL 0.3 to 4.7 between two evaluations, and the line between them says nothing about KL 1. So a run is read at
KL = t only when the two checkpoints around the crossing lie within a factor `max_ratio` of t (default 2: between
t/2 and 2t; the start, KL 0, always counts as a lower end). Runs that cross t between looser checkpoints are
listed as `loose`, not read.
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


def crossing(trajectory: list[Point], target: float) -> tuple[Point, Point] | None:
    """The two checkpoints, in step order, around the run's first crossing of KL `target`; None if it never does."""
    points = sorted(trajectory, key=lambda p: p.step)
    for a, b in itertools.pairwise(points):
        if min(a.kl, b.kl) <= target <= max(a.kl, b.kl) and a.kl != b.kl:
            return a, b
    return None


def tight(a: Point, b: Point, target: float, max_ratio: float | None) -> bool:
    """Whether checkpoints a and b are close enough to `target` for a straight line between them to read it."""
    if max_ratio is None:
        return True
    low, high = min(a.kl, b.kl), max(a.kl, b.kl)
    return high <= target * max_ratio and (low == 0 or low >= target / max_ratio)


def reward_at_kl(trajectory: list[Point], target: float, max_ratio: float | None = 2.0) -> tuple[float, float] | None:
    """(reward, standard error) where the run first reaches KL `target`; None if it never does, or if it crosses
    between checkpoints farther than `max_ratio` from the target (None: any distance)."""
    found = crossing(trajectory, target)
    if found is None or not tight(*found, target, max_ratio):
        return None
    return interpolate(*found, target)


def interpolate(a: Point, b: Point, target: float) -> tuple[float, float]:
    """(reward, standard error) on the straight line from checkpoint a to b, at KL `target`."""
    w = (target - a.kl) / (b.kl - a.kl)
    return ((1 - w) * a.reward + w * b.reward, math.sqrt(((1 - w) * a.reward_se) ** 2 + (w * b.reward_se) ** 2))


def method_at_kl(runs: dict[str, list[Point]], target: float, max_ratio: float | None = 2.0) -> dict:
    """A method's reward at KL `target`: the mean over its runs that reach it between tight checkpoints, with the
    standard error of that mean.

    Returns {"reward", "se", "runs" (how many were read), "per_run": {name: [reward, se]}, "loose": {name: [kl
    before, kl after]} (runs that cross between looser checkpoints)}; reward None if no run was read.
    """
    per_run, loose = {}, {}
    for name, trajectory in runs.items():
        found = crossing(trajectory, target)
        if found is None:
            continue
        if tight(*found, target, max_ratio):
            per_run[name] = interpolate(*found, target)
        else:
            loose[name] = [found[0].kl, found[1].kl]
    if not per_run:
        return {"reward": None, "se": None, "runs": 0, "per_run": {}, "loose": loose}
    n = len(per_run)
    return {"reward": sum(v for v, _ in per_run.values()) / n,
            "se": math.sqrt(sum(se ** 2 for _, se in per_run.values())) / n,
            "runs": n, "per_run": {k: list(v) for k, v in per_run.items()}, "loose": loose}


def difference(a: dict, b: dict) -> dict | None:
    """a - b of two method_at_kl results, its standard error (independent samples) and z = difference / se."""
    if a["reward"] is None or b["reward"] is None:
        return None
    diff, se = a["reward"] - b["reward"], math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    return {"difference": diff, "se": se, "z": diff / se if se > 0 else math.inf}

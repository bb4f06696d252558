"""Reward at a given KL, read off training trajectories by interpolation: hand-computed values."""

import math

import pytest

from tokensift.eval.frontier import Point, difference, method_at_kl, reward_at_kl

RUN = [Point(0.0, 0.30, 0.02, 0), Point(0.5, 0.40, 0.03, 10), Point(1.5, 0.60, 0.04, 20), Point(3.0, 0.70, 0.04, 30)]


def test_interpolates_between_the_checkpoints_around_the_first_crossing():
    value, se = reward_at_kl(RUN, 1.0)
    # halfway between (0.5, 0.40) and (1.5, 0.60): 0.50; se = sqrt((0.5 * 0.03)^2 + (0.5 * 0.04)^2) = 0.025
    assert value == pytest.approx(0.50) and se == pytest.approx(0.025)
    value, se = reward_at_kl(RUN, 2.0)
    # w = (2.0 - 1.5) / 1.5 = 1/3: 0.60 + (0.70 - 0.60) / 3
    assert value == pytest.approx(0.60 + 0.10 / 3)
    assert se == pytest.approx(math.sqrt((2 / 3 * 0.04) ** 2 + (1 / 3 * 0.04) ** 2))
    assert reward_at_kl(RUN, 4.0) is None  # never reached: no extrapolation
    # a run whose KL goes back down is read at its first crossing, in step order
    wobbly = [Point(0.0, 0.3, 0.0, 0), Point(2.0, 0.5, 0.0, 10), Point(1.0, 0.9, 0.0, 20)]
    assert reward_at_kl(wobbly, 1.0)[0] == pytest.approx(0.4)


def test_a_method_averages_the_runs_that_reach_the_kl():
    other = [Point(0.0, 0.30, 0.02, 0), Point(2.0, 0.70, 0.02, 10)]
    short = [Point(0.0, 0.30, 0.02, 0), Point(0.4, 0.35, 0.02, 10)]
    result = method_at_kl({"lr1": RUN, "lr2": other, "lr3": short}, 1.0)
    # lr1: 0.50 (se 0.025); lr2: 0.50 (se sqrt(0.01^2 + 0.01^2)); lr3 never reaches 1.0
    assert result["runs"] == 2 and result["reward"] == pytest.approx(0.50)
    assert result["se"] == pytest.approx(math.sqrt(0.025 ** 2 + 2 * 0.01 ** 2) / 2)
    assert method_at_kl({"lr3": short}, 1.0)["reward"] is None
    gap = difference(result, {"reward": 0.40, "se": 0.03})
    assert gap["difference"] == pytest.approx(0.10)
    assert gap["z"] == pytest.approx(0.10 / math.sqrt(result["se"] ** 2 + 0.03 ** 2))


def test_a_crossing_between_distant_checkpoints_is_not_read():
    # a fast run: from KL 0.3 straight to 4.7 between two evaluations
    fast = [Point(0.0, 0.30, 0.02, 0), Point(0.3, 0.35, 0.02, 10), Point(4.7, 0.90, 0.02, 20)]
    assert reward_at_kl(fast, 1.0) is None  # 4.7 > 2 x 1.0
    # with no bound the straight line reads it: w = 0.7 / 4.4
    value, _ = reward_at_kl(fast, 1.0, max_ratio=None)
    assert value == pytest.approx(0.35 + 0.7 / 4.4 * 0.55)
    assert reward_at_kl(fast, 0.2)[0] == pytest.approx(0.30 + 0.2 / 0.3 * 0.05)  # [0, 0.3]: the start counts
    assert reward_at_kl(fast, 3.0) is None  # 0.3 < 3.0 / 2
    assert reward_at_kl(fast, 3.0, max_ratio=10) is not None
    result = method_at_kl({"fast": fast, "slow": RUN}, 1.0)
    assert result["runs"] == 1 and result["reward"] == pytest.approx(0.50)
    assert result["loose"] == {"fast": [0.3, 4.7]}
    assert method_at_kl({"fast": fast}, 1.0) == {"reward": None, "se": None, "runs": 0, "per_run": {},
                                                 "loose": {"fast": [0.3, 4.7]}}

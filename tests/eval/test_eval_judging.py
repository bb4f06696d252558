"""Win rates and mean scores from judges on hand-made answers, where every expected value is exact."""

from __future__ import annotations

import pytest

from tokensift.eval.judging import is_scoring_judge, judge_answers
from tokensift.judges.cache import CachedJudge
from tokensift.judges import CallableJudge, Judge, Verdict

PROMPTS = [[{"role": "user", "content": "first question"}], [{"role": "user", "content": "second question"}]]
SCORES = {"good good": 2.0, "bad": -1.0, "good": 1.0, "fine": 0.5, "great": 3.0, "meh": 0.0}
ANSWERS = [["good good", "bad"], ["fine", "great"]]
REFERENCES = ["good", "fine"]
OPPONENT = [["meh", "bad"], ["good", "great"]]


def lookup(prompt, response):
    return SCORES[response]


def test_scoring_judge_win_rates_and_scores_are_exact():
    judge = CallableJudge(lookup, name="lookup")
    result = judge_answers(judge, PROMPTS, ANSWERS, REFERENCES, OPPONENT)
    assert result["kind"] == "scoring"
    # vs references: 2>1 win, -1<1 loss, 0.5=0.5 tie, 3>0.5 win
    vs_reference = result["vs_reference"]
    assert vs_reference["win_rate"] == 0.625
    assert (vs_reference["wins"], vs_reference["ties"], vs_reference["losses"]) == (2, 1, 1)
    assert result["items"]["vs_reference_outcome"] == [1.0, 0.0, 0.5, 1.0]
    # vs opponent, sample j against sample j: 2>0 win, -1=-1 tie, 0.5<1 loss, 3=3 tie
    assert result["vs_opponent"]["win_rate"] == 0.5
    assert result["mean_score"]["policy"]["mean"] == pytest.approx((2 - 1 + 0.5 + 3) / 4)
    assert result["mean_score"]["reference_answers"]["mean"] == pytest.approx((1 + 0.5) / 2)  # once per prompt
    assert result["mean_score"]["opponent"]["mean"] == pytest.approx((0 - 1 + 1 + 3) / 4)
    assert "win_rate" in vs_reference["length_controlled"]


def test_tie_tolerance_widens_ties(tmp_path):
    judge = CachedJudge(CallableJudge(lookup, name="lookup"), tmp_path / "cache.sqlite")
    assert is_scoring_judge(judge)
    result = judge_answers(judge, PROMPTS, ANSWERS, REFERENCES, tie_tolerance=1.0)
    # differences 1, -2, 0, 2.5: |1| <= 1 is now a tie
    assert result["items"]["vs_reference_outcome"] == [0.5, 0.0, 0.5, 1.0]
    assert result["vs_reference"]["win_rate"] == 0.5
    judge.close()


class TableJudge(Judge):
    """A pairwise judge answering from a table of (first, second) -> p_first."""

    name = "table"

    def __init__(self, table):
        self.table = table
        self.asked = []

    def compare(self, prompt, first, second):
        self.asked.append((prompt[0]["content"], first, second))
        return Verdict(self.table[(first, second)])


def test_pairwise_judge_win_rate_is_exact():
    judge = TableJudge({("good good", "good"): 0.9, ("bad", "good"): 0.2, ("fine", "fine"): 0.5,
                        ("great", "fine"): 0.55})
    assert not is_scoring_judge(judge)
    result = judge_answers(judge, PROMPTS, ANSWERS, REFERENCES, tie_tolerance=0.1)
    assert result["kind"] == "pairwise" and "mean_score" not in result
    # 0.9 win, 0.2 loss, 0.5 tie, 0.55 within 0.1 of 0.5: tie
    assert result["vs_reference"]["win_rate"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert result["vs_reference"]["mean_p_first"] == pytest.approx((0.9 + 0.2 + 0.5 + 0.55) / 4)
    # the policy's answer is always the first response, asked with the right prompt
    assert judge.asked[0] == ("first question", "good good", "good")
    assert judge.asked[3] == ("second question", "great", "fine")


def test_opponent_answers_must_match_in_shape():
    with pytest.raises(ValueError):
        judge_answers(CallableJudge(lookup, name="lookup"), PROMPTS, ANSWERS, opponent_answers=[["meh"], ["good"]])

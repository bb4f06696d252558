"""Pair building from the prior ordering, judge flags, human decisions and the unresolved policy (spec §3.4-3.5).

Hand-made candidates and a judge that answers from a table, so every expected outcome is written down here.
"""

from __future__ import annotations

import json

import pytest

from tokensift.errors import DataError, UserError
from tokensift.tso.config import HUMAN, parse_generators, prior_ranks
from tokensift.tso.files import write_table
from tokensift.judges import Verdict
from tokensift.tso.matrix import Candidate, assemble_candidates
from tokensift.tso.pairs import (
    REVIEW_COLUMNS,
    build_pairs,
    correct_pairs,
    judge_pairs,
    make_pair_id,
    read_decisions,
    review_rows,
)
from tokensift.tso.prompts import PromptRecord
from tokensift.tso.review import ReviewSettings, is_disagreement, review_reasons

PROMPTS = {"p1": PromptRecord("p1", [{"role": "user", "content": "Say something."}], None, 0),
           "p2": PromptRecord("p2", [{"role": "user", "content": "Say more."}], None, 1)}


class TableJudge:
    """p_first from a table keyed by (first text, second text); counts calls."""

    name = "table"

    def __init__(self, table: dict):
        self.table = table
        self.calls = 0

    def compare_many(self, items):
        self.calls += 1
        return [Verdict(self.table[(first, second)], {}) for _, first, second in items]


def ladder(prompt_id="p1", texts=("worst", "low", "high", "best")):
    """Four candidates with ranks 0..3 (index = rank)."""
    return [Candidate(prompt_id, f"g{rank}", text, rank, "model") for rank, text in enumerate(texts)]


def judged(pairs_and_p):
    """Build the p1 ladder's best-vs-worst style pairs and judge them from {(chosen, rejected): p}."""
    pairs, _ = build_pairs(ladder(), "rank_gap", 1)
    judge = TableJudge({**pairs_and_p})
    judge_pairs([p for p in pairs if (p.chosen.text, p.rejected.text) in pairs_and_p], PROMPTS, judge)
    return [p for p in pairs if p.judge_p is not None]


def reasons(pairs, flag_threshold=0.8):
    """Review reasons with only confident disagreements (no ambiguity band, no audit sample)."""
    return review_reasons(pairs, ReviewSettings(flag_threshold, ambiguous_band=0.0, audit_fraction=0.0), 1)


def test_rank_gap_pairs_every_two_candidates_far_enough_apart():
    pairs, counts = build_pairs(ladder(), "rank_gap", 1)
    assert {(p.chosen.text, p.rejected.text) for p in pairs} == {
        ("best", "high"), ("best", "low"), ("best", "worst"), ("high", "low"), ("high", "worst"), ("low", "worst")}
    assert all(p.chosen.prior_rank > p.rejected.prior_rank for p in pairs)
    gap2, _ = build_pairs(ladder(), "rank_gap", 2)
    assert {(p.chosen.text, p.rejected.text) for p in gap2} == {("best", "low"), ("best", "worst"), ("high", "worst")}
    gap4, counts4 = build_pairs(ladder(), "rank_gap", 4)
    assert gap4 == [] and counts4["prompts_without_pair"] == 1
    assert counts["pairs"] == 6 and counts["prompts"] == 1


def test_best_vs_worst_one_pair_per_prompt_and_identical_texts_skipped():
    cands = ladder() + ladder("p2", texts=("same", "x", "y", "same"))
    pairs, counts = build_pairs(cands, "best_vs_worst", 1)
    assert [(p.prompt_id, p.chosen.text, p.rejected.text) for p in pairs] == [("p1", "best", "worst")]
    assert counts["identical_skipped"] == 1 and counts["prompts_without_pair"] == 1
    tied = [Candidate("p1", "a", "one", 1, "model"), Candidate("p1", "b", "two", 1, "model")]
    assert build_pairs(tied, "rank_gap", 1)[0] == []  # same rank: the prior says nothing


def test_pair_ids_are_stable_and_change_with_either_text():
    a, b = Candidate("p1", "g1", "hello", 1, "model"), Candidate("p1", "g0", "bye", 0, "model")
    first = make_pair_id("p1", a, b)
    assert first == make_pair_id("p1", Candidate("p1", "g1", "hello", 1, "model"), b) and len(first) == 16
    assert first != make_pair_id("p1", Candidate("p1", "g1", "hello!", 1, "model"), b)
    assert first != make_pair_id("p2", a, b)
    assert build_pairs([a, b], "rank_gap", 1)[0][0].pair_id == first


def test_human_responses_join_with_the_top_prior_rank():
    specs = parse_generators([{"name": "big", "model": "m", "size": 7, "stage": 0},
                              {"name": "small-late", "model": "m", "size": 1, "stage": 3},
                              {"name": "pol", "policy": True, "size": 1, "stage": 4}], {"temperature": 1.0,
                             "top_p": 1.0, "max_new_tokens": 8}, 0, False)
    ranks = prior_ranks(specs, with_human=True)
    assert ranks == {"small-late": 0, "pol": 1, "big": 2, HUMAN: 3}  # size first, then stage; human on top
    prompts = {"p1": PromptRecord("p1", PROMPTS["p1"].messages, "A kind human answer.", 0),
               "p2": PromptRecord("p2", PROMPTS["p2"].messages, None, 1)}
    cells = {("p1", "big"): "big answer", ("p1", "small-late"): "small answer", ("p1", "pol"): "",
             ("p2", "big"): "big 2", ("p2", "small-late"): "small 2", ("p2", "pol"): "pol 2"}
    cands, counts = assemble_candidates(["p1", "p2"], prompts, specs, ranks, cells)
    assert counts["missing_or_empty"] == {"pol": 1, HUMAN: 1}  # the empty answer and p2's absent human reply
    pairs, _ = build_pairs(cands, "best_vs_worst", 1)
    assert [(p.prompt_id, p.chosen.generator, p.rejected.generator) for p in pairs] == [
        ("p1", HUMAN, "small-late"), ("p2", "big", "small-late")]


def test_agreement_keeps_and_confident_disagreement_flags():
    pairs = judged({("best", "worst"): 0.95, ("high", "low"): 0.30, ("low", "worst"): 0.15})
    by = {(p.chosen.text, p.rejected.text): p for p in pairs}
    assert not is_disagreement(by[("best", "worst")].judge_p, 0.8)
    assert not is_disagreement(by[("high", "low")].judge_p, 0.8)  # disagrees, but not confidently
    assert is_disagreement(by[("low", "worst")].judge_p, 0.8)
    assert reasons(pairs) == {by[("low", "worst")].pair_id: "disagreement"}
    kept = correct_pairs(pairs, PROMPTS, reasons(pairs), {}, "keep").counts  # the default: the prior stands
    assert (kept["flagged"], kept["kept"], kept["flipped"], kept["unresolved_policy_keep"]) == (1, 3, 0, 1)
    result = correct_pairs(pairs, PROMPTS, reasons(pairs), {}, "flip")  # flipping on the AI alone: opt-in
    c = result.counts
    assert (c["pairs"], c["judge_agrees"], c["judge_disagrees"], c["flagged"]) == (3, 1, 2, 1)
    assert (c["kept"], c["flipped"], c["dropped"], c["trained"]) == (2, 1, 0, 3)
    flipped = [r for r in result.train_rows if r["flipped"]]
    assert [(r["chosen"], r["rejected"], r["chosen_generator"]) for r in flipped] == [("worst", "low", "g0")]
    assert flipped[0]["judge_p_chosen"] == pytest.approx(0.85)  # in the final orientation
    assert all(r["prompt"] == PROMPTS["p1"].messages for r in result.train_rows)


@pytest.mark.parametrize("policy,kept,flipped,dropped,trained", [
    ("flip", 1, 1, 0, 2), ("drop", 1, 0, 1, 1), ("keep", 2, 0, 0, 2)])
def test_unresolved_policy(policy, kept, flipped, dropped, trained):
    pairs = judged({("best", "worst"): 0.9, ("high", "low"): 0.05})
    c = correct_pairs(pairs, PROMPTS, reasons(pairs), {}, policy).counts
    assert (c["kept"], c["flipped"], c["dropped"], c["trained"]) == (kept, flipped, dropped, trained)
    assert c[f"unresolved_policy_{policy}"] == 1 and c["flagged"] == 1


def test_unresolved_stop_holds_back_flagged_pairs():
    pairs = judged({("best", "worst"): 0.9, ("high", "low"): 0.05})
    result = correct_pairs(pairs, PROMPTS, reasons(pairs), {}, "stop")
    assert [p.chosen.text for p in result.unresolved] == ["high"]
    assert result.counts["unresolved_waiting"] == 1 and result.counts["trained"] == 1


def test_human_decisions_keep_flip_drop_override_flags_and_prior(tmp_path):
    pairs = judged({("best", "worst"): 0.9, ("high", "low"): 0.05, ("high", "worst"): 0.1, ("best", "low"): 0.6})
    by = {(p.chosen.text, p.rejected.text): p.pair_id for p in pairs}
    path = tmp_path / "decisions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"pair_id": by[("high", "low")], "decision": "keep"},     # flagged, but a person says the prior is right
        {"pair_id": by[("high", "worst")], "decision": "DROP "},  # case and spaces are forgiven
        {"pair_id": by[("best", "low")], "decision": "flip"},     # unflagged: humans may still decide
        {"pair_id": "0123456789abcdef", "decision": "flip"},      # another round's pair: ignored here
    ]) + "\n")
    decisions = read_decisions(path)
    result = correct_pairs(pairs, PROMPTS, reasons(pairs), decisions, "flip")
    c = result.counts
    assert (c["human_keep"], c["human_drop"], c["human_flip"], c["unresolved_policy_flip"]) == (1, 1, 1, 0)
    assert (c["kept"], c["flipped"], c["dropped"], c["trained"]) == (2, 1, 1, 3)
    applied = {r["pair_id"]: (r["action"], r["decided_by"]) for r in result.applied}
    assert applied[by[("best", "worst")]] == ("keep", "prior")
    assert applied[by[("best", "low")]] == ("flip", "human")
    assert len(result.applied) == 4  # every pair accounted for, dropped ones included


def test_decisions_csv_and_review_sheet_round_trip(tmp_path):
    pairs = judged({("high", "low"): 0.05, ("low", "worst"): 0.1})
    rows = review_rows(pairs, PROMPTS, 2, {}, reasons(pairs))
    assert rows[0]["decision"] == "" and rows[0]["round"] == 2 and rows[0]["prompt"] == "Say something."
    assert rows[0]["review_reason"] == "disagreement" and rows[0]["judge_p_chosen_shown_first"] is None
    assert {rows[0]["chosen_text"], rows[0]["rejected_text"]} == {"high", "low"}
    sheet = tmp_path / "review.csv"
    write_table(sheet, rows, REVIEW_COLUMNS)
    assert read_decisions(sheet) == {}  # an unfilled sheet decides nothing
    rows[0]["decision"], rows[1]["decision"] = "flip", "drop"
    write_table(sheet, rows, REVIEW_COLUMNS)
    decisions = read_decisions(sheet)
    assert {k: d.decision for k, d in decisions.items()} == {pairs[0].pair_id: "flip", pairs[1].pair_id: "drop"}
    jsonl = tmp_path / "review.jsonl"
    write_table(jsonl, rows, REVIEW_COLUMNS)
    assert {k: d.decision for k, d in read_decisions(jsonl).items()} == {k: d.decision for k, d in decisions.items()}


def test_bad_decision_files_name_file_row_and_field(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"pair_id": "a", "decision": "keep"}\n{"pair_id": "b", "decision": "maybe"}\n')
    with pytest.raises(DataError, match=r"d.jsonl, row 1, field 'decision': unknown decision 'maybe'"):
        read_decisions(path)
    path.write_text('{"pair_id": "a", "decision": "keep"}\n{"decision": "flip"}\n')
    with pytest.raises(DataError, match=r"row 1, field 'pair_id': missing pair id"):
        read_decisions(path)
    path.write_text('{"pair_id": "a", "decision": "keep"}\n{"pair_id": "a", "decision": "flip"}\n')
    with pytest.raises(DataError, match=r"row 1, field 'decision': pair a was decided 'keep' in row 0"):
        read_decisions(path)
    csv = tmp_path / "d.csv"
    csv.write_text("pair_id,decision\nabc,keep\n,flip\n")
    with pytest.raises(DataError, match=r"d.csv, row 1, field 'pair_id'"):
        read_decisions(csv)
    with pytest.raises(UserError, match="does not exist"):
        read_decisions(tmp_path / "nope.jsonl")

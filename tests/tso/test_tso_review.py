"""Review that follows the spec (§3.5): every review class, the seeded audit sample, the default that keeps the
prior's order, flipping on the AI alone as an opt-in, consistent_only, and the scaled margin of each pair.

Verdicts are written down by hand, with both presentation orders where the judge asked both (the `detail` layout
of the local_llm and http judges: first_as_a.p_a = P(A) with the prior's chosen answer shown as A, first_as_b.p_a
= P(A) with it shown as B), so every expected class and number is worked out in the comments.
"""

from __future__ import annotations

import pytest

from tokensift.tso.matrix import Candidate
from tokensift.tso.pairs import Pair, correct_pairs, review_rows, scaled_margin
from tokensift.tso.prompts import PromptRecord
from tokensift.tso.review import ReviewSettings, order_verdicts, orders_agree, reason_counts, review_reasons

PROMPTS = {"p": PromptRecord("p", [{"role": "user", "content": "Say something."}], None, 0)}


def both_orders(chosen_shown_first: float, chosen_shown_second: float) -> dict:
    """The detail a two-order judge stores: P(A) per question (when shown second, chosen wins if B wins)."""
    return {"first_as_a": {"p_a": chosen_shown_first}, "first_as_b": {"p_a": 1.0 - chosen_shown_second}}


def pair(name: str, p: float, detail: dict | None = None, high: int = 2, low: int = 0) -> Pair:
    return Pair(name, "p", Candidate("p", "big", f"{name} big", high, "model"),
                Candidate("p", "small", f"{name} small", low, "model"), p, detail or {})


# name: (average p, both orders or None)     expected class with flag_threshold 0.7 and ambiguous_band 0.1
CASES = {
    "agrees": (0.95, both_orders(0.9, 1.0)),      # both orders prefer chosen, confidently: no review of its own
    "confident": (0.1, both_orders(0.15, 0.05)),  # both orders prefer rejected, p <= 1 - 0.7: disagreement
    "tie-ish": (0.55, both_orders(0.6, 0.5)),     # |0.55 - 0.5| <= 0.1; an order at exactly 0.5 names no winner
    "split": (0.55, both_orders(0.8, 0.3)),       # the orders name different winners: inconsistent, not ambiguous
    "split-low": (0.26, both_orders(0.52, 0.0)),  # average 0.26 <= 0.3 would be a disagreement; the split wins
    "scored": (0.35, None),                       # a score judge (no orders): |0.35 - 0.5| = 0.15, p > 0.3: none
    "scored-2": (0.8, None),
}
SETTINGS = ReviewSettings(flag_threshold=0.7, ambiguous_band=0.1, audit_fraction=0.0, seed=0)


def case_pairs() -> list[Pair]:
    return [pair(name, p, detail) for name, (p, detail) in CASES.items()]


def test_both_orders_are_read_back_and_checked():
    assert order_verdicts(both_orders(0.8, 0.3)) == pytest.approx((0.8, 0.3))
    assert order_verdicts({"score_first": 1.0}) is None and order_verdicts(None) is None
    assert orders_agree(both_orders(0.8, 0.3)) is False
    assert orders_agree(both_orders(0.8, 0.6)) is True and orders_agree(both_orders(0.5, 0.1)) is True
    assert orders_agree({}) is None


def test_each_review_class():
    reasons = review_reasons(case_pairs(), SETTINGS, round_index=1)
    assert reasons == {"confident": "disagreement", "tie-ish": "ambiguous", "split": "inconsistent",
                       "split-low": "inconsistent"}
    counts = reason_counts(case_pairs(), reasons)
    assert counts == {"review_inconsistent": 2, "review_disagreement": 1, "review_ambiguous": 1, "review_audit": 0,
                      "review_total": 4, "orders_checked": 5, "orders_disagree": 2}


def test_audit_sample_is_seeded_stable_and_drawn_from_the_rest():
    audit = ReviewSettings(0.7, 0.1, audit_fraction=0.5, seed=3)
    reasons = review_reasons(case_pairs(), audit, round_index=2)
    sampled = sorted(k for k, r in reasons.items() if r == "audit")
    # the rest: agrees, scored, scored-2 -> round(0.5 * 3) = 2 of them
    assert len(sampled) == 2 and set(sampled) <= {"agrees", "scored", "scored-2"}
    assert review_reasons(list(reversed(case_pairs())), audit, 2) == reasons  # order of the pairs does not matter
    draws = {tuple(sorted(k for k, r in review_reasons(case_pairs(), ReviewSettings(0.7, 0.1, 0.5, seed), k_).items()
                          if r == "audit")) for seed in range(6) for k_ in (1, 2)}
    assert len(draws) > 1  # the seed and the round choose the sample
    tiny = ReviewSettings(0.7, 0.1, audit_fraction=0.01, seed=0)
    assert sum(r == "audit" for r in review_reasons(case_pairs(), tiny, 1).values()) == 1  # at least one


def test_the_default_keeps_the_prior_order_for_every_undecided_pair():
    pairs = case_pairs()
    reasons = review_reasons(pairs, SETTINGS, 1)
    result = correct_pairs(pairs, PROMPTS, reasons, {}, unresolved="keep")
    c = result.counts
    assert (c["kept"], c["flipped"], c["dropped"], c["trained"]) == (7, 0, 0, 7)
    assert c["unresolved_policy_keep"] == 1 and c["flagged"] == 1  # the one confident disagreement
    assert all(row["chosen_generator"] == "big" and not row["flipped"] for row in result.train_rows)
    decided_by = {r["pair_id"]: r["decided_by"] for r in result.applied}
    assert decided_by["confident"] == "unresolved_policy" and decided_by["split"] == "prior"


def test_flipping_on_the_ai_alone_is_an_opt_in_and_touches_only_disagreements():
    pairs = case_pairs()
    result = correct_pairs(pairs, PROMPTS, review_reasons(pairs, SETTINGS, 1), {}, unresolved="flip")
    flipped = [r["pair_id"] for r in result.train_rows if r["flipped"]]
    assert flipped == ["confident"]  # not the inconsistent split-low, though its average is as low
    row = next(r for r in result.train_rows if r["flipped"])
    assert (row["chosen"], row["chosen_generator"], row["judge_p_chosen"]) == ("confident small", "small",
                                                                               pytest.approx(0.9))


def test_consistent_only_drops_undecided_inconsistent_pairs(tmp_path):
    from tokensift.tso.pairs import read_decisions

    pairs = case_pairs()
    reasons = review_reasons(pairs, SETTINGS, 1)
    path = tmp_path / "d.jsonl"
    path.write_text('{"pair_id": "split", "decision": "keep"}\n')  # a person rescued one of the two
    c = correct_pairs(pairs, PROMPTS, reasons, read_decisions(path), "keep", consistent_only=True).counts
    assert (c["consistency_drop"], c["dropped"], c["human_keep"], c["trained"]) == (1, 1, 1, 6)


def test_stop_waits_for_every_reviewed_pair():
    pairs = case_pairs()
    result = correct_pairs(pairs, PROMPTS, review_reasons(pairs, SETTINGS, 1), {}, unresolved="stop")
    assert sorted(p.pair_id for p in result.unresolved) == ["confident", "split", "split-low", "tie-ish"]
    assert result.counts["unresolved_waiting"] == 4 and result.counts["trained"] == 3


def test_review_rows_carry_the_reason_and_both_orders():
    pairs = case_pairs()
    reasons = review_reasons(pairs, SETTINGS, 1)
    rows = {r["pair_id"]: r for r in review_rows([p for p in pairs if p.pair_id in reasons], PROMPTS, 1, {}, reasons)}
    assert rows["split"]["review_reason"] == "inconsistent" and rows["split"]["judge_p_chosen"] == 0.55
    assert (rows["split"]["judge_p_chosen_shown_first"], rows["split"]["judge_p_chosen_shown_second"]) == (0.8, 0.3)
    assert rows["tie-ish"]["review_reason"] == "ambiguous"


def test_scaled_margin_by_ladder_distance_and_judge_confidence():
    row = {"chosen_rank": 3, "rejected_rank": 1, "judge_p_chosen": 0.8, "decided_by": "prior"}
    assert scaled_margin(row, 0.5, "rank_gap") == pytest.approx(1.0)  # 0.5 x (3 - 1) levels
    assert scaled_margin(row, 0.5, "judge") == pytest.approx(0.3)  # 0.5 x (2 x 0.8 - 1)
    assert scaled_margin(row, 0.5, "both") == pytest.approx(0.6)  # 0.5 x 2 x 0.6
    flipped = {"chosen_rank": 0, "rejected_rank": 2, "judge_p_chosen": 0.9, "decided_by": "unresolved_policy"}
    assert scaled_margin(flipped, 0.5, "rank_gap") == 0.0  # the ladder was wrong about it: no ladder margin
    assert scaled_margin(flipped, 0.5, "judge") == pytest.approx(0.4)
    doubted = {"chosen_rank": 2, "rejected_rank": 0, "judge_p_chosen": 0.3, "decided_by": "prior"}
    assert scaled_margin(doubted, 1.0, "judge") == 0.0  # the judge prefers the other answer: no confidence
    human = {"chosen_rank": 2, "rejected_rank": 1, "judge_p_chosen": 0.3, "decided_by": "human"}
    assert scaled_margin(human, 1.0, "both") == pytest.approx(1.0)  # a person decided: confidence 1

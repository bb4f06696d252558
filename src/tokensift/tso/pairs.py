"""Preference pairs from the matrix's prior ordering, judged and corrected (spec §3.4-3.5).

1. Pairs: the prior says a higher-ranked candidate (human > larger > smaller, later > earlier stage) beats a
   lower-ranked one. `rank_gap` pairs every two candidates of a prompt whose ranks differ by at least g;
   `best_vs_worst` gives one pair per prompt, top against bottom.
2. AI feedback: the judge gives p = P(prior's chosen is better), and, for judges that ask both presentation
   orders, each order's verdict (kept in `judge_detail`).
3. Review (tso/review.py): confident disagreements, inconsistent and ambiguous verdicts and a seeded audit
   sample go to people, each pair with its reason.
4. Human feedback: a decisions file maps pair ids to keep (the prior is right), flip (the other response is
   better) or drop (tie, or both bad). A human decision applies to any pair, reviewed or not.
5. Undecided pairs keep the prior's order, except: a confident disagreement follows the `unresolved` policy
   (keep by default; flip on the judge's word alone is an explicit opt-in; drop; or stop the run for review),
   an inconsistent verdict is dropped with `consistent_only`, and with `unresolved: stop` every reviewed pair
   waits for a person. Every outcome is counted; nothing leaves the data unaccounted for.

Pair ids are the first 16 hex digits of sha256 over (prompt id, prior-chosen generator and text,
prior-rejected generator and text): stable across runs, machines and resumes, and different whenever either
text differs (the policy's column is new every round, so its pairs get new ids).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

from tokensift.data.io import iter_raw_rows
from tokensift.errors import DataError, UserError
from tokensift.judges.base import format_conversation
from tokensift.tso.matrix import Candidate
from tokensift.tso.review import order_verdicts, reason_counts

DECISIONS = ("keep", "flip", "drop")
# Every count a correction reports, present (as 0) even when nothing happened, so reports compare cleanly.
OUTCOME_COUNTS = ("pairs", "judge_agrees", "judge_disagrees", "flagged", "kept", "flipped", "dropped",
                  "human_keep", "human_flip", "human_drop", "unresolved_policy_keep", "unresolved_policy_flip",
                  "unresolved_policy_drop", "consistency_drop", "trained", "unresolved_waiting")
REVIEW_COLUMNS = ["pair_id", "decision", "review_reason", "round", "prompt_id", "prompt", "chosen_generator",
                  "chosen_rank", "chosen_text", "rejected_generator", "rejected_rank", "rejected_text",
                  "judge_p_chosen", "judge_p_chosen_shown_first", "judge_p_chosen_shown_second"]


@dataclass
class Pair:
    """A pair in the prior's orientation: `chosen` is the candidate the prior ranks higher."""

    pair_id: str
    prompt_id: str
    chosen: Candidate
    rejected: Candidate
    judge_p: float | None = None  # the judge's P(chosen is better)
    judge_detail: dict = field(default_factory=dict)

    def to_row(self) -> dict:
        return {"pair_id": self.pair_id, "prompt_id": self.prompt_id, "chosen": asdict(self.chosen),
                "rejected": asdict(self.rejected), "judge_p_chosen": self.judge_p, "judge_detail": self.judge_detail}

    @classmethod
    def from_row(cls, row: dict) -> Pair:
        return cls(row["pair_id"], row["prompt_id"], Candidate(**row["chosen"]), Candidate(**row["rejected"]),
                   row["judge_p_chosen"], row.get("judge_detail") or {})


def make_pair_id(prompt_id: str, chosen: Candidate, rejected: Candidate) -> str:
    payload = json.dumps([prompt_id, chosen.generator, chosen.text, rejected.generator, rejected.text],
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def build_pairs(candidates: list[Candidate], pairing: str, min_rank_gap: int) -> tuple[list[Pair], Counter]:
    """Pairs from the prior ordering. Counts: prompts, pairs, identical_skipped, prompts_without_pair."""
    by_prompt: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_prompt.setdefault(c.prompt_id, []).append(c)
    pairs, counts = [], Counter({"prompts": 0, "pairs": 0, "identical_skipped": 0, "prompts_without_pair": 0})
    for prompt_id, group in by_prompt.items():
        counts["prompts"] += 1
        ordered = sorted(group, key=lambda c: -c.prior_rank)  # stable: generator order breaks ties
        if pairing == "best_vs_worst":
            options = [(ordered[0], ordered[-1])] if len(ordered) > 1 else []
        else:
            options = list(combinations(ordered, 2))
        made = 0
        for high, low in options:
            if high.prior_rank - low.prior_rank < min_rank_gap:
                continue
            if high.text.strip() == low.text.strip():
                counts["identical_skipped"] += 1  # an identical pair teaches nothing (and has no gradient)
                continue
            pairs.append(Pair(make_pair_id(prompt_id, high, low), prompt_id, high, low))
            made += 1
        if not made:
            counts["prompts_without_pair"] += 1
    counts["pairs"] = len(pairs)
    return pairs, counts


def judge_pairs(pairs: list[Pair], prompts: dict, judge) -> None:
    """Fill `judge_p` of every pair with one batched call (the judge layer caches and debiases)."""
    if not pairs:
        return
    verdicts = judge.compare_many([(prompts[p.prompt_id].messages, p.chosen.text, p.rejected.text) for p in pairs])
    for pair, verdict in zip(pairs, verdicts):
        pair.judge_p = float(verdict.p_first)
        pair.judge_detail = verdict.detail


@dataclass
class Decision:
    decision: str
    row: int


def read_decisions(path: str | Path | None) -> dict[str, Decision]:
    """pair_id -> decision from a JSONL/JSON/CSV file. Rows with an empty decision are undecided (a review
    sheet partly filled in); an unknown value, a missing pair id or two different decisions for one pair
    are errors naming the file, row and field."""
    if not path:
        return {}
    if not Path(path).exists():
        raise UserError(f"decisions file {path} does not exist")
    out: dict[str, Decision] = {}
    for row, record in iter_raw_rows(str(path)):
        if isinstance(record, DataError):
            raise record
        pair_id = record.get("pair_id")
        if pair_id is None or str(pair_id).strip() == "":
            raise DataError(str(path), row, "pair_id", "missing pair id (every row names the pair it decides)")
        value = record.get("decision")
        if value is None or str(value).strip() == "":
            continue
        decision = str(value).strip().lower()
        if decision not in DECISIONS:
            raise DataError(str(path), row, "decision", f"unknown decision {value!r}; use keep, flip or drop "
                            "(or leave it empty for undecided)")
        pair_id = str(pair_id).strip()
        if pair_id in out and out[pair_id].decision != decision:
            raise DataError(str(path), row, "decision", f"pair {pair_id} was decided '{out[pair_id].decision}' in "
                            f"row {out[pair_id].row} and '{decision}' here")
        out.setdefault(pair_id, Decision(decision, row))
    return out


@dataclass
class Correction:
    """The result of correcting one round's pairs."""

    train_rows: list[dict]  # the pairs to train on, in their final orientation
    applied: list[dict]  # one row per pair: what happened to it and who decided
    counts: Counter
    unresolved: list[Pair]  # flagged, undecided pairs when the policy is "stop"


def correct_pairs(pairs: list[Pair], prompts: dict, reasons: dict[str, str], decisions: dict[str, Decision],
                  unresolved: str, consistent_only: bool = False) -> Correction:
    """Apply human decisions, then the defaults (module docstring, step 5). `reasons`: pair_id -> review reason
    (tso/review.py) for the pairs that went to people."""
    counts = Counter({key: 0 for key in OUTCOME_COUNTS})
    counts.update(reason_counts(pairs, reasons))
    train_rows, applied, waiting = [], [], []
    for pair in pairs:
        reason = reasons.get(pair.pair_id)
        counts["pairs"] += 1
        counts["flagged"] += reason == "disagreement"
        if pair.judge_p is not None:
            counts["judge_agrees"] += pair.judge_p > 0.5
            counts["judge_disagrees"] += pair.judge_p < 0.5
        if pair.pair_id in decisions:
            action, by = decisions[pair.pair_id].decision, "human"
        elif reason == "disagreement":
            action, by = unresolved, "unresolved_policy"
        elif reason == "inconsistent" and consistent_only:
            action, by = "drop", "consistency"
        elif reason and unresolved == "stop":
            action, by = "stop", "unresolved_policy"
        else:
            action, by = "keep", "prior"
        if action == "stop":
            waiting.append(pair)
            continue
        counts[{"keep": "kept", "flip": "flipped", "drop": "dropped"}[action]] += 1
        if by != "prior":
            counts[f"{by}_{action}"] += 1
        applied.append({"pair_id": pair.pair_id, "review_reason": reason, "flagged": reason == "disagreement",
                        "judge_p_chosen": pair.judge_p, "action": action, "decided_by": by})
        if action == "drop":
            continue
        high, low = (pair.rejected, pair.chosen) if action == "flip" else (pair.chosen, pair.rejected)
        train_rows.append({
            "pair_id": pair.pair_id, "prompt": prompts[pair.prompt_id].messages, "chosen": high.text,
            "rejected": low.text, "chosen_generator": high.generator, "rejected_generator": low.generator,
            "chosen_rank": high.prior_rank, "rejected_rank": low.prior_rank, "flipped": action == "flip",
            "decided_by": by,
            "judge_p_chosen": None if pair.judge_p is None else (1 - pair.judge_p if action == "flip" else pair.judge_p),
        })
    counts["trained"] = len(train_rows)
    counts["unresolved_waiting"] = len(waiting)
    return Correction(train_rows, applied, counts, waiting)


def scaled_margin(row: dict, scale: float, by: str) -> float:
    """A train row's target margin (the "scaled" of TSO, docs/tso.md): `scale` times its distance.

    rank_gap: the ladder levels the trained chosen answer sits above the rejected one, max(0, rank_c - rank_r):
    a flipped pair (the ladder was wrong about it) gets 0. judge: the judge's confidence in the trained order,
    max(0, 2p - 1); 1 when a person decided the pair. both: the product.
    """
    gap = max(0, row["chosen_rank"] - row["rejected_rank"])
    if row.get("decided_by") == "human":
        confidence = 1.0
    elif row.get("judge_p_chosen") is None:
        confidence = 0.0
    else:
        confidence = max(0.0, 2.0 * row["judge_p_chosen"] - 1.0)
    return scale * {"rank_gap": gap, "judge": confidence, "both": gap * confidence}[by]


def prompt_text(messages: list[dict]) -> str:
    return messages[0]["content"] if len(messages) == 1 else format_conversation(messages)


def review_rows(pairs: list[Pair], prompts: dict, round_index: int, decisions: dict[str, Decision],
                reasons: dict[str, str]) -> list[dict]:
    """Rows for people: why the pair is there, both texts, generators, prior ranks, the judge's probability and
    both presentation orders' verdicts (empty for judges that give one); `decision` is pre-filled from the
    decisions file (empty when undecided), so the sheet reads back as a decisions file."""
    rows = []
    for pair in pairs:
        decided = decisions.get(pair.pair_id)
        orders = order_verdicts(pair.judge_detail) or (None, None)
        rows.append({"pair_id": pair.pair_id, "decision": decided.decision if decided else "",
                     "review_reason": reasons.get(pair.pair_id, ""), "round": round_index, "prompt_id": pair.prompt_id,
                     "prompt": prompt_text(prompts[pair.prompt_id].messages),
                     "chosen_generator": pair.chosen.generator, "chosen_rank": pair.chosen.prior_rank,
                     "chosen_text": pair.chosen.text, "rejected_generator": pair.rejected.generator,
                     "rejected_rank": pair.rejected.prior_rank, "rejected_text": pair.rejected.text,
                     "judge_p_chosen": None if pair.judge_p is None else round(pair.judge_p, 6),
                     "judge_p_chosen_shown_first": None if orders[0] is None else round(orders[0], 6),
                     "judge_p_chosen_shown_second": None if orders[1] is None else round(orders[1], 6)})
    return rows

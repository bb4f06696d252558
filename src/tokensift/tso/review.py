"""Which judged pairs people should look at (spec §3.5: "annotators decide the flagged or ambiguous pairs, or a
sampled share of them"), and why.

Every pair of a round gets at most one review reason, checked in this order:

- `inconsistent`: the judge asked both presentation orders and they name different winners (one order says
  the prior's chosen answer is better, the other says it is worse). Their average may look confident or
  ambiguous; either way the verdict contradicts itself, so it is not evidence for a flip. Only judges that
  report both orders (local_llm, http: `detail.first_as_a` / `first_as_b`) can be checked; for the others the
  orders are "unchecked" (a score-based judge gives p and 1 - p by construction).
- `disagreement`: the judge confidently prefers the prior's rejected answer, p <= 1 - flag_threshold: a
  candidate "model preference error" (the old "flagged").
- `ambiguous`: the judge hardly prefers either, |p - 0.5| <= ambiguous_band.
- `audit`: a seeded random share (`audit_fraction`) of the remaining pairs, so people also check pairs the
  judge and the prior agree on, and the agreement rate itself can be audited.

The audit sample depends only on (seed, round, the round's pair ids), so `tokensift tso review` and a resumed run
export exactly the pairs the round exported.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

REASONS = ("inconsistent", "disagreement", "ambiguous", "audit")


@dataclass(frozen=True)
class ReviewSettings:
    flag_threshold: float = 0.8
    ambiguous_band: float = 0.1
    audit_fraction: float = 0.05
    seed: int = 0

    @classmethod
    def of(cls, config) -> "ReviewSettings":
        return cls(config.flag_threshold, config.ambiguous_band, config.audit_fraction, config.seed)


def order_verdicts(detail: dict | None) -> tuple[float, float] | None:
    """P(first answer is better) as each presentation order gave it: (first shown as A, first shown as B), or
    None when the judge does not report both orders. In the second order `first` is B, so its P(first) is
    1 - P(A)."""
    if not isinstance(detail, dict):
        return None
    forward, swapped = detail.get("first_as_a"), detail.get("first_as_b")
    if not (isinstance(forward, dict) and isinstance(swapped, dict) and "p_a" in forward and "p_a" in swapped):
        return None
    return float(forward["p_a"]), 1.0 - float(swapped["p_a"])


def orders_agree(detail: dict | None) -> bool | None:
    """Whether both presentation orders name the same winner (None: not checkable). An order that says exactly
    0.5 names no winner and contradicts neither."""
    orders = order_verdicts(detail)
    if orders is None:
        return None
    return (orders[0] - 0.5) * (orders[1] - 0.5) >= 0


def is_disagreement(p: float | None, flag_threshold: float) -> bool:
    return p is not None and p <= 1.0 - flag_threshold


def own_reason(pair, settings: ReviewSettings) -> str | None:
    """The review reason a pair has on its own verdict (everything but the audit sample)."""
    if pair.judge_p is None:
        return None
    if orders_agree(pair.judge_detail) is False:
        return "inconsistent"
    if is_disagreement(pair.judge_p, settings.flag_threshold):
        return "disagreement"
    if abs(pair.judge_p - 0.5) <= settings.ambiguous_band:
        return "ambiguous"
    return None


def review_reasons(pairs: list, settings: ReviewSettings, round_index: int) -> dict[str, str]:
    """pair_id -> review reason for the pairs of one round that go to people (others are absent)."""
    reasons = {}
    for pair in pairs:
        reason = own_reason(pair, settings)
        if reason:
            reasons[pair.pair_id] = reason
    rest = sorted(p.pair_id for p in pairs if p.pair_id not in reasons and p.judge_p is not None)
    if settings.audit_fraction > 0 and rest:
        count = max(1, round(settings.audit_fraction * len(rest)))
        # A string seed is hashed deterministically (sha512), unlike hash() of a str.
        for pair_id in random.Random(f"tso-audit:{settings.seed}:{round_index}").sample(rest, count):
            reasons[pair_id] = "audit"
    return reasons


def reason_counts(pairs: list, reasons: dict[str, str]) -> dict[str, int]:
    """Counts for the round report: pairs per review reason, and how many verdicts had both orders checked."""
    checked = [orders_agree(p.judge_detail) for p in pairs]
    counts = {f"review_{reason}": sum(r == reason for r in reasons.values()) for reason in REASONS}
    counts.update(review_total=len(reasons), orders_checked=sum(c is not None for c in checked),
                  orders_disagree=sum(c is False for c in checked))
    return counts

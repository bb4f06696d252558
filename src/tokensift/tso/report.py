"""The printed round report of a TSO run: candidates, pairs, review classes, outcomes, training, stability.

One function of the report dict every round saves (round-XX/report.json), so a resumed run prints exactly what the
first run printed, and the numbers in docs/tso.md come from the same lines.
"""

from __future__ import annotations

TRAIN_METRICS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy",
                 "clip/chosen_fraction", "clip/rejected_fraction", "rewards/target_margin")
SIGNED = ("rewards/chosen", "rewards/rejected", "rewards/margin")


def format_round(report: dict) -> str:
    c, p, cand = report["corrections"], report["pairing"], report["candidates"]
    pairs, agree = c.get("pairs", 0), c.get("judge_agrees", 0)
    generators = ", ".join(f"{g} {n}" for g, n in cand["per_generator"].items())
    missing = f"; missing/empty: {cand['missing_or_empty']}" if cand["missing_or_empty"] else ""
    head = (f"[tso] round {report['round']}/{report['rounds']}: {report['prompts']} prompts, "
            f"{cand['total']} candidates ({generators}){missing}")
    pairing = (f"  pairs: {pairs} built ({p.get('identical_skipped', 0)} identical skipped, "
               f"{p.get('prompts_without_pair', 0)} prompts without a pair); judge agrees with the prior on "
               f"{agree}/{pairs} ({agree / max(pairs, 1):.0%}), disagrees on {c.get('judge_disagrees', 0)}")
    review = (f"  review: {c.get('review_total', 0)} pairs to people (disagreement {c.get('review_disagreement', 0)}, "
              f"inconsistent {c.get('review_inconsistent', 0)}, ambiguous {c.get('review_ambiguous', 0)}, "
              f"audit {c.get('review_audit', 0)}); both orders checked on {c.get('orders_checked', 0)} "
              f"({c.get('orders_disagree', 0)} disagree)")
    outcomes = (f"  human keep/flip/drop {c.get('human_keep', 0)}/{c.get('human_flip', 0)}/"
                f"{c.get('human_drop', 0)}; unresolved disagreements -> keep/flip/drop "
                f"{c.get('unresolved_policy_keep', 0)}/{c.get('unresolved_policy_flip', 0)}/"
                f"{c.get('unresolved_policy_drop', 0)}; inconsistent dropped {c.get('consistency_drop', 0)}; "
                f"totals: kept {c.get('kept', 0)}, flipped {c.get('flipped', 0)}, dropped {c.get('dropped', 0)}; "
                f"trained on {c.get('trained', 0)} pairs")
    lines = [head, pairing, review, outcomes]
    t = report["train"]
    if t.get("steps"):
        shown = ", ".join(f"{name} {t[name]:+.4f}" if name in SIGNED else f"{name} {t[name]:.4f}"
                          for name in TRAIN_METRICS if name in t)
        lines.append(f"  train ({t['steps']} steps, last step): {shown}")
    if report.get("stability"):
        lines.append("  " + format_stability(report["stability"]))
    if report.get("stop"):
        lines.append(f"  stop: {report['stop']}; the rounds after this one are skipped and the final model is "
                     "the previous round's")
    return "\n".join(lines)


def format_stability(s: dict) -> str:
    text = (f"stability ({s['answers']} held-out answers at T=1): KL to start {s['kl_to_start']['kl']:.3f}, "
            f"to previous round {s['kl_to_previous']['kl']:.3f} nats/answer; win rate over previous round "
            f"{s['win_rate_vs_previous']:.1%}")
    if s.get("mean_score") is not None:
        text += f"; mean judged score {s['mean_score_previous']:+.3f} -> {s['mean_score']:+.3f}"
    return text


def rounds_table(reports: list[dict]) -> str:
    """A markdown table of the rounds (the model card and docs/tso.md): review classes, outcomes, the last
    training step and the stability numbers (blank where a round has none)."""
    head = ("| round | pairs | to review: disagree / inconsistent / ambiguous / audit | flipped / dropped | trained "
            "| loss | reward margin | KL to start | KL to previous | win rate vs previous | mean score |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        c, t, s = r["corrections"], r["train"], r.get("stability") or {}
        review = "/".join(str(c.get(f"review_{k}", 0)) for k in ("disagreement", "inconsistent", "ambiguous", "audit"))
        cells = [str(r["round"]), str(c.get("pairs", 0)), review, f"{c.get('flipped', 0)} / {c.get('dropped', 0)}",
                 str(c.get("trained", 0)), _number(t.get("loss"), "{:.3f}"), _number(t.get("rewards/margin"), "{:+.3f}"),
                 _number((s.get("kl_to_start") or {}).get("kl"), "{:.3f}"),
                 _number((s.get("kl_to_previous") or {}).get("kl"), "{:.3f}"),
                 _number(s.get("win_rate_vs_previous"), "{:.1%}"), _number(s.get("mean_score"), "{:+.3f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value, spec: str) -> str:
    return "" if value is None else spec.format(value)
